package hsm

import (
	"bytes"
	"context"
	"crypto/rsa"
	"encoding/hex"
	"testing"

	"github.com/cardvault/cardvault/internal/testsupport/vectors"
	"github.com/miekg/pkcs11"
)

// importRSAKey puts a known RSA private key into the token as a set_pin
// version, so that vectors made with it decrypt inside the token. Only
// tests import private keys.
func importRSAKey(t testing.TB, m *Module, version uint32, key *rsa.PrivateKey) {
	t.Helper()
	key.Precompute()
	label := Label(SetPIN, version)
	common := func(class uint) []*pkcs11.Attribute {
		return []*pkcs11.Attribute{
			pkcs11.NewAttribute(pkcs11.CKA_CLASS, class),
			pkcs11.NewAttribute(pkcs11.CKA_KEY_TYPE, pkcs11.CKK_RSA),
			pkcs11.NewAttribute(pkcs11.CKA_TOKEN, true),
			pkcs11.NewAttribute(pkcs11.CKA_LABEL, label),
			pkcs11.NewAttribute(pkcs11.CKA_MODULUS, key.N.Bytes()),
			pkcs11.NewAttribute(pkcs11.CKA_PUBLIC_EXPONENT, []byte{1, 0, 1}),
		}
	}
	priv := append(common(pkcs11.CKO_PRIVATE_KEY),
		pkcs11.NewAttribute(pkcs11.CKA_PRIVATE, true),
		pkcs11.NewAttribute(pkcs11.CKA_SENSITIVE, true),
		pkcs11.NewAttribute(pkcs11.CKA_EXTRACTABLE, true),
		pkcs11.NewAttribute(pkcs11.CKA_WRAP_WITH_TRUSTED, true),
		pkcs11.NewAttribute(pkcs11.CKA_DECRYPT, true),
		pkcs11.NewAttribute(pkcs11.CKA_PRIVATE_EXPONENT, key.D.Bytes()),
		pkcs11.NewAttribute(pkcs11.CKA_PRIME_1, key.Primes[0].Bytes()),
		pkcs11.NewAttribute(pkcs11.CKA_PRIME_2, key.Primes[1].Bytes()),
		pkcs11.NewAttribute(pkcs11.CKA_EXPONENT_1, key.Precomputed.Dp.Bytes()),
		pkcs11.NewAttribute(pkcs11.CKA_EXPONENT_2, key.Precomputed.Dq.Bytes()),
		pkcs11.NewAttribute(pkcs11.CKA_COEFFICIENT, key.Precomputed.Qinv.Bytes()),
	)
	pub := append(common(pkcs11.CKO_PUBLIC_KEY), pkcs11.NewAttribute(pkcs11.CKA_ENCRYPT, true))
	c, err := m.current()
	if err != nil {
		t.Fatal(err)
	}
	err = c.withSession(func(sh pkcs11.SessionHandle) error {
		for _, tmpl := range [][]*pkcs11.Attribute{priv, pub} {
			if _, err := c.p.CreateObject(sh, tmpl); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatalf("import %s: %v", label, err)
	}
}

// TestWycheproofRSADecrypt runs Wycheproof's RSAES vectors through the
// token: PKCS#1 v1.5 and OAEP-SHA1 inside it, OAEP-SHA256 (both MGF1
// variants) on whichever path the token supports. A valid vector must
// decrypt to its message; every invalid one must give exactly ErrCrypto.
func TestWycheproofRSADecrypt(t *testing.T) {
	files := []struct {
		name string
		pad  RSAPadding
	}{
		{"rsa_pkcs1_2048_test.json", PKCS1v15},
		{"rsa_pkcs1_4096_test.json", PKCS1v15},
		{"rsa_oaep_2048_sha1_mgf1sha1_test.json", OAEPSHA1},
		{"rsa_oaep_2048_sha256_mgf1sha256_test.json", OAEPSHA256},
		{"rsa_oaep_2048_sha256_mgf1sha1_test.json", OAEPSHA256MGF1SHA1},
		{"rsa_oaep_3072_sha256_mgf1sha256_test.json", OAEPSHA256},
		{"rsa_oaep_3072_sha256_mgf1sha1_test.json", OAEPSHA256MGF1SHA1},
		{"rsa_oaep_4096_sha256_mgf1sha256_test.json", OAEPSHA256},
		{"rsa_oaep_4096_sha256_mgf1sha1_test.json", OAEPSHA256MGF1SHA1},
	}
	m, _ := openTestModule(t)
	ctx := context.Background()
	version := uint32(0)
	keys := map[string]uint32{}
	var valid, invalid, labelled int
	for _, file := range files {
		f := vectors.Load(t, file.name)
		for _, g := range f.TestGroups {
			v, ok := keys[g.PrivateKeyPKCS8]
			if !ok {
				priv, _ := g.PrivateKey(t)
				version++
				v = version
				importRSAKey(t, m, v, priv)
				keys[g.PrivateKeyPKCS8] = v
			}
			for _, tc := range g.Tests {
				ct, _ := hex.DecodeString(tc.CT)
				msg, _ := hex.DecodeString(tc.Msg)
				got, err := m.DecryptRSA(ctx, v, file.pad, ct)
				switch {
				case tc.Label != "":
					// The vault never uses OAEP labels, so a vector made
					// with one must not decrypt under the empty label.
					labelled++
					if err != ErrCrypto {
						t.Errorf("%s #%d (label): err = %v, want ErrCrypto", file.name, tc.TcID, err)
					}
				case tc.Result == "valid" || tc.Result == "acceptable":
					valid++
					if err != nil || !bytes.Equal(got, msg) {
						t.Errorf("%s #%d: got %x, %v; want %x", file.name, tc.TcID, got, err, msg)
					}
				default:
					invalid++
					if !refused(file.pad, got, err, msg) {
						t.Errorf("%s #%d (invalid): %x, err = %v, want exactly ErrCrypto", file.name, tc.TcID, got, err)
					}
				}
			}
		}
	}
	t.Logf("Wycheproof RSAES: %d valid, %d invalid, %d labelled vectors; OAEP-SHA256 path: %s",
		valid, invalid, labelled, map[int32]string{oaepInToken: "in token", oaepRawFallback: "RSA_X_509 + local decode"}[m.oaepSHA256.Load()])
	if valid == 0 || invalid == 0 {
		t.Fatal("vector files yielded no valid or no invalid cases")
	}
	if m.Reconnects() != 0 {
		t.Fatalf("invalid vectors caused %d reconnects", m.Reconnects())
	}
}

// TestWycheproofPINPaths runs Wycheproof's RSAES-PKCS1-v1_5 vectors
// through the PIN path's decryption on both of its paths: raw RSA with the
// padding decoded by the caller, and CKM_RSA_PKCS in the token with the
// message encoded again (a token without raw RSA, forced here on one that
// has it). A valid vector's encoded message decodes to its message; an
// invalid one is ErrCrypto or decodes to no message (on a token with
// implicit rejection, to another message).
func TestWycheproofPINPaths(t *testing.T) {
	files := []string{"rsa_pkcs1_2048_test.json", "rsa_pkcs1_4096_test.json"}
	for _, path := range []struct{ name, profile string }{{"raw RSA", "raw-rsa=yes"}, {"CKM_RSA_PKCS", "raw-rsa=no"}} {
		t.Run(path.name, func(t *testing.T) {
			tok := newTestToken(t)
			m, err := Open(Config{Module: tok.Module, TokenLabel: tok.Label, PIN: tok.PIN, Profile: path.profile})
			if err != nil {
				t.Fatal(err)
			}
			defer m.Close()
			ctx := context.Background()
			version := uint32(0)
			counts := map[string]int{}
			for _, name := range files {
				for _, g := range vectors.Load(t, name).TestGroups {
					priv, _ := g.PrivateKey(t)
					version++
					importRSAKey(t, m, version, priv)
					for _, tc := range g.Tests {
						ct, _ := hex.DecodeString(tc.CT)
						want, _ := hex.DecodeString(tc.Msg)
						em, err := m.SetPINDecryptPKCS1(ctx, version, ct)
						got, ok := decodeEM(em)
						switch {
						case tc.Result == "valid" || tc.Result == "acceptable":
							counts["valid"]++
							if err != nil || !ok || !bytes.Equal(got, want) {
								t.Errorf("%s #%d: %x %v %v, want %x", name, tc.TcID, got, ok, err, want)
							}
						case err == ErrCrypto:
							counts["invalid: refused"]++
						case err != nil:
							t.Errorf("%s #%d (invalid): %v, want ErrCrypto or an invalid message", name, tc.TcID, err)
						case !ok:
							counts["invalid: no message"]++
						case implicitRejection(PKCS1v15) && !bytes.Equal(got, want):
							counts["invalid: stand-in message"]++
						default:
							t.Errorf("%s #%d (invalid) decoded to %x", name, tc.TcID, got)
						}
					}
				}
			}
			t.Logf("Wycheproof PKCS#1 v1.5 on the %s PIN path: %v", path.name, counts)
			if counts["valid"] == 0 || len(counts) < 2 {
				t.Fatalf("vectors %v: nothing checked", counts)
			}
		})
	}
}
