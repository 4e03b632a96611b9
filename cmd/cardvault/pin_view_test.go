package main

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/cardvault/cardvault/internal/testsupport/testenv"
)

// Issue 32: a PIN set with the Jiko guide's openssl flow, then viewed by
// the cardholder's single-use RSA-4096 key and decrypted with openssl:
// the same PIN. A key seen before, a card without a PIN, another
// account's card and a token without pin:view are refused.
func TestPINViewWithOpenSSL(t *testing.T) {
	openssl := testenv.RequireCommand(t, "openssl")
	jv := newServedVault(t, append(append([]string{}, pinScopes...), "pin:view"))
	accts := jv.base + "/api/v1/jiko-accounts/"
	_, card := orderPhysicalCard(t, jv, "acct-1")
	dir := t.TempDir()
	newKey := func(name string) (priv, pub string) {
		priv, pub = filepath.Join(dir, name+".pem"), filepath.Join(dir, name+".pub")
		if out, err := exec.Command(openssl, "genrsa", "-out", priv, "4096").CombinedOutput(); err != nil {
			t.Fatalf("genrsa: %v\n%s", err, out)
		}
		if out, err := exec.Command(openssl, "rsa", "-in", priv, "-pubout", "-out", pub).CombinedOutput(); err != nil {
			t.Fatalf("rsa -pubout: %v\n%s", err, out)
		}
		b, _ := os.ReadFile(pub)
		return priv, string(b)
	}
	view := func(account, card, pub string) response {
		return jv.post(t, accts+account+"/cards/"+card+"/pin/view", map[string]string{"public_key": pub}, nil)
	}
	priv, pub := newKey("device")
	if r := view("acct-1", card, pub); r.status != 409 || !strings.Contains(r.body, "no PIN set") {
		t.Fatalf("a card without a PIN: %d %s", r.status, r.body)
	}
	if st, body := runPINFlow(t, jv, "acct-1", card, "1357"); st != "200" {
		t.Fatalf("set PIN: %s %s", st, body)
	}
	r := view("acct-1", card, pub)
	var out struct {
		CardID       string `json:"card_id"`
		EncryptedPIN []byte `json:"encrypted_pin"`
	}
	if err := json.Unmarshal([]byte(r.body), &out); r.status != 200 || err != nil || out.CardID != card {
		t.Fatalf("PIN view: %d %s %v", r.status, r.body, err)
	}
	ct := filepath.Join(dir, "pin.bin")
	os.WriteFile(ct, out.EncryptedPIN, 0o600)
	pin, err := exec.Command(openssl, "pkeyutl", "-decrypt", "-inkey", priv, "-in", ct).Output()
	if err != nil || string(pin) != "1357" {
		t.Fatalf("openssl decrypts %q (%v), want the PIN set, 1357", pin, err)
	}
	if r := view("acct-1", card, pub); r.status != 409 {
		t.Errorf("the same key twice: %d %s", r.status, r.body)
	}
	_, other := newKey("other")
	if r := view("acct-2", card, other); r.status != 404 {
		t.Errorf("another account's card: %d %s", r.status, r.body)
	}
	if r := jv.as(t, "setter", "pin:write").post(t, accts+"acct-1/cards/"+card+"/pin/view", map[string]string{"public_key": other}, nil); r.status != 403 {
		t.Errorf("a token without pin:view: %d %s", r.status, r.body)
	}
}

// TestPINViewOnBoundDevice sets a PIN with the Jiko guide's openssl flow
// and views it on a device bound by Debian's python3-jwcrypto: the JWE to
// the device's fresh JWK holds the same PIN.
func TestPINViewOnBoundDevice(t *testing.T) {
	python := "/usr/bin/python3"
	testenv.Require(t, "Debian python3 with jwcrypto", exec.Command(python, "-c", "import jwcrypto, cryptography").Run())
	jv := newServedVault(t, append(append([]string{}, pinScopes...), "pin:view"))
	_, card := orderPhysicalCard(t, jv, "person-1")
	_, noPIN := orderPhysicalCard(t, jv, "person-1")
	// The PIN is set before any device is bound: afterwards the device
	// gate refuses the Jiko route for this owner's cards.
	if st, body := runPINFlow(t, jv, "person-1", card, "2468"); st != "200" {
		t.Fatalf("set PIN: %s %s", st, body)
	}
	d := jv.bindDevice(t, "person-1", true)
	wantRefusal(t, "no PIN set", jv.pinView(t, request(t, noPIN, d)), 409, "id")
	py, _ := filepath.Abs("../../examples/solaris_client.py")
	pairs := [][2]string{{"RSA_OAEP_256", "A256GCM"}, {"RSA1_5", "A256CBC_HS512"}}
	device, results := runClient(t, jv, []string{python, py}, "person-1", card, pairs, "pin")
	for _, r := range results {
		if r.Payload["pin"] != "2468" || len(r.Payload) != 1 || r.DecryptedBy != "jwcrypto" {
			t.Errorf("%s/%s: payload has %d member(s), pin equal to the one set: %v", r.Alg, r.Enc, len(r.Payload), r.Payload["pin"] == "2468")
		}
	}

	// The owner has bound devices: the route without a device signature
	// refuses the card (the device gate).
	if r := jv.post(t, jv.base+"/api/v1/jiko-accounts/person-1/cards/"+card+"/pin/view", map[string]string{"public_key": rsaPEM(t, 4096, 65537, false, false)}, nil); r.status != 403 {
		t.Errorf("the Jiko PIN view of a card behind a device: %d %s", r.status, r.body)
	}
	req := request(t, card, d)
	if r := jv.pinView(t, req); r.status != 200 {
		t.Fatalf("a second device's view: %d %s", r.status, r.body)
	}
	wantRefusal(t, "the same JWK twice", jv.pinView(t, req), 409, "jwk")
	stranger := jv.bindDevice(t, "person-2", true)
	wantRefusal(t, "another person's device", jv.pinView(t, request(t, card, stranger)), 404, "")
	if r := jv.as(t, "setter", "pin:write").post(t, jv.base+"/v1/cards/"+card+"/pin_view_requests", map[string]string{}, nil); r.status != 403 {
		t.Errorf("a token without pin:view: %d %s", r.status, r.body)
	}
	views := map[string]int{}
	for _, e := range auditTrail(t, jv, card) {
		if e.Action == "card.pin_view" && e.Outcome == "ok" {
			views[e.Detail["device_id"]]++
		}
	}
	if views[device] != len(pairs) || views[d.id] != 1 {
		t.Errorf("audited PIN views by device: %v (jwcrypto's %s, the test's %s)", views, device, d.id)
	}
	if logs := jv.logs.String(); strings.Contains(logs, `"pin":"2468"`) || !strings.Contains(logs, "pin_view_requests") {
		t.Errorf("the log holds the PIN, or not the requests")
	}
}

func (jv *jikoVault) pinView(t *testing.T, r *secureViewReq) response {
	t.Helper()
	return jv.viewOnDevice(t, "pin_view_requests", r)
}
