package jwe

import (
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"errors"
	"testing"

	jose "github.com/go-jose/go-jose/v4"
)

// FuzzDecryptPIN feeds DecryptPIN any compact string. Whatever it holds,
// the HSM unwrap runs exactly once on a key-sized input, and the answer is
// the plaintext of a well-formed JWE under the right kid or ErrDecrypt,
// never another error and never a panic.
func FuzzDecryptPIN(f *testing.F) {
	key := deviceKey(f)
	enc, err := jose.NewEncrypter(jose.A256CBC_HS512, jose.Recipient{Algorithm: jose.RSA_OAEP_256, Key: &key.PublicKey, KeyID: "set-pin-v1"}, nil)
	if err != nil {
		f.Fatal(err)
	}
	obj, err := enc.Encrypt([]byte(`{"pin":"1357"}`))
	if err != nil {
		f.Fatal(err)
	}
	good, _ := obj.CompactSerialize()
	f.Add(good)
	f.Add(good[:len(good)-3])
	f.Add("e30.e30.e30.e30.e30")
	f.Add("....")
	f.Add("")
	size := key.PublicKey.Size()
	f.Fuzz(func(t *testing.T, compact string) {
		calls := 0
		plain, err := DecryptPIN(compact, "set-pin-v1", size, func(wrapped []byte) ([]byte, error) {
			calls++
			if len(wrapped) != size {
				t.Fatalf("unwrap got %d bytes, want %d", len(wrapped), size)
			}
			cek, err := rsa.DecryptOAEP(sha256.New(), rand.Reader, key, wrapped, nil)
			if err != nil {
				return nil, ErrUnwrap
			}
			return cek, nil
		})
		if calls != 1 {
			t.Fatalf("unwrap ran %d times", calls)
		}
		if err != nil && !errors.Is(err, ErrDecrypt) {
			t.Fatalf("error %v is not ErrDecrypt", err)
		}
		if err == nil && plain == nil {
			t.Fatal("no error and no plaintext")
		}
	})
}
