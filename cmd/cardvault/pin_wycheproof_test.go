package main

import (
	"crypto/rand"
	"crypto/rsa"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"math/big"
	"strings"
	"testing"

	"github.com/cardvault/cardvault/internal/testsupport/p11test"
	"github.com/cardvault/cardvault/internal/testsupport/vectors"
	"github.com/miekg/pkcs11"
)

// TestSetPINEndpointWithWycheproofVectors puts Wycheproof's RSAES-PKCS1-v1_5
// 4096-bit test key into a fresh token as set-pin/v1 through PKCS#11, with
// the attributes a restored key has, adopts it with a ceremony (the server
// uses no unrecorded key), and sends every vector to the real
// binary's set-PIN endpoint: none carries a 4-digit PIN, so every one, valid
// padding or not, must get the identical answer. A PIN encrypted to the
// same key then succeeds, which shows the vectors reached that key. It runs
// on both PIN paths: raw RSA, and CKM_RSA_PKCS on a token without raw RSA
// (as FIPS-mode modules are).
func TestSetPINEndpointWithWycheproofVectors(t *testing.T) {
	for _, path := range []struct {
		name string
		drop []string
	}{{"raw RSA", nil}, {"CKM_RSA_PKCS, no CKM_RSA_X_509 in the token", []string{"CKM_RSA_X_509"}}} {
		t.Run(path.name, func(t *testing.T) {
			v := newVaultEnv(t)
			if path.drop != nil {
				if err := p11test.WithoutMechanisms(v.tok.Conf, path.drop...); err != nil {
					t.Fatal(err)
				}
			}
			setPINWithWycheproofVectors(t, v)
		})
	}
}

func setPINWithWycheproofVectors(t *testing.T, v *vaultEnv) {
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
	priv, _ := group.PrivateKey(t)

	importKeyPair(t, v, "set-pin/v1", priv)
	out, err := v.run(t, "ceremony", "init")
	if err != nil || !strings.Contains(out, "set-pin/v1") || !strings.Contains(out, "exists, NOT RECORDED") {
		t.Fatalf("ceremony: %v\n%s", err, out)
	}
	// An imported key is used only once a ceremony has looked at it and
	// recorded it.
	out, err = v.run(t, "ceremony", "adopt", "--label", "set-pin/v1")
	if err != nil || !strings.Contains(out, "set-pin/v1") || !strings.Contains(out, "recorded, origin imported") {
		t.Fatalf("adopt: %v\n%s", err, out)
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

// importKeyPair creates an RSA key pair of a known value in the test token
// under label, with the attributes the vault gives a restored set_pin key:
// sensitive, decrypt only, wrapped only under a trusted key, not copyable,
// not modifiable. They are written out here, not taken from hsm: this is
// another tool placing a key, which the catalog check must judge.
func importKeyPair(t *testing.T, v *vaultEnv, label string, priv *rsa.PrivateKey) {
	t.Helper()
	priv.Precompute()
	b := func(n *big.Int) []byte { return n.Bytes() }
	e := big.NewInt(int64(priv.E)).Bytes()
	withUserSession(t, v, func(p *pkcs11.Ctx, sh pkcs11.SessionHandle) {
		common := func(class uint) []*pkcs11.Attribute {
			return []*pkcs11.Attribute{
				pkcs11.NewAttribute(pkcs11.CKA_CLASS, class),
				pkcs11.NewAttribute(pkcs11.CKA_KEY_TYPE, pkcs11.CKK_RSA),
				pkcs11.NewAttribute(pkcs11.CKA_LABEL, label),
				pkcs11.NewAttribute(pkcs11.CKA_ID, []byte(label)),
				pkcs11.NewAttribute(pkcs11.CKA_TOKEN, true),
				pkcs11.NewAttribute(pkcs11.CKA_MODULUS, b(priv.N)),
				pkcs11.NewAttribute(pkcs11.CKA_PUBLIC_EXPONENT, e),
			}
		}
		public := append(common(pkcs11.CKO_PUBLIC_KEY),
			pkcs11.NewAttribute(pkcs11.CKA_ENCRYPT, true),
			pkcs11.NewAttribute(pkcs11.CKA_VERIFY, false),
			pkcs11.NewAttribute(pkcs11.CKA_WRAP, false))
		private := append(common(pkcs11.CKO_PRIVATE_KEY),
			pkcs11.NewAttribute(pkcs11.CKA_PRIVATE, true),
			pkcs11.NewAttribute(pkcs11.CKA_PRIVATE_EXPONENT, b(priv.D)),
			pkcs11.NewAttribute(pkcs11.CKA_PRIME_1, b(priv.Primes[0])),
			pkcs11.NewAttribute(pkcs11.CKA_PRIME_2, b(priv.Primes[1])),
			pkcs11.NewAttribute(pkcs11.CKA_EXPONENT_1, b(priv.Precomputed.Dp)),
			pkcs11.NewAttribute(pkcs11.CKA_EXPONENT_2, b(priv.Precomputed.Dq)),
			pkcs11.NewAttribute(pkcs11.CKA_COEFFICIENT, b(priv.Precomputed.Qinv)),
			pkcs11.NewAttribute(pkcs11.CKA_DECRYPT, true),
			pkcs11.NewAttribute(pkcs11.CKA_SIGN, false),
			pkcs11.NewAttribute(pkcs11.CKA_UNWRAP, false),
			pkcs11.NewAttribute(pkcs11.CKA_DERIVE, false),
			pkcs11.NewAttribute(pkcs11.CKA_SENSITIVE, true),
			pkcs11.NewAttribute(pkcs11.CKA_EXTRACTABLE, true),
			pkcs11.NewAttribute(pkcs11.CKA_WRAP_WITH_TRUSTED, true),
			pkcs11.NewAttribute(pkcs11.CKA_COPYABLE, false),
			pkcs11.NewAttribute(pkcs11.CKA_MODIFIABLE, false))
		for _, tmpl := range [][]*pkcs11.Attribute{public, private} {
			if _, err := p.CreateObject(sh, tmpl); err != nil {
				t.Fatal(err)
			}
		}
	})
}
