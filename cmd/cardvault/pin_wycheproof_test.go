package main

import (
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/cardvault/cardvault/internal/testenv"
	"github.com/cardvault/cardvault/internal/vectors"
)

// TestSetPINEndpointWithWycheproofVectors puts Wycheproof's RSAES-PKCS1-v1_5
// 4096-bit test key into a fresh token as set-pin/v1 with OpenSC's pkcs11-tool,
// runs the ceremony (which keeps it), and sends every vector to the real
// binary's set-PIN endpoint: none carries a 4-digit PIN, so every one, valid
// padding or not, must get the identical answer. A PIN encrypted to the
// same key then succeeds, which shows the vectors reached that key.
func TestSetPINEndpointWithWycheproofVectors(t *testing.T) {
	testenv.RequireCommand(t, "pkcs11-tool")
	file := vectors.Load(t, "rsa_pkcs1_4096_test.json")
	// The file's main group shares one key over valid and invalid
	// vectors; the others are one vector each on special keys, which the
	// vault's unit test covers.
	group := file.TestGroups[0]
	for _, g := range file.TestGroups {
		if len(g.Tests) > len(group.Tests) {
			group = g
		}
	}
	priv, der := group.PrivateKey(t)

	v := newVaultEnv(t)
	pubDER, _ := x509.MarshalPKIXPublicKey(&priv.PublicKey)
	for typ, body := range map[string][]byte{"privkey": der, "pubkey": pubDER} {
		path := filepath.Join(v.dir, typ+".der")
		os.WriteFile(path, body, 0o600)
		args := []string{"--module", v.tok.Module, "--token-label", v.tok.Label, "--login", "--pin", v.tok.PIN,
			"--write-object", path, "--type", typ, "--label", "set-pin/v1"}
		if typ == "privkey" {
			args = append(args, "--usage-decrypt", "--private")
		}
		cmd := exec.Command("pkcs11-tool", args...)
		cmd.Env = v.env
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("pkcs11-tool %s: %v\n%s", typ, err, out)
		}
		os.Remove(path)
	}
	out, err := v.run(t, "ceremony", "init")
	if err != nil || !strings.Contains(out, "set-pin/v1") || !strings.Contains(out, "exists, unchanged") {
		t.Fatalf("ceremony: %v\n%s", err, out)
	}
	token := v.token(t, "platform", "cards:write", "pin:write")
	base, logs := startServer(t, v, envPINPerCard+"=1000")
	jv := &jikoVault{vaultEnv: v, base: base, token: token, logs: logs}
	card := jv.importCard(t, "acct-1", "4000001234567899")
	url := base + "/api/v1/jiko-accounts/acct-1/cards/" + card + "/pin"

	answers := map[string][]int{}
	results := map[string]int{}
	for _, tc := range group.Tests {
		ct, _ := hex.DecodeString(tc.CT)
		r := jv.post(t, url, map[string]string{"encrypted_pin": base64.StdEncoding.EncodeToString(ct)}, nil)
		key := fmt.Sprintf("%d %s", r.status, strings.TrimSpace(r.body))
		answers[key] = append(answers[key], tc.TcID)
		results[tc.Result]++
	}
	if len(answers) != 1 {
		t.Fatalf("the vectors got %d different answers: %v", len(answers), answers)
	}
	for answer := range answers {
		if !strings.HasPrefix(answer, "422 ") || !strings.Contains(answer, `"loc":["body","encrypted_pin"]`) {
			t.Fatalf("answer %s", answer)
		}
	}
	t.Logf("%d vectors (%v), one answer", len(group.Tests), results)

	ct, err := rsa.EncryptPKCS1v15(rand.Reader, &priv.PublicKey, []byte("1357\n"))
	if err != nil {
		t.Fatal(err)
	}
	if r := jv.post(t, url, map[string]string{"encrypted_pin": base64.StdEncoding.EncodeToString(ct)}, nil); r.status != 200 {
		t.Fatalf("a PIN under the Wycheproof key: %d %s", r.status, r.body)
	}
}
