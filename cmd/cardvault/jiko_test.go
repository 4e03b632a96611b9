package main

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/cardvault/cardvault/internal/testsupport/testenv"
	"github.com/cardvault/cardvault/sqlstore"
)

// jikoVault is a served vault with a token of every card scope.
type jikoVault struct {
	*vaultEnv
	base  string
	token string
	logs  *syncBuffer
}

func newJikoVault(t *testing.T) *jikoVault {
	t.Helper()
	return newServedVault(t, []string{"cards:write", "cards:read", "cards:reveal"})
}

// newServedVault runs the ceremony on a fresh token and serves it with
// extraEnv, with an API token of the given scopes.
func newServedVault(t *testing.T, scopes []string, extraEnv ...string) *jikoVault {
	t.Helper()
	return newServedVaultInit(t, nil, scopes, extraEnv...)
}

// newServedVaultInit is newServedVault with arguments for ceremony init.
func newServedVaultInit(t *testing.T, initArgs, scopes []string, extraEnv ...string) *jikoVault {
	t.Helper()
	v := newVaultEnv(t)
	if out, err := v.run(t, append([]string{"ceremony", "init"}, initArgs...)...); err != nil {
		t.Fatalf("init: %v\n%s", err, out)
	}
	token := v.token(t, "platform", scopes...)
	base, logs := startServer(t, v, extraEnv...)
	return &jikoVault{vaultEnv: v, base: base, token: token, logs: logs}
}

// runGuideFlow runs the guide's shell flow against url in a fresh directory
// and returns the decrypted fields.
func runGuideFlow(t *testing.T, jv *jikoVault, url string) (map[string]string, error) {
	t.Helper()
	for _, tool := range []string{"openssl", "curl", "jq", "base64"} {
		testenv.RequireCommand(t, tool)
	}
	script, _ := filepath.Abs("testdata/jiko-card-flow.sh")
	dir := t.TempDir()
	cmd := exec.Command("bash", script, url)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "TOKEN="+jv.token)
	out, err := cmd.CombinedOutput()
	if err != nil {
		return nil, fmt.Errorf("%v: %s", err, out)
	}
	fields := map[string]string{}
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		k, v, _ := strings.Cut(line, "=")
		fields[k] = v
	}
	fields["public_key"] = mustRead(t, filepath.Join(dir, "public_key.pem"))
	return fields, nil
}

func mustRead(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func luhn(s string) bool {
	sum, double := 0, false
	for i := len(s) - 1; i >= 0; i-- {
		d := int(s[i] - '0')
		if double {
			if d *= 2; d > 9 {
				d -= 9
			}
		}
		sum, double = sum+d, !double
	}
	return sum%10 == 0
}

func TestJikoGuideFlowWithOpenSSL(t *testing.T) {
	jv := newJikoVault(t)
	create, err := runGuideFlow(t, jv, jv.base+"/api/v1/jiko-accounts/acct-1/cards/")
	if err != nil {
		t.Fatal(err)
	}
	pan, cvv, exp := create["encrypted_pan"], create["encrypted_cvv"], create["encrypted_expiration"]
	if !regexp.MustCompile(`^400000[0-9]{10}$`).MatchString(pan) || !luhn(pan) {
		t.Fatalf("PAN %q is not 16 Luhn-valid digits under the BIN", pan)
	}
	if !regexp.MustCompile(`^[0-9]{3}$`).MatchString(cvv) {
		t.Fatalf("CVV %q is not 3 digits", cvv)
	}
	m := regexp.MustCompile(`^(0[1-9]|1[0-2])/([0-9]{2})$`).FindStringSubmatch(exp)
	if m == nil {
		t.Fatalf("expiry %q is not MM/YY", exp)
	}
	month, _ := strconv.Atoi(m[1])
	year, _ := strconv.Atoi(m[2])
	if end := time.Date(2000+year, time.Month(month)+1, 1, 0, 0, 0, 0, time.UTC); !end.After(time.Now()) {
		t.Fatalf("expiry %s is not in the future", exp)
	}

	cardURL := jv.base + "/api/v1/jiko-accounts/acct-1/virtual-cards/" + create["card_id"]
	read, err := runGuideFlow(t, jv, cardURL)
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{"card_id", "encrypted_pan", "encrypted_cvv", "encrypted_expiration"} {
		if read[f] != create[f] {
			t.Errorf("read %s = %q, create gave %q", f, read[f], create[f])
		}
	}

	// Either key, sent again, is refused: in SPKI as sent, and as PKCS#1.
	for name, key := range map[string]string{"create key": create["public_key"], "read key": read["public_key"], "read key as PKCS#1": toPKCS1(t, read["public_key"])} {
		resp := jv.post(t, cardURL, map[string]any{"public_key": key}, nil)
		if resp.status != http.StatusConflict || !strings.Contains(resp.body, "used before") {
			t.Errorf("%s reused: %d %s", name, resp.status, resp.body)
		}
	}
	jv.scanForLeaks(t, []string{pan}, []string{cvv})

	// The audit trail has the issue, the reveal and each refusal, by whom.
	store, err := sqlstore.OpenSQLite(context.Background(), filepath.Join(jv.dir, "vault.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	trail, err := store.AuditTrail(context.Background(), create["card_id"])
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, e := range trail {
		if e.Actor != "platform" || e.RequestID == "" || e.OwnerID != "acct-1" {
			t.Errorf("audit entry %+v lacks who or which request", e)
		}
		got = append(got, e.Action+" "+strings.SplitN(e.Outcome, ":", 2)[0])
	}
	want := "[card.issue ok card.reveal ok card.reveal refused card.reveal refused card.reveal refused]"
	if fmt.Sprint(got) != want {
		t.Errorf("audit trail %v, want %s", got, want)
	}
}

func toPKCS1(t *testing.T, spki string) string {
	t.Helper()
	block, _ := pem.Decode([]byte(spki))
	k, err := x509.ParsePKIXPublicKey(block.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	return string(pem.EncodeToMemory(&pem.Block{Type: "RSA PUBLIC KEY", Bytes: x509.MarshalPKCS1PublicKey(k.(*rsa.PublicKey))}))
}

type response struct {
	status int
	body   string
	header http.Header
}

func (jv *jikoVault) do(t *testing.T, method, url string, body io.Reader, header map[string]string) response {
	t.Helper()
	req, err := http.NewRequest(method, url, body)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+jv.token)
	req.Header.Set("Content-Type", "application/json")
	for k, v := range header {
		if v == "" {
			req.Header.Del(k)
		} else {
			req.Header.Set(k, v)
		}
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return response{resp.StatusCode, string(b), resp.Header}
}

func (jv *jikoVault) post(t *testing.T, url string, body any, header map[string]string) response {
	t.Helper()
	var r io.Reader
	switch b := body.(type) {
	case string:
		r = strings.NewReader(b)
	default:
		j, _ := json.Marshal(b)
		r = bytes.NewReader(j)
	}
	return jv.do(t, http.MethodPost, url, r, header)
}

// rsaPEM makes a public key PEM of the given size, exponent and form.
func rsaPEM(t *testing.T, bits, e int, pkcs1, crlf bool) string {
	t.Helper()
	k, err := rsa.GenerateKey(rand.Reader, bits)
	if err != nil {
		t.Fatal(err)
	}
	pub := k.PublicKey
	pub.E = e
	var block *pem.Block
	if pkcs1 {
		block = &pem.Block{Type: "RSA PUBLIC KEY", Bytes: x509.MarshalPKCS1PublicKey(&pub)}
	} else {
		der, err := x509.MarshalPKIXPublicKey(&pub)
		if err != nil {
			t.Fatal(err)
		}
		block = &pem.Block{Type: "PUBLIC KEY", Bytes: der}
	}
	out := string(pem.EncodeToMemory(block))
	if crlf {
		out = strings.ReplaceAll(out, "\n", "\r\n")
	}
	return out
}

// TestJikoRejectsBadInput sends what only the domain can refuse: keys of
// the wrong type, size or exponent, and a card that is not there.
func TestJikoRejectsBadInput(t *testing.T) {
	jv := newJikoVault(t)
	create := jv.base + "/api/v1/jiko-accounts/acct-1/virtual-cards"
	ecKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	ecDER, _ := x509.MarshalPKIXPublicKey(&ecKey.PublicKey)
	ecPEM := string(pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: ecDER}))
	cases := []struct {
		name   string
		url    string
		body   any
		status int
		loc    string
		msg    string
	}{
		{"not PEM", create, map[string]any{"public_key": "hello"}, 422, `["body","public_key"]`, "must be a PEM-encoded RSA public key"},
		{"certificate PEM", create, map[string]any{"public_key": "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n"}, 422, `["body","public_key"]`, `PEM type \"CERTIFICATE\" is not allowed; use PUBLIC KEY or RSA PUBLIC KEY`},
		{"EC key", create, map[string]any{"public_key": ecPEM}, 422, `["body","public_key"]`, "must be an RSA key"},
		{"2048-bit key", create, map[string]any{"public_key": rsaPEM(t, 2048, 65537, false, false)}, 422, `["body","public_key"]`, "RSA key must be 4096 bits, got 2048"},
		{"e=3", create, map[string]any{"public_key": rsaPEM(t, 4096, 3, true, false)}, 422, `["body","public_key"]`, "RSA public exponent must be 65537"},
		{"unknown card", create + "/0190a6c2-0000-7000-8000-000000000000", map[string]any{"public_key": rsaPEM(t, 4096, 65537, false, false)}, 404, "", `{"detail":"not found"}`},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			resp := jv.post(t, tc.url, tc.body, nil)
			if resp.status != tc.status {
				t.Fatalf("status %d, want %d: %s", resp.status, tc.status, resp.body)
			}
			if tc.loc != "" && !strings.Contains(resp.body, `"loc":`+tc.loc) {
				t.Errorf("body %s lacks loc %s", resp.body, tc.loc)
			}
			if !strings.Contains(resp.body, tc.msg) {
				t.Errorf("body %s lacks %q", resp.body, tc.msg)
			}
		})
	}

	// Malformed bodies, authentication and scopes are the edge's, tested
	// in httpapi over a fake domain; through the binary, a token that
	// may only read can still list.
	readOnly := jv.vaultEnv.token(t, "reader", "cards:read")
	time.Sleep(1100 * time.Millisecond) // the server re-reads the tokens file at most once a second
	if r := jv.do(t, "GET", jv.base+"/api/v1/jiko-accounts/acct-1/cards", nil, map[string]string{"Authorization": "Bearer " + readOnly}); r.status != 200 {
		t.Errorf("read-only token listing: %d %s", r.status, r.body)
	}
}

type jikoCard struct {
	CardID       string `json:"card_id"`
	EncryptedPAN []byte `json:"encrypted_pan"`
	ObjectType   string `json:"object_type"`
}

func TestJikoCardLifecycle(t *testing.T) {
	jv := newJikoVault(t)
	accts := jv.base + "/api/v1/jiko-accounts/"
	key := func() string { return rsaPEM(t, 4096, 65537, false, true) } // CRLF, as the guide's example

	// Idempotency: a repeated create returns the first answer and makes no card.
	body := map[string]any{"public_key": key()}
	first := jv.post(t, accts+"acct-1/virtual-cards", body, map[string]string{"x-jiko-idempotency": "idem-1"})
	again := jv.post(t, accts+"acct-1/virtual-cards", body, map[string]string{"x-jiko-idempotency": "idem-1"})
	if first.status != 201 || again.status != 201 || first.body != again.body {
		t.Fatalf("idempotent create: %d %s / %d %s", first.status, first.body, again.status, again.body)
	}
	if r := jv.post(t, accts+"acct-1/virtual-cards", map[string]any{"public_key": key()}, map[string]string{"Idempotency-Key": "idem-1"}); r.status != 409 || !strings.Contains(r.body, "different request") {
		t.Fatalf("idempotency key reused for another request: %d %s", r.status, r.body)
	}
	var card jikoCard
	json.Unmarshal([]byte(first.body), &card)
	if card.ObjectType != "virtual_card" || len(card.EncryptedPAN) != 512 {
		t.Fatalf("create answer %s", first.body)
	}
	list := jv.do(t, "GET", accts+"acct-1/cards", nil, nil)
	if strings.Count(list.body, `"card_id"`) != 1 || !strings.Contains(list.body, card.CardID) {
		t.Fatalf("after two idempotent creates the list is %s", list.body)
	}

	// Ownership: another account sees 404, the same as for no card at all.
	other := jv.post(t, accts+"acct-2/virtual-cards/"+card.CardID, map[string]any{"public_key": key()}, nil)
	none := jv.post(t, accts+"acct-2/virtual-cards/0190a6c2-0000-7000-8000-000000000000", map[string]any{"public_key": key()}, nil)
	if other.status != 404 || other.body != none.body {
		t.Fatalf("foreign card %d %s; absent card %d %s", other.status, other.body, none.status, none.body)
	}

	// Status: lock, unlock, refuse nonsense; pagination and filter.
	second := jv.post(t, accts+"acct-1/cards", map[string]any{"public_key": rsaPEM(t, 4096, 65537, true, false)}, nil)
	if second.status != 201 {
		t.Fatalf("PKCS#1 key create: %d %s", second.status, second.body)
	}
	statusURL := accts + "acct-1/cards/" + card.CardID + "/status"
	if r := jv.do(t, "PATCH", statusURL, strings.NewReader(`{"status":"LOCKED"}`), nil); r.status != 200 || !strings.Contains(r.body, `"status":"LOCKED"`) {
		t.Fatalf("lock: %d %s", r.status, r.body)
	}
	if r := jv.do(t, "PATCH", statusURL, strings.NewReader(`{"status":"CLOSED"}`), nil); r.status != 422 || !strings.Contains(r.body, `"loc":["body","status"]`) {
		t.Fatalf("status CLOSED by PATCH: %d %s", r.status, r.body)
	}
	if r := jv.do(t, "GET", accts+"acct-1/cards?filter[status]=LOCKED", nil, nil); strings.Count(r.body, `"card_id"`) != 1 || !strings.Contains(r.body, card.CardID) {
		t.Fatalf("filter LOCKED: %s", r.body)
	}
	page1 := jv.do(t, "GET", accts+"acct-1/cards?limit=1", nil, nil)
	var p1 struct {
		Items      []map[string]string `json:"items"`
		NextCursor *string             `json:"next_cursor"`
	}
	json.Unmarshal([]byte(page1.body), &p1)
	if len(p1.Items) != 1 || p1.NextCursor == nil {
		t.Fatalf("page 1: %s", page1.body)
	}
	page2 := jv.do(t, "GET", accts+"acct-1/cards?limit=1&cursor="+*p1.NextCursor, nil, nil)
	if !strings.Contains(page2.body, `"next_cursor":null`) || strings.Contains(page2.body, p1.Items[0]["card_id"]) {
		t.Fatalf("page 2: %s", page2.body)
	}
	if r := jv.do(t, "GET", accts+"acct-1/cards?limit=0", nil, nil); r.status != 422 || !strings.Contains(r.body, `"loc":["query","limit"]`) {
		t.Fatalf("limit=0: %d %s", r.status, r.body)
	}

	// Close: a bad reason is refused; a closed card reveals nothing, and
	// its metadata and audit trail stay.
	closeURL := accts + "acct-1/cards/" + card.CardID + "/close"
	if r := jv.post(t, closeURL, map[string]any{"closure_reason": "BORED"}, nil); r.status != 422 || !strings.Contains(r.body, `"loc":["body","closure_reason"]`) {
		t.Fatalf("bad closure reason: %d %s", r.status, r.body)
	}
	if r := jv.post(t, closeURL, map[string]any{"closure_reason": "STOLEN", "lost_stolen_date": "2026-01-02"}, nil); r.status != 204 {
		t.Fatalf("close: %d %s", r.status, r.body)
	}
	if r := jv.post(t, accts+"acct-1/virtual-cards/"+card.CardID, map[string]any{"public_key": key()}, nil); r.status != 409 || !strings.Contains(r.body, "card is closed") {
		t.Fatalf("reveal after close: %d %s", r.status, r.body)
	}
	if r := jv.do(t, "GET", statusURL, nil, nil); !strings.Contains(r.body, `"status":"CLOSED"`) {
		t.Fatalf("status after close: %s", r.body)
	}
	if r := jv.do(t, "DELETE", accts+"acct-1/virtual-cards/"+card.CardID, nil, nil); r.status != 409 {
		t.Fatalf("deleting a closed card: %d %s", r.status, r.body)
	}
}

// scanForLeaks looks for card data in every log line and in the database
// files, including with `strings`.
func (jv *jikoVault) scanForLeaks(t *testing.T, pans, cvvs []string) {
	t.Helper()
	logs := jv.logs.String()
	files, _ := filepath.Glob(filepath.Join(jv.dir, "vault.db*"))
	if len(files) == 0 {
		t.Fatal("no database files to scan")
	}
	var dbBytes []byte
	for _, f := range files {
		dbBytes = append(dbBytes, []byte(mustRead(t, f))...)
	}
	stringsOut, err := exec.Command("strings", files...).Output()
	if err != nil {
		t.Fatalf("strings: %v", err)
	}
	for _, pan := range pans {
		for where, text := range map[string]string{"log": logs, "database": string(dbBytes), "strings(database)": string(stringsOut)} {
			if strings.Contains(text, pan) || strings.Contains(text, pan[:6]+pan[6:12]) {
				t.Errorf("PAN found in %s", where)
			}
		}
	}
	// A bare 3-digit CVV occurs by chance in any binary file; in logs it
	// would appear as a value, so look for it next to its field names.
	for _, cvv := range cvvs {
		for _, pattern := range []string{`"cvv":"` + cvv, `cvv=` + cvv, `"cvc":"` + cvv} {
			if strings.Contains(logs, pattern) || strings.Contains(string(dbBytes), pattern) {
				t.Errorf("CVV found as %s", pattern)
			}
		}
	}
	if strings.Count(logs, `"msg":"request"`) < 3 {
		t.Errorf("the scanned log does not hold the requests (is logging on?)")
	}
}
