package jwe

import (
	"bytes"
	"crypto"
	"crypto/aes"
	"crypto/cipher"
	"crypto/hmac"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/sha512"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"strings"
	"sync"
	"testing"

	jose "github.com/go-jose/go-jose/v4"
)

var (
	keyOnce sync.Once
	testKey *rsa.PrivateKey
)

func deviceKey(t testing.TB) *rsa.PrivateKey {
	keyOnce.Do(func() {
		k, err := rsa.GenerateKey(rand.Reader, 2048)
		if err != nil {
			t.Fatal(err)
		}
		testKey = k
	})
	return testKey
}

type header struct {
	Alg string  `json:"alg"`
	Enc string  `json:"enc"`
	Kid *string `json:"kid"`
}

func parseHeader(t *testing.T, compact string) header {
	t.Helper()
	b, err := base64.RawURLEncoding.DecodeString(strings.Split(compact, ".")[0])
	if err != nil {
		t.Fatal(err)
	}
	var h header
	if err := json.Unmarshal(b, &h); err != nil {
		t.Fatal(err)
	}
	return h
}

func TestEveryPairDecryptsWithTheStandardNames(t *testing.T) {
	priv := deviceKey(t)
	plain := []byte(`{"pan":"4000001234567899","cvc":"123","expires_at":"2029-11-30","line_1":"ADA LOVELACE"}`)
	wantAlg := map[KeyAlg]string{RSA1_5: "RSA1_5", RSAOAEP256: "RSA-OAEP-256", RSAOAEP256Android: "RSA-OAEP-256"}
	wantEnc := map[ContentEnc]string{A256GCM: "A256GCM", A256CBCHS512: "A256CBC-HS512"}
	for _, alg := range KeyAlgs {
		for _, enc := range ContentEncs {
			t.Run(string(alg)+"/"+string(enc), func(t *testing.T) {
				compact, err := Encrypt(Recipient{Key: &priv.PublicKey, KeyID: "device-kid-1", HasKeyID: true}, alg, enc, plain)
				if err != nil {
					t.Fatal(err)
				}
				h := parseHeader(t, compact)
				if h.Alg != wantAlg[alg] || h.Enc != wantEnc[enc] || h.Kid == nil || *h.Kid != "device-kid-1" {
					t.Fatalf("header = %+v", h)
				}
				var got []byte
				if alg == RSAOAEP256Android {
					got = decryptAndroid(t, priv, compact)
				} else {
					obj, err := jose.ParseEncryptedCompact(compact, []jose.KeyAlgorithm{jose.RSA1_5, jose.RSA_OAEP_256}, []jose.ContentEncryption{jose.A256GCM, jose.A256CBC_HS512})
					if err != nil {
						t.Fatal(err)
					}
					if got, err = obj.Decrypt(priv); err != nil {
						t.Fatal(err)
					}
				}
				if !bytes.Equal(got, plain) {
					t.Fatalf("decrypted %q", got)
				}
			})
		}
	}
}

// decryptAndroid is an independent reading of the Android variant: it
// unwraps the content key with OAEP SHA-256/MGF1-SHA-1 and decrypts the
// content per RFC 7518 §5.2 and §5.3.
func decryptAndroid(t *testing.T, priv *rsa.PrivateKey, compact string) []byte {
	t.Helper()
	parts := strings.Split(compact, ".")
	if len(parts) != 5 {
		t.Fatalf("%d parts", len(parts))
	}
	var raw [5][]byte
	for i, p := range parts {
		b, err := base64.RawURLEncoding.DecodeString(p)
		if err != nil {
			t.Fatalf("part %d: %v", i, err)
		}
		raw[i] = b
	}
	ek, iv, ct, tag := raw[1], raw[2], raw[3], raw[4]
	aad := []byte(parts[0])
	if _, err := rsa.DecryptOAEP(sha256.New(), nil, priv, ek, nil); err == nil {
		t.Fatal("the Android key wrap also opens as plain OAEP-SHA-256 (MGF1-SHA-256)")
	}
	cek, err := priv.Decrypt(nil, ek, &rsa.OAEPOptions{Hash: crypto.SHA256, MGFHash: crypto.SHA1})
	if err != nil {
		t.Fatalf("unwrap with MGF1-SHA-1: %v", err)
	}
	switch parseHeader(t, compact).Enc {
	case "A256GCM":
		block, _ := aes.NewCipher(cek)
		gcm, _ := cipher.NewGCM(block)
		out, err := gcm.Open(nil, iv, append(ct, tag...), aad)
		if err != nil {
			t.Fatal(err)
		}
		return out
	case "A256CBC-HS512":
		macKey, encKey := cek[:32], cek[32:]
		al := make([]byte, 8)
		binary.BigEndian.PutUint64(al, uint64(len(aad))*8)
		m := hmac.New(sha512.New, macKey)
		m.Write(aad)
		m.Write(iv)
		m.Write(ct)
		m.Write(al)
		if !hmac.Equal(m.Sum(nil)[:32], tag) {
			t.Fatal("CBC-HS512 tag does not verify")
		}
		block, _ := aes.NewCipher(encKey)
		out := make([]byte, len(ct))
		cipher.NewCBCDecrypter(block, iv).CryptBlocks(out, ct)
		pad := int(out[len(out)-1])
		return out[:len(out)-pad]
	}
	t.Fatal("unknown enc")
	return nil
}

func TestKeyIDIsCarriedEvenWhenEmpty(t *testing.T) {
	priv := deviceKey(t)
	for _, r := range []struct {
		rcpt Recipient
		want *string
	}{
		{Recipient{Key: &priv.PublicKey, KeyID: "", HasKeyID: true}, new(string)},
		{Recipient{Key: &priv.PublicKey}, nil},
	} {
		compact, err := Encrypt(r.rcpt, RSAOAEP256Android, A256GCM, []byte("x"))
		if err != nil {
			t.Fatal(err)
		}
		h := parseHeader(t, compact)
		if (h.Kid == nil) != (r.want == nil) || (h.Kid != nil && *h.Kid != *r.want) {
			t.Errorf("HasKeyID=%v: kid = %v", r.rcpt.HasKeyID, h.Kid)
		}
	}
}

func TestRefusesWhatIsNotAllowed(t *testing.T) {
	priv := deviceKey(t)
	for _, c := range []struct {
		alg KeyAlg
		enc ContentEnc
	}{{"RSA_OAEP", A256GCM}, {"dir", A256GCM}, {RSA1_5, "A128GCM"}, {RSA1_5, "A256CBC-HS512"}} {
		if _, err := Encrypt(Recipient{Key: &priv.PublicKey}, c.alg, c.enc, []byte("x")); err == nil {
			t.Errorf("%s/%s was allowed", c.alg, c.enc)
		}
	}
	for _, s := range []string{"", "rsa1_5", "RSA-OAEP-256", "RSA_OAEP"} {
		if _, ok := ParseKeyAlg(s); ok {
			t.Errorf("ParseKeyAlg(%q) ok", s)
		}
	}
	for _, s := range []string{"", "A256CBC-HS512", "A128GCM", "a256gcm"} {
		if _, ok := ParseContentEnc(s); ok {
			t.Errorf("ParseContentEnc(%q) ok", s)
		}
	}
}

func TestEachJWEUsesAFreshContentKey(t *testing.T) {
	priv := deviceKey(t)
	seen := map[string]bool{}
	for i := 0; i < 20; i++ {
		compact, err := Encrypt(Recipient{Key: &priv.PublicKey}, RSAOAEP256Android, A256GCM, []byte("same"))
		if err != nil {
			t.Fatal(err)
		}
		p := strings.Split(compact, ".")
		for _, part := range []string{p[1], p[2], p[3]} {
			if seen[part] {
				t.Fatal("a key wrap, IV or ciphertext repeated")
			}
			seen[part] = true
		}
	}
}

func BenchmarkEncrypt(b *testing.B) {
	priv := deviceKey(b)
	plain := []byte(`{"pan":"4000001234567899","cvc":"123","expires_at":"2029-11-30","line_1":""}`)
	for _, alg := range KeyAlgs {
		b.Run(string(alg), func(b *testing.B) {
			for b.Loop() {
				if _, err := Encrypt(Recipient{Key: &priv.PublicKey}, alg, A256GCM, plain); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
