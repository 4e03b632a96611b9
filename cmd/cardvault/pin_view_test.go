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
