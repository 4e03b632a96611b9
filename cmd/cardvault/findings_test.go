package main

// Regression tests for the hostile review's findings (issue 15), each
// against the real binary on a fresh token. Each failed on the code the
// review probed and passes since.

import (
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"database/sql"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"math/big"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/cardvault/cardvault/internal/testsupport/p11test"
	"github.com/miekg/pkcs11"
	_ "modernc.org/sqlite"
)

// as creates an API token and returns a copy of jv that calls with it,
// once the running server has read it (within its reload interval).
func (jv *jikoVault) as(t *testing.T, name string, scopes ...string) *jikoVault {
	t.Helper()
	c := *jv
	c.token = jv.vaultEnv.token(t, name, scopes...)
	for i := 0; i < 50; i++ {
		if c.do(t, "GET", jv.base+"/v1/cards/none", nil, nil).status != 401 {
			return &c
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatalf("the server never accepted the new token %s", name)
	return nil
}

// luhnComplete appends the check digit that makes prefix Luhn-valid.
func luhnComplete(prefix string) string {
	for d := '0'; d <= '9'; d++ {
		if luhn(prefix + string(d)) {
			return prefix + string(d)
		}
	}
	panic("unreachable")
}

// openDB opens the served vault's SQLite file read-only, as a thief with a
// copy of it would.
func openDB(t *testing.T, jv *jikoVault) *sql.DB {
	t.Helper()
	db, err := sql.Open("sqlite", "file:"+filepath.Join(jv.dir, "vault.db")+"?mode=ro")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}

// Finding 1: POST /v1/cards/lookup needed only cards:read, answered owner,
// id and expiry, and was neither budgeted nor audited; an import answered
// 409 for a PAN held by another owner, without limit.
func TestFindingLookupIsNotAnOracle(t *testing.T) {
	jv := newServedVault(t, []string{"cards:write", "cards:read", "cards:reveal"}, envLookupsPerCaller+"=5")
	pan := "4000001234567899"
	card := jv.importCard(t, "owner-a", pan)

	if r := jv.post(t, jv.base+"/v1/cards/lookup", map[string]any{"pan": pan}, nil); r.status != 403 {
		t.Fatalf("lookup with cards:read alone: %d %s, want 403", r.status, r.body)
	}
	looker := jv.as(t, "looker", "cards:lookup")
	r := looker.post(t, jv.base+"/v1/cards/lookup", map[string]any{"pan": pan}, nil)
	if r.status != 200 || strings.TrimSpace(r.body) != fmt.Sprintf(`{"id":%q}`, card) {
		t.Fatalf("lookup: %d %s, want the card id alone", r.status, r.body)
	}
	// Ten Luhn-valid candidates for a known first 10 and last 4: the
	// budget (5 distinct PANs, the hit among them) stops the walk.
	statuses := map[int]int{}
	for i := 0; i < 10; i++ {
		candidate := luhnComplete(fmt.Sprintf("40000012%d%d", i/10, i%10) + "56789")
		statuses[looker.post(t, jv.base+"/v1/cards/lookup", map[string]any{"pan": candidate}, nil).status]++
	}
	if statuses[429] < 6 || statuses[200]+statuses[404] > 4 {
		t.Fatalf("ten candidate look-ups after one hit answered %v, want at most 4 answers and the rest 429", statuses)
	}
	// The same PAN again costs nothing more.
	if r := looker.post(t, jv.base+"/v1/cards/lookup", map[string]any{"pan": pan}, nil); r.status != 200 {
		t.Fatalf("repeat look-up of a counted PAN: %d %s", r.status, r.body)
	}
	lookups := 0
	for _, e := range auditTrail(t, jv, card) {
		if e.Action == "card.lookup" && e.Outcome == "ok" {
			lookups++
		}
	}
	if lookups != 2 {
		t.Fatalf("%d audited look-ups of the card, want 2", lookups)
	}
	// Imports, which answer the same question, have a budget of their own
	// since issue 27: TestReviewImportIsNotAPANOracle.
}

// Finding 2: the idempotency table kept SHA-256(method, path, body) of
// imports, so a database copy gave the CVV up from 1,000 guesses, and kept
// a closed card's answers.
func TestFindingIdempotencyRecordsHoldNoCardData(t *testing.T) {
	jv := newServedVault(t, []string{"cards:write", "cards:read", "cards:reveal"})
	year := time.Now().Year() + 2
	body := fmt.Sprintf(`{"owner_id":"acct-1","pan":"4000001234567899","cvv":"737","expiry_month":4,"expiry_year":%d}`, year)
	if r := jv.post(t, jv.base+"/v1/cards", body, map[string]string{"Idempotency-Key": "imp-1"}); r.status != 201 {
		t.Fatalf("import: %d %s", r.status, r.body)
	}
	// Jiko create: its stored answer holds the card data under a client key.
	created := jv.post(t, jv.base+"/api/v1/jiko-accounts/acct-1/virtual-cards", map[string]string{"public_key": rsaPEM(t, 4096, 65537, false, false)},
		map[string]string{"x-jiko-idempotency": "create-1"})
	if created.status != 201 {
		t.Fatalf("create: %d %s", created.status, created.body)
	}
	var virtual struct {
		CardID string `json:"card_id"`
	}
	json.Unmarshal([]byte(created.body), &virtual)

	db := openDB(t, jv)
	var stored [][]byte
	rows, err := db.Query(`SELECT request_hash FROM idempotency`)
	if err != nil {
		t.Fatal(err)
	}
	for rows.Next() {
		var h []byte
		rows.Scan(&h)
		stored = append(stored, h)
	}
	rows.Close()
	if len(stored) != 2 {
		t.Fatalf("%d idempotency records, want 2", len(stored))
	}
	// The offline attack: every CVV against every stored hash.
	for cvv := 0; cvv < 1000; cvv++ {
		guess := sha256.Sum256([]byte("POST /v1/cards\n" + strings.Replace(body, `"737"`, fmt.Sprintf(`"%03d"`, cvv), 1)))
		for _, h := range stored {
			if strings.Contains(string(h), string(guess[:])) {
				t.Fatalf("CVV %03d recovered offline from the idempotency table", cvv)
			}
		}
	}
	if r := jv.post(t, jv.base+"/api/v1/jiko-accounts/acct-1/cards/"+virtual.CardID+"/close", map[string]string{"closure_reason": "CANCELED"}, nil); r.status != 204 {
		t.Fatalf("close: %d %s", r.status, r.body)
	}
	var left int
	if err := db.QueryRow(`SELECT COUNT(*) FROM idempotency WHERE result LIKE ?`, "%"+virtual.CardID+"%").Scan(&left); err != nil || left != 0 {
		t.Fatalf("%d stored answers about the closed card remain (%v)", left, err)
	}
	// A replay within the window still answers, and a changed body is
	// still told apart.
	if r := jv.post(t, jv.base+"/v1/cards", body, map[string]string{"Idempotency-Key": "imp-1"}); r.status != 201 {
		t.Fatalf("replay: %d %s", r.status, r.body)
	}
	if r := jv.post(t, jv.base+"/v1/cards", strings.Replace(body, "737", "738", 1), map[string]string{"Idempotency-Key": "imp-1"}); r.status != 409 {
		t.Fatalf("key reused with another body: %d %s", r.status, r.body)
	}
}

// Finding 3: a cards:reveal token revealed 25 cards of 25 owners, and the
// Jiko routes revealed and set PINs on cards whose owner had bound a
// device, with no device and no signature.
func TestFindingRevealTokenIsBoundedAndGated(t *testing.T) {
	jv := newServedVault(t, append(solarisScopes, "pin:write"), envRevealsPerCaller+"=3")
	var cards []string
	for i := 0; i < 4; i++ {
		cards = append(cards, jv.createVirtual(t, fmt.Sprintf("owner-%d", i)))
	}
	for i, card := range cards {
		r := jv.post(t, jv.base+"/api/v1/jiko-accounts/"+fmt.Sprintf("owner-%d", i)+"/virtual-cards/"+card, map[string]string{"public_key": rsaPEM(t, 4096, 65537, false, false)}, nil)
		want := 200
		if i == 3 {
			want = 429
		}
		if r.status != want {
			t.Fatalf("read %d of 4 distinct cards by one token: %d %s, want %d", i+1, r.status, r.body, want)
		}
	}

	gated := jv.createVirtual(t, "person-g")
	jv.bindDevice(t, "person-g", true)
	r := jv.post(t, jv.base+"/api/v1/jiko-accounts/person-g/virtual-cards/"+gated, map[string]string{"public_key": rsaPEM(t, 4096, 65537, false, false)}, nil)
	if r.status != 403 || !strings.Contains(r.body, "bound device") {
		t.Fatalf("Jiko read of a device-bound owner's card: %d %s, want 403", r.status, r.body)
	}
	r = jv.post(t, jv.base+"/api/v1/jiko-accounts/person-g/cards/"+gated+"/pin", map[string]string{"encrypted_pin": "AAAA"}, nil)
	if r.status != 403 || !strings.Contains(r.body, "bound device") {
		t.Fatalf("Jiko PIN set on a device-bound owner's card: %d %s, want 403", r.status, r.body)
	}
}

// createVirtual issues a virtual card for owner through Jiko's create.
func (jv *jikoVault) createVirtual(t *testing.T, owner string) string {
	t.Helper()
	r := jv.post(t, jv.base+"/api/v1/jiko-accounts/"+owner+"/virtual-cards", map[string]string{"public_key": rsaPEM(t, 4096, 65537, false, false)}, nil)
	var c struct {
		CardID string `json:"card_id"`
	}
	if r.status != 201 || json.Unmarshal([]byte(r.body), &c) != nil {
		t.Fatalf("create: %d %s", r.status, r.body)
	}
	return c.CardID
}

// Finding 12: a LOCKED card was revealed, the virtual-card read served a
// physical card, GET /v1/cards/{id} showed the owner, JSON keys matched
// case-insensitively, and a lowercase "bearer" scheme was refused.
func TestFindingSmallerPoints(t *testing.T) {
	jv := newJikoVault(t)
	locked := jv.createVirtual(t, "acct-1")
	if r := jv.do(t, "PATCH", jv.base+"/api/v1/jiko-accounts/acct-1/cards/"+locked+"/status", strings.NewReader(`{"status":"LOCKED"}`), nil); r.status != 200 {
		t.Fatalf("lock: %d %s", r.status, r.body)
	}
	if r := jv.post(t, jv.base+"/api/v1/jiko-accounts/acct-1/virtual-cards/"+locked, map[string]string{"public_key": rsaPEM(t, 4096, 65537, false, false)}, nil); r.status != 409 || !strings.Contains(r.body, "locked") {
		t.Errorf("read of a LOCKED card: %d %s, want 409", r.status, r.body)
	}

	year := time.Now().Year() + 2
	r := jv.post(t, jv.base+"/v1/cards", map[string]any{"owner_id": "acct-1", "type": "PHYSICAL", "pan": "4000001234567899", "cvv": "123", "expiry_month": 1, "expiry_year": year}, nil)
	var physical struct{ ID string }
	if r.status != 201 || json.Unmarshal([]byte(r.body), &physical) != nil {
		t.Fatalf("import: %d %s", r.status, r.body)
	}
	if r := jv.post(t, jv.base+"/api/v1/jiko-accounts/acct-1/virtual-cards/"+physical.ID, map[string]string{"public_key": rsaPEM(t, 4096, 65537, false, false)}, nil); r.status != 404 {
		t.Errorf("virtual-card read of a physical card: %d %s, want 404", r.status, r.body)
	}
	if r := jv.do(t, "GET", jv.base+"/v1/cards/"+physical.ID, nil, nil); r.status != 200 || strings.Contains(r.body, "acct-1") || strings.Contains(r.body, "owner") {
		t.Errorf("GET /v1/cards/{id}: %d %s, want no owner", r.status, r.body)
	}
	r = jv.post(t, jv.base+"/v1/cards", fmt.Sprintf(`{"owner_id":"acct-1","PAN":"4111111111111111","cvv":"123","expiry_month":1,"expiry_year":%d}`, year), nil)
	if r.status != 400 || !strings.Contains(r.body, `"field":"PAN"`) {
		t.Errorf(`{"PAN":…}: %d %s, want 400 naming PAN`, r.status, r.body)
	}
	r = jv.post(t, jv.base+"/v1/cards", fmt.Sprintf(`{"owner_id":"acct-1","pan":"4111111111111111","cvv":"123","expiry_month":1,"expiry_year":%d,"colour":"red"}`, year), nil)
	if r.status != 400 || !strings.Contains(r.body, `"field":"colour"`) {
		t.Errorf(`unknown field: %d %s, want 400 naming colour`, r.status, r.body)
	}
	if r := jv.do(t, "GET", jv.base+"/v1/cards/"+physical.ID, nil, map[string]string{"Authorization": "bearer " + jv.token}); r.status != 200 {
		t.Errorf("lowercase bearer scheme: %d %s, want 200", r.status, r.body)
	}
}

// Finding 6: the Solaris PIN-change signature covers only the JWE, so the
// same signed request set the PIN again on a repeat and on another card
// of the same person.
func TestFindingSolarisPINRequestIsAcceptedOnce(t *testing.T) {
	jv := newServedVault(t, pinScopes, envPINPerCard+"=20")
	_, card := orderPhysicalCard(t, jv, "person-1")
	_, other := orderPhysicalCard(t, jv, "person-1")
	results := runSolarisPIN(t, jv, "person-1", card, []map[string]any{
		{"pin": "2468"},
		{"replay": 0},
		{"replay": 0, "card": other},
	})
	if results[0][0].(float64) != 204 {
		t.Fatalf("first PIN request: %v %s", results[0][0], results[0][1])
	}
	for i, where := range []string{"the same card", "another card of the person"} {
		r := results[i+1]
		if r[0].(float64) != 409 || !strings.Contains(r[1].(string), `"field":"encrypted_pin"`) {
			t.Errorf("the signed request replayed on %s: %v %s, want 409 naming encrypted_pin", where, r[0], r[1])
		}
	}
	if s := jv.do(t, "GET", jv.base+"/api/v1/jiko-accounts/person-1/cards/"+other+"/status", nil, nil).body; !strings.Contains(s, `"NOT_ACTIVATED"`) {
		t.Errorf("the other card after the replay: %s", s)
	}
}

// Finding 7, against the real binary: `token revoke` ends a token within
// the reload interval, and a name cannot be given twice.
func TestFindingTokenRevokeAndUniqueNames(t *testing.T) {
	jv := newJikoVault(t)
	ops := jv.as(t, "ops", "cards:read")
	if out, err := jv.run(t, "token", "create", "--name", "ops", "--scopes", "cards:write"); err == nil || !strings.Contains(out, `a token named "ops" exists`) {
		t.Fatalf("a second token named ops: err=%v %s", err, out)
	}
	if out, err := jv.run(t, "token", "revoke", "ops"); err != nil || !strings.Contains(out, `revoked "ops"`) {
		t.Fatalf("revoke: %v %s", err, out)
	}
	status := 0
	for i := 0; i < 30 && status != 401; i++ {
		status = ops.do(t, "GET", jv.base+"/v1/cards/none", nil, nil).status
		time.Sleep(100 * time.Millisecond)
	}
	if status != 401 {
		t.Fatalf("a revoked token still answers %d after 3 s", status)
	}
	if r := jv.do(t, "GET", jv.base+"/v1/cards/none", nil, nil); r.status != 404 {
		t.Fatalf("the other token after a revoke: %d %s", r.status, r.body)
	}
}

// evenModulusPEM is a 4096-bit SPKI whose modulus is even: no RSA key,
// but it parses.
func evenModulusPEM(t *testing.T) string {
	t.Helper()
	n := new(big.Int).Lsh(big.NewInt(1), 4095)
	der, err := x509.MarshalPKIXPublicKey(&rsa.PublicKey{N: n.Add(n, big.NewInt(2)), E: 65537})
	if err != nil {
		t.Fatal(err)
	}
	return string(pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der}))
}

// Finding 9: a 4096-bit client key with an even modulus got a 500 after
// the HSM open, logged only as "internal error".
func TestFindingEvenModulusIsABadRequest(t *testing.T) {
	jv := newJikoVault(t)
	card := jv.createVirtual(t, "acct-1")
	for _, url := range []string{"/api/v1/jiko-accounts/acct-1/virtual-cards", "/api/v1/jiko-accounts/acct-1/virtual-cards/" + card} {
		r := jv.post(t, jv.base+url, map[string]string{"public_key": evenModulusPEM(t)}, nil)
		if r.status != 422 || !strings.Contains(r.body, "must be odd") || !strings.Contains(r.body, `"public_key"`) {
			t.Errorf("POST %s with an even modulus: %d %s, want 422 naming public_key", url, r.status, r.body)
		}
	}
}

// Finding 10: a client's X-Request-Id was trusted as given: 60 KB of it
// went into the audit trail, the response header and the error id.
func TestFindingRequestIDIsTheServers(t *testing.T) {
	jv := newJikoVault(t)
	huge := strings.Repeat("A", 60<<10)
	r := jv.do(t, "GET", jv.base+"/v1/cards/none", nil, map[string]string{"X-Request-Id": huge})
	if id := r.header.Get("X-Request-Id"); len(id) > 64 || id == "" || strings.Contains(r.body, huge[:100]) {
		t.Fatalf("a 60 KB request id came back (%d bytes in the header)", len(id))
	}
	r = jv.do(t, "GET", jv.base+"/v1/cards/none", nil, map[string]string{"X-Request-Id": "trace-1234_ab.c"})
	if id := r.header.Get("X-Request-Id"); id != "trace-1234_ab.c" {
		t.Fatalf("a short well-formed request id was replaced by %q", id)
	}
	r = jv.do(t, "GET", jv.base+"/v1/cards/none", nil, map[string]string{"X-Request-Id": "bad id\"<>"})
	if id := r.header.Get("X-Request-Id"); id == "bad id\"<>" || id == "" {
		t.Fatalf("a malformed request id was kept: %q", id)
	}
}

// withUserSession runs fn on a read-write session of the test token,
// logged in with the user PIN: what anyone holding that PIN can do.
func withUserSession(t *testing.T, v *vaultEnv, fn func(p *pkcs11.Ctx, sh pkcs11.SessionHandle)) {
	t.Helper()
	t.Setenv("SOFTHSM2_CONF", v.tok.Conf)
	p := pkcs11.New(v.tok.Module)
	if p == nil {
		t.Fatal("cannot load the PKCS#11 module")
	}
	defer p.Destroy()
	if err := p.Initialize(); err != nil {
		t.Fatal(err)
	}
	defer p.Finalize()
	slots, err := p.GetSlotList(true)
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range slots {
		info, err := p.GetTokenInfo(s)
		if err != nil || strings.TrimRight(info.Label, " \x00") != v.tok.Label {
			continue
		}
		sh, err := p.OpenSession(s, pkcs11.CKF_SERIAL_SESSION|pkcs11.CKF_RW_SESSION)
		if err != nil {
			t.Fatal(err)
		}
		defer p.CloseSession(sh)
		if err := p.Login(sh, pkcs11.CKU_USER, v.tok.PIN); err != nil {
			t.Fatal(err)
		}
		fn(p, sh)
		return
	}
	t.Fatalf("no token labelled %s", v.tok.Label)
}

// plantKey creates a secret key object of a known value under label, with
// nothing but the user PIN, as the review did on a copy of the token:
// not sensitive, extractable, every usage.
func plantKey(t *testing.T, v *vaultEnv, label string, keyType uint) {
	t.Helper()
	withUserSession(t, v, func(p *pkcs11.Ctx, sh pkcs11.SessionHandle) {
		if _, err := p.CreateObject(sh, p11test.PlantTemplate(label, keyType)); err != nil {
			t.Fatal(err)
		}
	})
}

// Finding 4: with the user PIN, a non-sensitive, extractable card-kek/v7
// of known value and a pan-hmac/v7 were planted; the server made them
// active (the highest label) and sealed new imports under the known key.
func TestFindingPlantedKeyIsNeverUsed(t *testing.T) {
	jv := newServedVault(t, []string{"cards:write", "cards:read"}, envKeyRefresh+"=200ms")
	plantKey(t, jv.vaultEnv, "card-kek/v7", pkcs11.CKK_AES)
	plantKey(t, jv.vaultEnv, "pan-hmac/v7", pkcs11.CKK_GENERIC_SECRET)
	time.Sleep(500 * time.Millisecond) // past the key refresh
	card := jv.importCard(t, "acct-1", "4000001234567899")
	var version int
	if err := openDB(t, jv).QueryRow(`SELECT key_version FROM cards WHERE id = ?`, card).Scan(&version); err != nil || version != 1 {
		t.Fatalf("a card imported after the plant is sealed under card-kek/v%d (%v), want v1", version, err)
	}
	r := jv.do(t, "GET", jv.base+"/readyz", nil, nil)
	if r.status != 200 || !strings.Contains(r.body, "card-kek/v7 (secret): no ceremony recorded this key") || !strings.Contains(r.body, "pan-hmac/v7") {
		t.Errorf("readyz does not show the planted keys: %d %s", r.status, r.body)
	}
	if !strings.Contains(jv.logs.String(), `"msg":"key object rejected: not used","label":"card-kek/v7"`) {
		t.Errorf("the server did not log the plant")
	}
	list, err := jv.run(t, "ceremony", "list")
	if err != nil || !regexp.MustCompile(`card-kek/v7 .*REJECTED: no ceremony recorded this key`).MatchString(list) ||
		!regexp.MustCompile(`card-kek/v1 .*true .*recorded`).MatchString(list) {
		t.Errorf("ceremony list: %v\n%s", err, list)
	}
	m := jv.do(t, "GET", jv.base+"/metrics", nil, nil)
	if !strings.Contains(m.body, "cardvault_hsm_rejected_key_objects 2") {
		t.Errorf("metrics do not count the plant")
	}
}
