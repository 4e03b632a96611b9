package main

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"math/big"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/cardvault/cardvault/internal/testsupport/testenv"
	"github.com/cardvault/cardvault/sqlstore"
)

var solarisScopes = []string{"cards:write", "cards:read", "cards:reveal", "devices:write"}

// clientResult is what each independent client prints per alg/enc pair.
type clientResult struct {
	Alg         string            `json:"alg"`
	Enc         string            `json:"enc"`
	Header      map[string]any    `json:"header"`
	Payload     map[string]string `json:"payload"`
	KID         string            `json:"kid"`
	DecryptedBy string            `json:"decrypted_by"`
}

// runClient runs an independent client (python3-jwcrypto or node-jose) that
// binds a device and asks for the secure view of card for each pair; with
// the extra argument "pin", for the PIN view.
func runClient(t *testing.T, jv *jikoVault, argv []string, person, card string, pairs [][2]string, extra ...string) (string, []clientResult) {
	t.Helper()
	p, _ := json.Marshal(pairs)
	cmd := exec.Command(argv[0], slices.Concat(argv[1:], []string{jv.base, person, card, string(p)}, extra)...)
	cmd.Env = append(os.Environ(), "TOKEN="+jv.token)
	out, err := cmd.Output()
	if err != nil {
		stderr := ""
		if ee, ok := err.(*exec.ExitError); ok {
			stderr = string(ee.Stderr)
		}
		t.Fatalf("%s: %v\n%s%s", argv[len(argv)-1], err, out, stderr)
	}
	var res struct {
		DeviceID string         `json:"device_id"`
		Results  []clientResult `json:"results"`
	}
	// The result is the last line; Node may print warnings before it.
	lines := strings.Split(strings.TrimSpace(string(out)), "\n")
	if err := json.Unmarshal([]byte(lines[len(lines)-1]), &res); err != nil {
		t.Fatalf("client output is not its JSON result: %v", err)
	}
	if len(res.Results) != len(pairs) {
		t.Fatalf("client answered %d pairs, want %d", len(res.Results), len(pairs))
	}
	return res.DeviceID, res.Results
}

func TestSolarisSecureViewWithIndependentClients(t *testing.T) {
	python := "/usr/bin/python3"
	testenv.Require(t, "Debian python3 with jwcrypto", exec.Command(python, "-c", "import jwcrypto, cryptography").Run())
	testenv.RequireCommand(t, "node")
	if _, err := os.Stat("/usr/share/nodejs/jose/package.json"); err != nil {
		testenv.Require(t, "node-jose", err)
	}
	jv := newServedVault(t, solarisScopes, envPerCard+"=100")
	issued, err := runGuideFlow(t, jv, jv.base+"/api/v1/jiko-accounts/person-1/virtual-cards")
	if err != nil {
		t.Fatal(err)
	}
	card := issued["card_id"]
	m, y, _ := strings.Cut(issued["encrypted_expiration"], "/")
	month, _ := strconv.Atoi(m)
	year, _ := strconv.Atoi(y)
	wantExpiry := time.Date(2000+year, time.Month(month)+1, 0, 0, 0, 0, 0, time.UTC).Format(time.DateOnly)

	pkcs1 := [][2]string{{"RSA1_5", "A256GCM"}, {"RSA1_5", "A256CBC_HS512"}}
	oaep := [][2]string{{"RSA_OAEP_256", "A256GCM"}, {"RSA_OAEP_256", "A256CBC_HS512"}}
	android := [][2]string{{"RSA_OAEP_256_ANDROID", "A256GCM"}, {"RSA_OAEP_256_ANDROID", "A256CBC_HS512"}}
	py, _ := filepath.Abs("../../examples/solaris_client.py")
	js, _ := filepath.Abs("../../examples/solaris_client.mjs")
	pyDevice, pyResults := runClient(t, jv, []string{python, py}, "person-1", card, slices.Concat(pkcs1, oaep, android))
	nodeDevice, nodeResults := runClient(t, jv, []string{"node", js}, "person-1", card, oaep)
	// Node 20 refuses PKCS#1 v1.5 private decryption since CVE-2023-46809
	// (the Marvin attack) unless told otherwise; the client device here is
	// the test, so it opts back in to prove the RSA1_5 JWEs are sound.
	node15Device, node15Results := runClient(t, jv, []string{"node", "--security-revert=CVE-2023-46809", js}, "person-1", card, pkcs1)
	nodeResults = append(nodeResults, node15Results...)

	headerAlg := map[string]string{"RSA1_5": "RSA1_5", "RSA_OAEP_256": "RSA-OAEP-256", "RSA_OAEP_256_ANDROID": "RSA-OAEP-256"}
	headerEnc := map[string]string{"A256GCM": "A256GCM", "A256CBC_HS512": "A256CBC-HS512"}
	decryptedBy := map[string]int{}
	for _, r := range append(pyResults, nodeResults...) {
		name := r.Alg + "/" + r.Enc + " by " + r.DecryptedBy
		decryptedBy[r.DecryptedBy]++
		if r.Header["alg"] != headerAlg[r.Alg] || r.Header["enc"] != headerEnc[r.Enc] || r.Header["kid"] != r.KID || r.KID == "" {
			t.Errorf("%s: header %v, want alg %s enc %s kid %s", name, r.Header, headerAlg[r.Alg], headerEnc[r.Enc], r.KID)
		}
		want := map[string]string{"pan": issued["encrypted_pan"], "cvc": issued["encrypted_cvv"], "expires_at": wantExpiry, "line_1": ""}
		if fmt.Sprint(r.Payload) != fmt.Sprint(want) {
			t.Errorf("%s: payload differs from the Jiko read (pan/cvc shown only as equal-or-not): pan %v cvc %v expires_at %q line_1 %q",
				name, r.Payload["pan"] == want["pan"], r.Payload["cvc"] == want["cvc"], r.Payload["expires_at"], r.Payload["line_1"])
		}
	}
	if decryptedBy["jwcrypto"] != 4 || decryptedBy["python-cryptography"] != 2 || decryptedBy["node-jose"] != 4 {
		t.Errorf("decryptions by client: %v", decryptedBy)
	}
	jv.scanForLeaks(t, []string{issued["encrypted_pan"]}, []string{issued["encrypted_cvv"]})

	// Every secure view is in the card's audit trail with the device and
	// its device_data.
	trail := auditTrail(t, jv, card)
	views := map[string]int{}
	for _, e := range trail {
		if e.Action == "card.secure_view" && e.Outcome == "ok" {
			views[e.Detail["device_id"]]++
			if e.Detail["device_data"] == "" || e.Detail["alg"] == "" || e.OwnerID != "person-1" {
				t.Errorf("secure view audit entry lacks detail: %+v", e)
			}
		}
	}
	if views[pyDevice] != 6 || views[nodeDevice] != 2 || views[node15Device] != 2 {
		t.Errorf("audited secure views by device: %v (python %s, node %s and %s)", views, pyDevice, nodeDevice, node15Device)
	}
}

func auditTrail(t *testing.T, jv *jikoVault, card string) []auditEntry {
	t.Helper()
	store, err := sqlstore.OpenSQLite(context.Background(), filepath.Join(jv.dir, "vault.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	trail, err := store.AuditTrail(context.Background(), card)
	if err != nil {
		t.Fatal(err)
	}
	out := make([]auditEntry, len(trail))
	for i, e := range trail {
		out[i] = auditEntry{Action: e.Action, Outcome: e.Outcome, OwnerID: e.OwnerID, Detail: e.Detail}
	}
	return out
}

type auditEntry struct {
	Action, Outcome, OwnerID string
	Detail                   map[string]string
}

// testDevice is a device the test binds with Go's crypto, for the refusals;
// the independent clients above prove the happy path.
type testDevice struct {
	id  string
	key *ecdsa.PrivateKey
}

func sign(t *testing.T, key *ecdsa.PrivateKey, msg string) string {
	t.Helper()
	digest := sha256.Sum256([]byte(msg))
	sig, err := ecdsa.SignASN1(rand.Reader, key, digest[:])
	if err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(sig)
}

// bindDevice registers a device for person and, if verify, answers its
// challenge.
func (jv *jikoVault) bindDevice(t *testing.T, person string, verify bool) *testDevice {
	t.Helper()
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	point, _ := key.PublicKey.Bytes()
	r := jv.post(t, jv.base+"/v1/mfa/devices", map[string]any{
		"person_id": person, "key_type": "ecdsa-p256", "key": hex.EncodeToString(point), "key_purpose": "unrestricted", "name": "go phone",
	}, nil)
	reg := registered(t, r)
	if verify {
		r := jv.do(t, "PUT", jv.base+"/v1/mfa/challenges/signatures/"+reg.Challenge.ID,
			strings.NewReader(fmt.Sprintf(`{"signature":%q}`, sign(t, key, reg.Challenge.StringToSign))), nil)
		if r.status != 204 {
			t.Fatalf("verify: %d %s", r.status, r.body)
		}
	}
	return &testDevice{id: reg.ID, key: key}
}

// registration is the 202 answer to a device registration.
type registration struct {
	ID        string `json:"id"`
	Challenge struct {
		ID           string    `json:"id"`
		Type         string    `json:"type"`
		StringToSign string    `json:"string_to_sign"`
		CreatedAt    time.Time `json:"created_at"`
		ExpiresAt    time.Time `json:"expires_at"`
	} `json:"challenge"`
}

func registered(t *testing.T, r response) registration {
	t.Helper()
	var reg registration
	if r.status != 202 || json.Unmarshal([]byte(r.body), &reg) != nil {
		t.Fatalf("register: %d %s", r.status, r.body)
	}
	return reg
}

// deviceJWK makes a fresh RSA public JWK of the given size and exponent.
func deviceJWK(t *testing.T, bits, e int) map[string]string {
	t.Helper()
	k, err := rsa.GenerateKey(rand.Reader, bits)
	if err != nil {
		t.Fatal(err)
	}
	return map[string]string{
		"kty": "RSA", "use": "enc", "alg": "RS256", "kid": fmt.Sprintf("kid-%d", time.Now().UnixNano()),
		"n": base64.RawURLEncoding.EncodeToString(k.N.Bytes()),
		"e": base64.RawURLEncoding.EncodeToString(big.NewInt(int64(e)).Bytes()),
	}
}

func signedString(jwk map[string]string) string {
	keys := make([]string, 0, len(jwk))
	for k := range jwk {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	pairs := make([]string, len(keys))
	for i, k := range keys {
		pairs[i] = k + ":" + jwk[k]
	}
	return strings.Join(pairs, ";")
}

type secureViewReq struct {
	card, sig, alg, enc string
	device              *testDevice
	jwk                 map[string]string
}

// request is a valid secure-view request of card by d, until mutated.
func request(t *testing.T, card string, d *testDevice) *secureViewReq {
	jwk := deviceJWK(t, 2048, 65537)
	return &secureViewReq{card: card, device: d, jwk: jwk, sig: sign(t, d.key, signedString(jwk)), alg: "RSA_OAEP_256", enc: "A256GCM"}
}

func (jv *jikoVault) secureView(t *testing.T, r *secureViewReq) response {
	t.Helper()
	return jv.viewOnDevice(t, "virtual_card_requests", r)
}

// viewOnDevice posts a device-signed view request to the card's route:
// virtual_card_requests or pin_view_requests.
func (jv *jikoVault) viewOnDevice(t *testing.T, route string, r *secureViewReq) response {
	t.Helper()
	return jv.post(t, jv.base+"/v1/cards/"+r.card+"/"+route, map[string]any{
		"device_id": r.device.id, "signature": r.sig, "jwk": r.jwk,
		"jwe": map[string]string{"alg": r.alg, "enc": r.enc}, "device_data": "Web;go-test",
	}, nil)
}

type solarisErrors struct {
	Errors []struct {
		ID     string `json:"id"`
		Status int    `json:"status"`
		Code   string `json:"code"`
		Source *struct {
			Field string `json:"field"`
		} `json:"source"`
	} `json:"errors"`
}

// wantRefusal checks the status and source.field ("" for none) of a
// Solaris error.
func wantRefusal(t *testing.T, name string, r response, status int, field string) {
	t.Helper()
	var e solarisErrors
	if err := json.Unmarshal([]byte(r.body), &e); err != nil || len(e.Errors) != 1 {
		t.Errorf("%s: %d %s is not a Solaris error", name, r.status, r.body)
		return
	}
	got := ""
	if e.Errors[0].Source != nil {
		got = e.Errors[0].Source.Field
	}
	if r.status != status || e.Errors[0].Status != status || got != field || e.Errors[0].ID == "" {
		t.Errorf("%s: %d field %q (%s), want %d field %q", name, r.status, got, r.body, status, field)
	}
}

// importCard stores a card for owner through the native API.
func (jv *jikoVault) importCard(t *testing.T, owner, pan string) string {
	t.Helper()
	r := jv.post(t, jv.base+"/v1/cards", map[string]any{"owner_id": owner, "pan": pan, "cvv": "123", "expiry_month": 12, "expiry_year": time.Now().Year() + 2, "name": "ADA LOVELACE"}, nil)
	if r.status != 201 {
		t.Fatalf("import: %d %s", r.status, r.body)
	}
	var c struct{ ID string }
	json.Unmarshal([]byte(r.body), &c)
	return c.ID
}

func TestSolarisSecureViewRefusals(t *testing.T) {
	jv := newServedVault(t, solarisScopes, envPerCard+"=100", envPerDevice+"=100")
	card := jv.importCard(t, "person-1", "4000001234567899")
	card2 := jv.importCard(t, "person-1", "4000001234567006")
	foreign := jv.importCard(t, "person-2", "4000001234567014")
	dev := jv.bindDevice(t, "person-1", true)
	other := jv.bindDevice(t, "person-1", true)
	unverified := jv.bindDevice(t, "person-1", false)
	stranger := jv.bindDevice(t, "person-2", true)

	mutate := func(f func(r *secureViewReq)) *secureViewReq {
		r := request(t, card, dev)
		f(r)
		return r
	}
	resign := func(r *secureViewReq) { r.sig = sign(t, r.device.key, signedString(r.jwk)) }
	for _, c := range []struct {
		name   string
		req    *secureViewReq
		status int
		field  string
	}{
		{"e = 3", mutate(func(r *secureViewReq) { r.jwk["e"] = "Aw"; resign(r) }), 400, "jwk[e]"},
		{"1024-bit key", mutate(func(r *secureViewReq) { r.jwk = deviceJWK(t, 1024, 65537); resign(r) }), 400, "jwk[n]"},
		{"JWK with d", mutate(func(r *secureViewReq) { r.jwk["d"] = "AQAB"; resign(r) }), 400, "jwk[d]"},
		{"kty EC", mutate(func(r *secureViewReq) { r.jwk["kty"] = "EC"; resign(r) }), 400, "jwk[kty]"},
		{"use sig", mutate(func(r *secureViewReq) { r.jwk["use"] = "sig"; resign(r) }), 400, "jwk[use]"},
		{"signature by another device", mutate(func(r *secureViewReq) { r.sig = sign(t, other.key, signedString(r.jwk)) }), 403, "signature"},
		{"signature over a reordered string", mutate(func(r *secureViewReq) {
			r.sig = sign(t, dev.key, "kty:RSA;n:"+r.jwk["n"]+";e:"+r.jwk["e"]+";alg:RS256;kid:"+r.jwk["kid"]+";use:enc")
		}), 403, "signature"},
		{"non-hex signature", mutate(func(r *secureViewReq) { r.sig = "not-hex" }), 400, "signature"},
		{"hex that is not DER", mutate(func(r *secureViewReq) { r.sig = hex.EncodeToString([]byte("556F45")) }), 400, "signature"},
		{"unverified device", request(t, card, unverified), 403, "device_id"},
		{"unknown device", mutate(func(r *secureViewReq) { r.device = &testDevice{id: "no-such-device", key: dev.key} }), 404, "device_id"},
		{"another person's card", request(t, foreign, dev), 404, ""},
		{"another person's device", request(t, card, stranger), 404, ""},
		{"card that does not exist", request(t, "0190a6c2-0000-7000-8000-000000000000", dev), 404, ""},
		{"unknown alg", mutate(func(r *secureViewReq) { r.alg = "RSA_OAEP" }), 400, "jwe[alg]"},
		{"unknown enc", mutate(func(r *secureViewReq) { r.enc = "A128GCM" }), 400, "jwe[enc]"},
		{"standard name for enc", mutate(func(r *secureViewReq) { r.enc = "A256CBC-HS512" }), 400, "jwe[enc]"},
	} {
		wantRefusal(t, c.name, jv.secureView(t, c.req), c.status, c.field)
	}
	// Ownership failures and absent cards are the same 404.
	absent := jv.secureView(t, request(t, "0190a6c2-0000-7000-8000-000000000000", dev))
	owned := jv.secureView(t, request(t, foreign, dev))
	if strip(absent.body) != strip(owned.body) {
		t.Errorf("foreign card %s differs from absent card %s", owned.body, absent.body)
	}
	for name, body := range map[string]string{
		"missing jwe":     `{"device_id":"x","signature":"30","jwk":{}}`,
		"jwe alg number":  `{"device_id":"x","signature":"30","jwk":{},"jwe":{"alg":1,"enc":"A256GCM"}}`,
		"jwk not object":  `{"device_id":"` + dev.id + `","signature":"3006020101020101","jwk":"x","jwe":{"alg":"RSA1_5","enc":"A256GCM"},"device_data":"Web;go-test"}`,
		"duplicate jwk n": `{"device_id":"` + dev.id + `","signature":"3006020101020101","jwk":{"kty":"RSA","n":"AQAB","n":"AQAB","e":"AQAB"},"jwe":{"alg":"RSA1_5","enc":"A256GCM"},"device_data":"Web;go-test"}`,
	} {
		r := jv.post(t, jv.base+"/v1/cards/"+card+"/virtual_card_requests", body, nil)
		want := map[string]string{"missing jwe": "jwe", "jwe alg number": "jwe[alg]", "jwk not object": "jwk", "duplicate jwk n": "jwk[n]"}[name]
		wantRefusal(t, name, r, 400, want)
	}

	// Replay: a good request works once. The same signed JWK for another
	// card, a different JWK under the same signature, and anything after
	// the device is deleted all fail.
	good := request(t, card, dev)
	if r := jv.secureView(t, good); r.status != 200 || !strings.Contains(r.body, `"data":"ey`) {
		t.Fatalf("valid secure view: %d %s", r.status, r.body)
	}
	again := *good
	wantRefusal(t, "same request again", jv.secureView(t, &again), 409, "jwk")
	again.card = card2
	wantRefusal(t, "same signature, another card", jv.secureView(t, &again), 409, "jwk")
	swapped := *good
	swapped.jwk = deviceJWK(t, 2048, 65537)
	swapped.card = card2
	wantRefusal(t, "same signature, another JWK", jv.secureView(t, &swapped), 403, "signature")
	pending := request(t, card2, dev)
	if r := jv.do(t, "DELETE", jv.base+"/v1/mfa/devices/"+dev.id, nil, nil); r.status != 204 {
		t.Fatalf("delete device: %d %s", r.status, r.body)
	}
	wantRefusal(t, "signed before the device was deleted", jv.secureView(t, pending), 404, "device_id")
	if r := jv.do(t, "GET", jv.base+"/v1/mfa/devices?person_id=person-1", nil, nil); strings.Contains(r.body, dev.id) || !strings.Contains(r.body, other.id) {
		t.Errorf("device list after delete: %s", r.body)
	}

	// Each refusal is audited with the device and its device_data.
	refused := 0
	for _, e := range auditTrail(t, jv, card) {
		if e.Action == "card.secure_view" && strings.HasPrefix(e.Outcome, "refused") {
			refused++
			if e.Detail["device_data"] != "Web;go-test" {
				t.Errorf("refusal audited without device_data: %+v", e)
			}
		}
	}
	if refused < 15 {
		t.Errorf("%d refusals audited on the card, want at least 15", refused)
	}
	jv.scanForLeaks(t, []string{"4000001234567899", "4000001234567006"}, nil)
}

// strip removes the request id, which differs per request.
func strip(body string) string {
	var e solarisErrors
	json.Unmarshal([]byte(body), &e)
	for i := range e.Errors {
		e.Errors[i].ID = ""
	}
	b, _ := json.Marshal(e)
	return string(b)
}

func TestSolarisRevealBudgets(t *testing.T) {
	jv := newServedVault(t, solarisScopes, envPerCard+"=2", envPerDevice+"=3", envWindow+"=1h", envDeviceGate+"=off") // the card budget spans both surfaces
	card := jv.importCard(t, "person-1", "4000001234567899")
	card2 := jv.importCard(t, "person-1", "4000001234567006")
	card3 := jv.importCard(t, "person-1", "4000001234567014")
	dev := jv.bindDevice(t, "person-1", true)

	// The card budget counts every surface: one Jiko read and one secure
	// view spend it.
	jiko := jv.post(t, jv.base+"/api/v1/jiko-accounts/person-1/virtual-cards/"+card, map[string]any{"public_key": rsaPEM(t, 4096, 65537, false, false)}, nil)
	if jiko.status != 200 {
		t.Fatalf("Jiko read: %d %s", jiko.status, jiko.body)
	}
	if r := jv.secureView(t, request(t, card, dev)); r.status != 200 {
		t.Fatalf("secure view: %d %s", r.status, r.body)
	}
	r := jv.secureView(t, request(t, card, dev))
	wantRefusal(t, "third reveal of the card", r, 429, "card_id")
	if ra, err := strconv.Atoi(r.header.Get("Retry-After")); err != nil || ra < 1 || ra > 3600 {
		t.Errorf("Retry-After %q, want 1..3600 seconds", r.header.Get("Retry-After"))
	}
	// The device budget spans cards: two more views spend it.
	for _, c := range []string{card2, card2} {
		if r := jv.secureView(t, request(t, c, dev)); r.status != 200 {
			t.Fatalf("secure view: %d %s", r.status, r.body)
		}
	}
	wantRefusal(t, "fourth view by the device", jv.secureView(t, request(t, card3, dev)), 429, "device_id")
	// A Jiko read of the spent card is refused too, in Jiko's shape.
	if r := jv.post(t, jv.base+"/api/v1/jiko-accounts/person-1/virtual-cards/"+card, map[string]any{"public_key": rsaPEM(t, 4096, 65537, false, false)}, nil); r.status != 429 || r.header.Get("Retry-After") == "" {
		t.Errorf("Jiko read past the card budget: %d %s", r.status, r.body)
	}
}

func TestSolarisDeviceBinding(t *testing.T) {
	jv := newServedVault(t, solarisScopes)
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	point, _ := key.PublicKey.Bytes()
	register := func(body map[string]any) response {
		return jv.post(t, jv.base+"/v1/mfa/devices", body, nil)
	}
	valid := func() map[string]any {
		return map[string]any{"person_id": "person-9", "key_type": "ecdsa-p256", "key": hex.EncodeToString(point), "key_purpose": "unrestricted", "name": "phone"}
	}
	for _, c := range []struct {
		name, field string
		value       any
	}{
		{"key_type", "key_type", "rsa-2048"},
		{"key not hex", "key", "zz"},
		{"compressed point", "key", hex.EncodeToString(elliptic.MarshalCompressed(elliptic.P256(), key.X, key.Y))},
		{"point off the curve", "key", "04" + strings.Repeat("11", 64)},
		{"key_purpose", "key_purpose", "admin"},
		{"person_id", "person_id", "no spaces allowed"},
		{"challenge_type", "challenge_type", "sms"},
		{"device_data", "device_data", strings.Repeat("x", 9000)},
	} {
		body := valid()
		body[c.field] = c.value
		wantRefusal(t, c.name, register(body), 400, c.field)
	}
	body := valid()
	delete(body, "key")
	wantRefusal(t, "missing key", register(body), 400, "key")

	r := register(valid())
	reg := registered(t, r)
	if reg.Challenge.Type != "signature" || reg.Challenge.ExpiresAt.Sub(reg.Challenge.CreatedAt) != 5*time.Minute || len(reg.Challenge.StringToSign) < 40 {
		t.Fatalf("challenge %s", r.body)
	}
	answer := func(sig string) response {
		return jv.do(t, "PUT", jv.base+"/v1/mfa/challenges/signatures/"+reg.Challenge.ID, strings.NewReader(fmt.Sprintf(`{"signature":%q}`, sig)), nil)
	}
	intruder, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	wantRefusal(t, "challenge signed by another key", answer(sign(t, intruder, reg.Challenge.StringToSign)), 403, "signature")
	wantRefusal(t, "challenge signature over another string", answer(sign(t, key, reg.Challenge.StringToSign+"x")), 403, "signature")
	wantRefusal(t, "challenge signature not hex", answer("xyz"), 400, "signature")
	if r := jv.do(t, "GET", jv.base+"/v1/mfa/devices/"+reg.ID, nil, nil); !strings.Contains(r.body, `"status":"PENDING"`) {
		t.Fatalf("device before verification: %s", r.body)
	}
	if r := answer(sign(t, key, reg.Challenge.StringToSign)); r.status != 204 {
		t.Fatalf("verify: %d %s", r.status, r.body)
	}
	wantRefusal(t, "challenge answered twice", answer(sign(t, key, reg.Challenge.StringToSign)), 409, "id")
	if r := jv.do(t, "GET", jv.base+"/v1/mfa/devices/"+reg.ID, nil, nil); !strings.Contains(r.body, `"status":"VERIFIED"`) || !strings.Contains(r.body, `"key_purposes":["unrestricted"]`) {
		t.Fatalf("device after verification: %s", r.body)
	}

	// The restricted key is added once, signed by the unrestricted key.
	restricted, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	rPoint, _ := restricted.PublicKey.Bytes()
	rHex := hex.EncodeToString(rPoint)
	addKey := func(sig string) response {
		return jv.post(t, jv.base+"/v1/mfa/devices/"+reg.ID+"/keys", map[string]any{"key_type": "ecdsa-p256", "key": rHex, "key_purpose": "restricted", "signature": sig}, nil)
	}
	wantRefusal(t, "restricted key signed by itself", addKey(sign(t, restricted, rHex)), 403, "signature")
	if r := addKey(sign(t, key, rHex)); r.status != 201 || !strings.Contains(r.body, `"key_purposes":["unrestricted","restricted"]`) {
		t.Fatalf("add restricted key: %d %s", r.status, r.body)
	}
	wantRefusal(t, "restricted key added twice", addKey(sign(t, key, rHex)), 409, "key_purpose")

	// At most five devices per person, pending ones included; deleting
	// one makes room.
	for i := 0; i < 4; i++ {
		jv.bindDevice(t, "person-9", i%2 == 0)
	}
	wantRefusal(t, "sixth device", register(valid()), 409, "person_id")
	if r := jv.do(t, "GET", jv.base+"/v1/mfa/devices?person_id=person-9", nil, nil); strings.Count(r.body, `"id"`) != 5 {
		t.Fatalf("list: %s", r.body)
	}
	wantRefusal(t, "list without person_id", jv.do(t, "GET", jv.base+"/v1/mfa/devices", nil, nil), 400, "person_id")
	if r := jv.do(t, "DELETE", jv.base+"/v1/mfa/devices/"+reg.ID, nil, nil); r.status != 204 {
		t.Fatalf("delete: %d %s", r.status, r.body)
	}
	wantRefusal(t, "deleted twice", jv.do(t, "DELETE", jv.base+"/v1/mfa/devices/"+reg.ID, nil, nil), 404, "")
	wantRefusal(t, "deleted device read", jv.do(t, "GET", jv.base+"/v1/mfa/devices/"+reg.ID, nil, nil), 404, "")
	if r := register(valid()); r.status != 202 {
		t.Fatalf("register after delete: %d %s", r.status, r.body)
	}

	// A token without devices:write cannot bind devices.
	readOnly := jv.vaultEnv.token(t, "reader", "cards:read")
	time.Sleep(1100 * time.Millisecond) // the tokens file is re-read at most once a second
	req := jv.post(t, jv.base+"/v1/mfa/devices", valid(), map[string]string{"Authorization": "Bearer " + readOnly})
	wantRefusal(t, "register without devices:write", req, 403, "Authorization")
}
