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
	"net/url"
	"os/exec"
	"regexp"
	"strings"
	"testing"

	"github.com/cardvault/cardvault/internal/testsupport/testenv"
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
	c := &config{person: "person-7", vault: srv.URL, devicesToken: "cvt_devices", revealToken: "cvt_reveal", password: "correct horse"}
	return newBackend(c, srv.Client(), slog.New(slog.DiscardHandler), "http://demo.test", "http://component.test"), fv
}

// post sends the component's JSON call, with a session's ticket if given.
func post(h http.Handler, path, origin, body string, ticket ...string) *httptest.ResponseRecorder {
	req := httptest.NewRequest("POST", "http://component.test"+path, strings.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Origin", origin)
	if len(ticket) > 0 {
		req.Header.Set("Authorization", "Bearer "+ticket[0])
	}
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	return rec
}

func TestBackendForwardsWithItsTokensAndTheSessionsCardholder(t *testing.T) {
	b, fv := newTestBackend(t)
	h := b.componentRoutes()
	s := b.sessions.create("person-7")
	rec := post(h, "/api/device", b.componentOrigin, `{"key":"04ab"}`, s.ticket)
	if rec.Code != 200 || !strings.Contains(rec.Body.String(), `"string_to_sign":"sign me"`) {
		t.Fatalf("register: %d %s", rec.Code, rec.Body)
	}
	if rec := post(h, "/api/device/verify", b.componentOrigin, `{"challenge_id":"ch-1","signature":"3006"}`, s.ticket); rec.Code != 204 {
		t.Fatalf("verify: %d %s", rec.Code, rec.Body)
	}
	rec = post(h, "/api/cards/card-1/reveal", b.componentOrigin, `{"device_id":"dev-1","signature":"3006","jwk":{"kty":"RSA"}}`, s.ticket)
	if rec.Code != 200 || strings.TrimSpace(rec.Body.String()) != `{"data":"h.k.i.c.t"}` {
		t.Fatalf("reveal: %d %s", rec.Code, rec.Body)
	}
	// Binding with the devices:write token, reveals with the
	// cards:reveal one: neither alone does both.
	for i, want := range []string{"Bearer cvt_devices", "Bearer cvt_devices", "Bearer cvt_reveal"} {
		if got := fv.requests[i].Header.Get("Authorization"); got != want {
			t.Errorf("%s %s with %q, want %q", fv.requests[i].Method, fv.requests[i].URL.Path, got, want)
		}
	}
	if fv.bodies[0]["person_id"] != "person-7" {
		t.Errorf("registered for %v, not the signed-in cardholder", fv.bodies[0]["person_id"])
	}
	if jwe, _ := fv.bodies[2]["jwe"].(map[string]any); jwe["alg"] != "RSA_OAEP_256" || jwe["enc"] != "A256GCM" {
		t.Errorf("reveal asked for %v", fv.bodies[2]["jwe"])
	}
}

// Issue 27, finding 11: a plain HTTP client sending the component's
// Origin bound its own device to the configured person and decrypted the
// card. Every call now needs a signed-in session's ticket.
func TestBackendRefusesWhatIsNotTheComponents(t *testing.T) {
	b, fv := newTestBackend(t)
	h := b.componentRoutes()
	s := b.sessions.create("person-7")
	ended := b.sessions.create("person-7")
	b.sessions.drop(ended)
	for name, tc := range map[string]struct {
		rec  *httptest.ResponseRecorder
		want int
	}{
		"no sign-in":                 {post(h, "/api/device", b.componentOrigin, `{"key":"04ab"}`), 401},
		"a made-up ticket":           {post(h, "/api/device", b.componentOrigin, `{"key":"04ab"}`, "0123"), 401},
		"a signed-out ticket":        {post(h, "/api/cards/card-1/reveal", b.componentOrigin, `{"device_id":"d","signature":"30","jwk":{}}`, ended.ticket), 401},
		"another origin":             {post(h, "/api/cards/card-1/reveal", b.demoOrigin, `{}`, s.ticket), 403},
		"no origin":                  {post(h, "/api/device", "", `{"key":"04"}`, s.ticket), 403},
		"a person in the body":       {post(h, "/api/device", b.componentOrigin, `{"key":"04","person_id":"someone-else"}`, s.ticket), 400},
		"a card id with a path":      {post(h, "/api/cards/..%2Fv1%2Fcards/reveal", b.componentOrigin, `{"device_id":"d","signature":"30","jwk":{}}`, s.ticket), 400},
		"a challenge id with a path": {post(h, "/api/device/verify", b.componentOrigin, `{"challenge_id":"../x","signature":"30"}`, s.ticket), 400},
	} {
		if tc.rec.Code != tc.want {
			t.Errorf("%s: %d %s, want %d", name, tc.rec.Code, tc.rec.Body, tc.want)
		}
	}
	if len(fv.requests) != 0 {
		t.Fatalf("refused requests reached the vault %d times", len(fv.requests))
	}
}

// form posts a form to the demo origin with the cookies given.
func form(h http.Handler, path, origin string, values url.Values, cookies ...*http.Cookie) *httptest.ResponseRecorder {
	req := httptest.NewRequest("POST", "http://demo.test"+path, strings.NewReader(values.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Origin", origin)
	for _, c := range cookies {
		req.AddCookie(c)
	}
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	return rec
}

func cookieOf(rec *httptest.ResponseRecorder, name string) *http.Cookie {
	for _, c := range rec.Result().Cookies() {
		if c.Name == name {
			return c
		}
	}
	return nil
}

// Sign-in takes the cardholder's name and password from the demo page's
// own form only (its Origin and CSRF token), and its session's ticket is
// what the component's calls carry; signing out ends the ticket.
func TestSignInSessionAndCSRF(t *testing.T) {
	b, _ := newTestBackend(t)
	h := b.demoRoutes()
	page := httptest.NewRecorder()
	h.ServeHTTP(page, httptest.NewRequest("GET", "http://demo.test/?card=card-1", nil))
	csrf := cookieOf(page, "csrf")
	if page.Code != 200 || !strings.Contains(page.Body.String(), `id="signin"`) || csrf == nil || !csrf.HttpOnly || csrf.SameSite != http.SameSiteStrictMode {
		t.Fatalf("the page without a session: %d, csrf cookie %+v", page.Code, csrf)
	}
	good := url.Values{"csrf": {csrf.Value}, "username": {"person-7"}, "password": {"correct horse"}}
	for name, tc := range map[string]struct {
		rec  *httptest.ResponseRecorder
		want int
	}{
		"another site's form":     {form(h, "/signin", "http://evil.test", good, csrf), 403},
		"no CSRF token":           {form(h, "/signin", b.demoOrigin, url.Values{"username": {"person-7"}, "password": {"correct horse"}}, csrf), 403},
		"a CSRF token, no cookie": {form(h, "/signin", b.demoOrigin, good), 403},
		"a wrong password":        {form(h, "/signin", b.demoOrigin, url.Values{"csrf": {csrf.Value}, "username": {"person-7"}, "password": {"wrong"}}, csrf), 401},
		"another cardholder":      {form(h, "/signin", b.demoOrigin, url.Values{"csrf": {csrf.Value}, "username": {"person-8"}, "password": {"correct horse"}}, csrf), 401},
	} {
		if tc.rec.Code != tc.want || cookieOf(tc.rec, "session") != nil {
			t.Errorf("%s: %d, want %d and no session", name, tc.rec.Code, tc.want)
		}
	}
	in := form(h, "/signin", b.demoOrigin, good, csrf)
	session := cookieOf(in, "session")
	if in.Code != 303 || session == nil || !session.HttpOnly || session.SameSite != http.SameSiteStrictMode {
		t.Fatalf("sign-in: %d, session cookie %+v", in.Code, session)
	}
	page = httptest.NewRecorder()
	req := httptest.NewRequest("GET", "http://demo.test/?card=card-1", nil)
	req.AddCookie(session)
	h.ServeHTTP(page, req)
	m := regexp.MustCompile(`frame\.html\?[^"#]*#ticket=([0-9a-f]{64})"`).FindStringSubmatch(page.Body.String())
	if page.Code != 200 || m == nil {
		t.Fatalf("the signed-in page has no frame with a ticket: %d %s", page.Code, page.Body)
	}
	if s := b.sessions.fromTicket(m[1]); s == nil || s.person != "person-7" {
		t.Fatal("the frame's ticket is not the session's")
	}
	out := form(h, "/signout", b.demoOrigin, url.Values{"csrf": {cookieOf(page, "csrf").Value}}, session, cookieOf(page, "csrf"))
	if out.Code != 303 || b.sessions.fromTicket(m[1]) != nil {
		t.Fatalf("sign-out: %d; the ticket still works: %v", out.Code, b.sessions.fromTicket(m[1]) != nil)
	}
}

// Issue 30, item 4: the demo opened as http://localhost:8081/ framed a
// component that lets only http://127.0.0.1:8081 frame it, and broke
// silently. Every other name of the demo's origin is sent to the one the
// component trusts.
func TestDemoSendsOtherNamesToItsOrigin(t *testing.T) {
	b, _ := newTestBackend(t)
	h := b.demoRoutes()
	req := httptest.NewRequest(http.MethodGet, "http://localhost:8081/?card=c1", nil)
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	if rec.Code != http.StatusPermanentRedirect || rec.Header().Get("Location") != "http://demo.test/?card=c1" {
		t.Fatalf("GET via localhost: %d, Location %q; want 308 to http://demo.test/?card=c1", rec.Code, rec.Header().Get("Location"))
	}
	req = httptest.NewRequest(http.MethodGet, "http://demo.test/", nil)
	rec = httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	if rec.Code != http.StatusOK {
		t.Fatalf("GET via the demo's own origin: %d", rec.Code)
	}
}
