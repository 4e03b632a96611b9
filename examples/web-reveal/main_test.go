package main

import (
	"encoding/asn1"
	"encoding/hex"
	"encoding/json"
	"io"
	"log/slog"
	"math/big"
	"net/http"
	"net/http/httptest"
	"os/exec"
	"strings"
	"testing"

	"github.com/cardvault/cardvault/internal/testenv"
	"github.com/cardvault/cardvault/vault"
)

// TestComponentDERSignature runs the component's derSignature in Node
// (Debian's nodejs) on raw r‖s values at the edges of DER's integer
// rules, and checks that each is the minimal DER the vault accepts.
func TestComponentDERSignature(t *testing.T) {
	node := testenv.RequireCommand(t, "node")
	fill := func(b byte, n int) string { return strings.Repeat(hex.EncodeToString([]byte{b}), n) }
	raws := []string{
		fill(0x11, 32) + fill(0x22, 32),                      // plain
		fill(0x80, 32) + fill(0xff, 32),                      // top bits set: a zero byte in front
		"0000" + fill(0x7f, 30) + "00" + fill(0x01, 31),      // leading zeros dropped
		"0000" + fill(0x80, 30) + fill(0x00, 31) + "01",      // dropped, then one put back; s = 1
		fill(0x00, 31) + "01" + fill(0x00, 31) + "01",        // both one
		"ff" + fill(0xee, 31) + "00" + "80" + fill(0x00, 30), // mixed
	}
	script := `import { derSignature } from './static/cardvault-reveal.js';
const raws = JSON.parse(process.argv[1]);
const hex = (b) => Buffer.from(b).toString('hex');
console.log(JSON.stringify(raws.map((r) => hex(derSignature(Uint8Array.from(Buffer.from(r, 'hex')))))));`
	in, _ := json.Marshal(raws)
	out, err := exec.Command(node, "--input-type=module", "-e", script, string(in)).CombinedOutput()
	if err != nil {
		t.Fatalf("node: %v\n%s", err, out)
	}
	var ders []string
	if err := json.Unmarshal(out, &ders); err != nil || len(ders) != len(raws) {
		t.Fatalf("node printed %s", out)
	}
	for i, raw := range raws {
		b, _ := hex.DecodeString(raw)
		want, _ := asn1.Marshal(struct{ R, S *big.Int }{new(big.Int).SetBytes(b[:32]), new(big.Int).SetBytes(b[32:])})
		if ders[i] != hex.EncodeToString(want) {
			t.Errorf("raw %s: component %s, want %x", raw, ders[i], want)
		}
		if _, err := vault.DecodeSignature("signature", ders[i]); err != nil {
			t.Errorf("raw %s: the vault refuses the component's DER: %v", raw, err)
		}
	}
}

// fakeVault records what the backend sends it and answers as the vault's
// Solaris routes do.
type fakeVault struct {
	requests []*http.Request
	bodies   []map[string]any
}

func (f *fakeVault) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	var body map[string]any
	b, _ := io.ReadAll(r.Body)
	json.Unmarshal(b, &body)
	f.requests, f.bodies = append(f.requests, r), append(f.bodies, body)
	w.Header().Set("Content-Type", "application/json")
	switch {
	case r.URL.Path == "/v1/mfa/devices":
		w.WriteHeader(http.StatusAccepted)
		io.WriteString(w, `{"id":"dev-1","challenge":{"id":"ch-1","string_to_sign":"sign me"}}`)
	case strings.HasPrefix(r.URL.Path, "/v1/mfa/challenges/signatures/"):
		w.WriteHeader(http.StatusNoContent)
	case strings.HasSuffix(r.URL.Path, "/virtual_card_requests"):
		io.WriteString(w, `{"data":"h.k.i.c.t"}`)
	default:
		w.WriteHeader(http.StatusNotFound)
	}
}

func newTestBackend(t *testing.T) (*backend, *fakeVault) {
	fv := &fakeVault{}
	srv := httptest.NewServer(fv)
	t.Cleanup(srv.Close)
	return &backend{cfg: &config{person: "person-7", vault: srv.URL, token: "cvt_backend"}, vault: srv.Client(),
		log: slog.New(slog.DiscardHandler), demoOrigin: "http://demo.test", componentOrigin: "http://component.test"}, fv
}

func post(h http.Handler, path, origin, body string) *httptest.ResponseRecorder {
	req := httptest.NewRequest("POST", "http://component.test"+path, strings.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Origin", origin)
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	return rec
}

func TestBackendForwardsWithItsOwnTokenAndCardholder(t *testing.T) {
	b, fv := newTestBackend(t)
	h := b.componentRoutes()
	rec := post(h, "/api/device", b.componentOrigin, `{"key":"04ab"}`)
	if rec.Code != 200 || !strings.Contains(rec.Body.String(), `"string_to_sign":"sign me"`) {
		t.Fatalf("register: %d %s", rec.Code, rec.Body)
	}
	if rec := post(h, "/api/device/verify", b.componentOrigin, `{"challenge_id":"ch-1","signature":"3006"}`); rec.Code != 204 {
		t.Fatalf("verify: %d %s", rec.Code, rec.Body)
	}
	rec = post(h, "/api/cards/card-1/reveal", b.componentOrigin, `{"device_id":"dev-1","signature":"3006","jwk":{"kty":"RSA"}}`)
	if rec.Code != 200 || strings.TrimSpace(rec.Body.String()) != `{"data":"h.k.i.c.t"}` {
		t.Fatalf("reveal: %d %s", rec.Code, rec.Body)
	}
	for _, r := range fv.requests {
		if r.Header.Get("Authorization") != "Bearer cvt_backend" {
			t.Errorf("%s %s without the backend's token", r.Method, r.URL.Path)
		}
	}
	if fv.bodies[0]["person_id"] != "person-7" {
		t.Errorf("registered for %v, not the signed-in cardholder", fv.bodies[0]["person_id"])
	}
	if jwe, _ := fv.bodies[2]["jwe"].(map[string]any); jwe["alg"] != "RSA_OAEP_256" || jwe["enc"] != "A256GCM" {
		t.Errorf("reveal asked for %v", fv.bodies[2]["jwe"])
	}
}

func TestBackendRefusesWhatIsNotTheComponents(t *testing.T) {
	b, fv := newTestBackend(t)
	h := b.componentRoutes()
	for name, rec := range map[string]*httptest.ResponseRecorder{
		"another origin":             post(h, "/api/cards/card-1/reveal", b.demoOrigin, `{}`),
		"no origin":                  post(h, "/api/device", "", `{"key":"04"}`),
		"a person in the body":       post(h, "/api/device", b.componentOrigin, `{"key":"04","person_id":"someone-else"}`),
		"a card id with a path":      post(h, "/api/cards/..%2Fv1%2Fcards/reveal", b.componentOrigin, `{"device_id":"d","signature":"30","jwk":{}}`),
		"a challenge id with a path": post(h, "/api/device/verify", b.componentOrigin, `{"challenge_id":"../x","signature":"30"}`),
	} {
		if rec.Code < 400 || rec.Code >= 500 {
			t.Errorf("%s: %d %s", name, rec.Code, rec.Body)
		}
	}
	if len(fv.requests) != 0 {
		t.Fatalf("refused requests reached the vault %d times", len(fv.requests))
	}
}
