package main

// Regression tests for the second hostile review (issue 27), each against
// the real binary on a fresh token. Each failed on the code the review
// probed (8675783) and passes since.

import (
	"crypto/rand"
	"crypto/rsa"
	"fmt"
	"os"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/miekg/pkcs11"
)

// Finding 1: an import answered 201 for a PAN not in the vault and 409
// for one in it, and past the look-up budget still 201 for a miss. Every
// import now spends one distinct PAN from the caller's import budget,
// counted before the PAN's uniqueness is checked, so past the budget a hit
// and a miss answer alike.
func TestReviewImportIsNotAPANOracle(t *testing.T) {
	jv := newServedVault(t, []string{"cards:write", "cards:read"}, envImportsPerCaller+"=5")
	year := time.Now().Year() + 2
	owner := jv.as(t, "owner-importer", "cards:write")
	var taken []string
	for i := 0; i < 3; i++ {
		p := luhnComplete(fmt.Sprintf("41111111000000%d", i))
		owner.importCard(t, "owner-a", p)
		taken = append(taken, p)
	}
	thief := jv.as(t, "thief", "cards:write")
	answer := func(pan string) int {
		body := map[string]any{"owner_id": "owner-b", "pan": pan, "cvv": "123", "expiry_month": 12, "expiry_year": year}
		return thief.post(t, jv.base+"/v1/cards", body, nil).status
	}
	fresh := func(i int) string { return luhnComplete(fmt.Sprintf("42222222000000%d", i)) }
	// Within the budget of 5 distinct PANs: two hits and three misses.
	got := []int{answer(taken[0]), answer(taken[1]), answer(fresh(0)), answer(fresh(1)), answer(fresh(2))}
	if fmt.Sprint(got) != "[409 409 201 201 201]" {
		t.Fatalf("five imports within the budget answered %v, want [409 409 201 201 201]", got)
	}
	// A PAN already counted costs nothing more.
	if s := answer(taken[0]); s != 409 {
		t.Fatalf("a counted PAN again answered %d, want 409", s)
	}
	// Past it, a hit and a miss answer alike.
	if hit, miss := answer(taken[2]), answer(fresh(3)); hit != 429 || miss != 429 {
		t.Fatalf("past the budget a PAN in the vault answered %d and one not in it %d, want 429 for both", hit, miss)
	}
	// Another caller's budget is its own.
	if s := owner.importCard(t, "owner-a", fresh(4)); s == "" {
		t.Fatal("the other caller could not import")
	}
}

// panDigits finds the probe PAN however client text split it.
var probePAN = "5555555555554444"

func panPattern(pan string) *regexp.Regexp {
	parts := strings.Split(pan, "")
	return regexp.MustCompile(strings.Join(parts, `[^0-9A-Za-z]{0,3}`))
}

// Findings 2, 4 and 9: client text reached the audit trail (a card id in
// a path, JWK member names, X-Request-Id, a Solaris key_id, device_data),
// error answers (a PEM type, a JWK member name, a JSON key split by '_')
// and /metrics (the HTTP method as a label). A PAN sent every one of those
// ways must come back nowhere: not in answers, headers, logs, the
// database or /metrics; and made-up methods must not make series.
func TestReviewClientTextNeverReachesTheTrail(t *testing.T) {
	jv := newServedVault(t, append(solarisScopes, "pin:write"))
	card := jv.importCard(t, "person-1", "4000001234567899")
	d := jv.bindDevice(t, "person-1", true)
	pan := probePAN
	split := pan[:4] + "_" + pan[4:8] + "_" + pan[8:12] + "_" + pan[12:]
	var answers []string
	keep := func(r response) {
		answers = append(answers, r.body)
		for k, v := range r.header {
			answers = append(answers, k+": "+strings.Join(v, ","))
		}
	}
	// A secure view of a card id that is a PAN, with device_data holding it.
	req := request(t, card, d)
	body := func(r *secureViewReq, deviceData string) map[string]any {
		return map[string]any{"device_id": r.device.id, "signature": r.sig, "jwk": r.jwk,
			"jwe": map[string]string{"alg": r.alg, "enc": r.enc}, "device_data": deviceData}
	}
	keep(jv.post(t, jv.base+"/v1/cards/"+pan+"/virtual_card_requests", body(req, "Web;"+pan), nil))
	keep(jv.post(t, jv.base+"/v1/cards/"+split+"/virtual_card_requests", body(req, "Web"), nil))
	// A device id that is a PAN.
	keep(jv.post(t, jv.base+"/v1/cards/"+card+"/virtual_card_requests", body(&secureViewReq{device: &testDevice{id: pan}, sig: req.sig, jwk: req.jwk, alg: req.alg, enc: req.enc}, "Web"), nil))
	// A JWK member named by a PAN, signed, so the refusal is audited.
	jwk := deviceJWK(t, 2048, 65537)
	jwk[pan] = "x"
	keep(jv.post(t, jv.base+"/v1/cards/"+card+"/virtual_card_requests", body(&secureViewReq{device: d, sig: sign(t, d.key, signedString(jwk)), jwk: jwk, alg: "RSA_OAEP_256", enc: "A256GCM"}, "Web"), nil))
	delete(jwk, pan)
	jwk[split] = "x"
	keep(jv.post(t, jv.base+"/v1/cards/"+card+"/virtual_card_requests", body(&secureViewReq{device: d, sig: sign(t, d.key, signedString(jwk)), jwk: jwk, alg: "RSA_OAEP_256", enc: "A256GCM"}, "Web"), nil))
	// A request id that is a PAN, on an audited refusal.
	r := jv.do(t, "GET", jv.base+"/v1/cards/none", nil, map[string]string{"X-Request-Id": pan})
	keep(r)
	if r.header.Get("X-Request-Id") == pan {
		t.Errorf("a PAN-shaped request id was kept")
	}
	keep(jv.post(t, jv.base+"/v1/cards/"+pan+"/virtual_card_requests", body(req, "Web"), map[string]string{"X-Request-Id": split}))
	// A Solaris PIN request whose key_id is a PAN, from a device with no
	// restricted key: refused and audited with its detail.
	keep(jv.post(t, jv.base+"/v1/cards/"+card+"/pin_update_requests", map[string]any{
		"device_id": d.id, "encrypted_pin": "a.b.c.d.e", "key_id": pan, "signature": sign(t, d.key, "a.b.c.d.e")}, nil))
	// A PEM type, and JSON keys, that are PANs.
	pemKey := strings.ReplaceAll(rsaPEM(t, 4096, 65537, false, false), "PUBLIC KEY", pan)
	keep(jv.post(t, jv.base+"/api/v1/jiko-accounts/acct-1/virtual-cards", map[string]string{"public_key": pemKey}, nil))
	keep(jv.post(t, jv.base+"/api/v1/jiko-accounts/acct-1/virtual-cards", map[string]string{split: "x"}, nil))
	keep(jv.post(t, jv.base+"/v1/cards", map[string]string{split: "x"}, nil))
	// An owner id that is a PAN.
	keep(jv.post(t, jv.base+"/api/v1/jiko-accounts/"+pan+"/virtual-cards", map[string]string{"public_key": rsaPEM(t, 4096, 65537, false, false)}, nil))
	// Made-up methods, a PAN among them.
	before := metricSeries(t, jv)
	for i := 0; i < 50; i++ {
		keep(jv.do(t, fmt.Sprintf("X%dMETHOD", i), jv.base+"/v1/cards/none", nil, nil))
	}
	keep(jv.do(t, pan, jv.base+"/healthz", nil, nil))
	after := metricSeries(t, jv)
	if after > before+4 {
		t.Errorf("51 made-up methods grew cardvault_http_requests_total from %d to %d series, want a closed set", before, after)
	}
	metrics := jv.do(t, "GET", jv.base+"/metrics", nil, nil).body

	re := panPattern(pan)
	for i, a := range answers {
		if re.MatchString(a) {
			t.Errorf("answer %d echoes the PAN: %.300s", i, a)
		}
	}
	if re.MatchString(metrics) {
		t.Errorf("/metrics holds the PAN")
	}
	if m := re.FindString(jv.logs.String()); m != "" {
		t.Errorf("the server's log holds the PAN (%q)", m)
	}
	db, err := os.ReadFile(jv.dir + "/vault.db")
	if err != nil {
		t.Fatal(err)
	}
	wal, _ := os.ReadFile(jv.dir + "/vault.db-wal")
	if m := re.Find(append(db, wal...)); m != nil {
		t.Errorf("the database holds the PAN (%q)", m)
	}
	// The refusals are still audited, with a fixed word for what was
	// withheld.
	withheld := 0
	for _, e := range dumpAudit(t, jv) {
		if strings.Contains(e, "(withheld)") {
			withheld++
		}
	}
	if withheld < 5 {
		t.Errorf("%d audit entries name withheld client text, want the refusals above audited with it", withheld)
	}
}

// metricSeries counts the series of cardvault_http_requests_total.
func metricSeries(t *testing.T, jv *jikoVault) int {
	t.Helper()
	n := 0
	for _, line := range strings.Split(jv.do(t, "GET", jv.base+"/metrics", nil, nil).body, "\n") {
		if strings.HasPrefix(line, "cardvault_http_requests_total{") {
			n++
		}
	}
	return n
}

// dumpAudit reads every audit entry of the served vault's database as
// text.
func dumpAudit(t *testing.T, jv *jikoVault) []string {
	t.Helper()
	rows, err := openDB(t, jv).Query(`SELECT action || ' ' || card_id || ' ' || owner_id || ' ' || outcome || ' ' || request_id || ' ' || detail FROM audit`)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var out []string
	for rows.Next() {
		var s string
		if err := rows.Scan(&s); err != nil {
			t.Fatal(err)
		}
		out = append(out, s)
	}
	return out
}

// Also in the review: /readyz answered 200 while every seal failed under
// a forced gcm-iv=refused. Readiness now seals and opens a record.
func TestReviewReadinessTriesASeal(t *testing.T) {
	jv := newServedVault(t, []string{"cards:write"}, envHSMProfile+"=gcm-iv=refused")
	if r := jv.post(t, jv.base+"/v1/cards", map[string]any{"owner_id": "acct-1", "pan": "4111111111111111", "cvv": "123", "expiry_month": 12, "expiry_year": time.Now().Year() + 2}, nil); r.status < 500 {
		t.Fatalf("an import under the forced profile answered %d: the seal does not fail, so this test proves nothing", r.status)
	}
	r := jv.do(t, "GET", jv.base+"/readyz", nil, nil)
	if r.status != 503 || !strings.Contains(r.body, `"seal":"unavailable"`) {
		t.Fatalf("readyz while every seal fails: %d %s, want 503 naming the seal", r.status, r.body)
	}
}

// withPublicSession runs fn on a read-write session of the test token
// without logging in: what any process that can load the module can do.
func withPublicSession(t *testing.T, v *vaultEnv, fn func(p *pkcs11.Ctx, sh pkcs11.SessionHandle)) {
	t.Helper()
	withUserSession(t, v, func(p *pkcs11.Ctx, sh pkcs11.SessionHandle) {
		if err := p.Logout(sh); err != nil {
			t.Fatal(err)
		}
		fn(p, sh)
	})
}

// Finding 5: a public object planted under card-kek/v1 by a session
// without the user PIN took the version down (readyz 503, imports 503,
// reveals 500). An object of a class the vault never makes under a label
// is refused on its own and takes nothing down; and a key the vault
// cannot use answers 503, never 500.
func TestReviewPlantedObjectsDoNotStopTheVault(t *testing.T) {
	jv := newServedVault(t, []string{"cards:write", "cards:read", "cards:reveal"}, envKeyRefresh+"=200ms", envDeviceGate+"=off")
	card := jv.importCard(t, "acct-1", "4111111111111111")
	withPublicSession(t, jv.vaultEnv, func(p *pkcs11.Ctx, sh pkcs11.SessionHandle) {
		key, _ := rsa.GenerateKey(rand.Reader, 2048)
		if _, err := p.CreateObject(sh, []*pkcs11.Attribute{
			pkcs11.NewAttribute(pkcs11.CKA_CLASS, pkcs11.CKO_PUBLIC_KEY),
			pkcs11.NewAttribute(pkcs11.CKA_KEY_TYPE, pkcs11.CKK_RSA),
			pkcs11.NewAttribute(pkcs11.CKA_LABEL, "card-kek/v1"),
			pkcs11.NewAttribute(pkcs11.CKA_TOKEN, true),
			pkcs11.NewAttribute(pkcs11.CKA_PRIVATE, false),
			pkcs11.NewAttribute(pkcs11.CKA_MODULUS, key.N.Bytes()),
			pkcs11.NewAttribute(pkcs11.CKA_PUBLIC_EXPONENT, []byte{1, 0, 1}),
		}); err != nil {
			t.Fatal(err)
		}
	})
	time.Sleep(500 * time.Millisecond) // past the key refresh
	if r := jv.do(t, "GET", jv.base+"/readyz", nil, nil); r.status != 200 || !strings.Contains(r.body, "card-kek/v1 (public)") {
		t.Errorf("readyz after a public object was planted under card-kek/v1: %d %s, want 200 naming the refused object", r.status, r.body)
	}
	jv.importCard(t, "acct-1", "5500000000000004")
	r := jv.post(t, jv.base+"/api/v1/jiko-accounts/acct-1/virtual-cards/"+card, map[string]string{"public_key": rsaPEM(t, 4096, 65537, false, false)}, nil)
	if r.status != 200 {
		t.Errorf("a reveal after the plant: %d %s", r.status, r.body)
	}

	// A secret object under the active label, made with the user PIN,
	// takes the version down: the vault then cannot seal or open, and
	// says so with 503, not 500.
	plantKey(t, jv.vaultEnv, "card-kek/v1", pkcs11.CKK_AES)
	time.Sleep(500 * time.Millisecond)
	if r := jv.post(t, jv.base+"/v1/cards", map[string]any{"owner_id": "acct-1", "pan": "4000056655665556", "cvv": "123", "expiry_month": 12, "expiry_year": time.Now().Year() + 2}, nil); r.status != 503 {
		t.Errorf("an import while card-kek/v1 is refused: %d %s, want 503", r.status, r.body)
	}
	r = jv.post(t, jv.base+"/api/v1/jiko-accounts/acct-1/virtual-cards/"+card, map[string]string{"public_key": rsaPEM(t, 4096, 65537, false, false)}, nil)
	if r.status != 503 || r.header.Get("Retry-After") == "" {
		t.Errorf("a reveal while card-kek/v1 is refused: %d %s, want 503 with Retry-After", r.status, r.body)
	}
}
