package libcrypto

import (
	"bytes"
	"crypto"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha1"
	"crypto/sha256"
	"math/big"
	"sync"
	"testing"
)

var (
	keysOnce sync.Once
	keys     map[int]*rsa.PrivateKey
)

func testKey(t testing.TB, bits int) *rsa.PrivateKey {
	t.Helper()
	keysOnce.Do(func() {
		keys = map[int]*rsa.PrivateKey{}
		for _, b := range []int{2048, 4096} {
			k, err := rsa.GenerateKey(rand.Reader, b)
			if err != nil {
				panic(err)
			}
			keys[b] = k
		}
	})
	return keys[bits]
}

// Go's crypto/rsa decrypts what libcrypto encrypted: an independent check
// of the padding and the exponentiation, for each size and padding the
// vault uses.
func TestGoDecryptsWhatLibcryptoEncrypts(t *testing.T) {
	msg := []byte("5500000000000004|123|12/30")
	for _, bits := range []int{2048, 4096} {
		k := testKey(t, bits)
		ct, err := EncryptPKCS1v15(&k.PublicKey, msg)
		if err != nil {
			t.Fatal(err)
		}
		if len(ct) != bits/8 {
			t.Fatalf("%d: ciphertext is %d bytes", bits, len(ct))
		}
		got, err := rsa.DecryptPKCS1v15(nil, k, ct)
		if err != nil || !bytes.Equal(got, msg) {
			t.Fatalf("%d: PKCS#1 v1.5: %q, %v", bits, got, err)
		}
		for _, c := range []struct{ hash, mgf crypto.Hash }{
			{crypto.SHA1, crypto.SHA1}, {crypto.SHA256, crypto.SHA256}, {crypto.SHA256, crypto.SHA1},
		} {
			ct, err := EncryptOAEP(&k.PublicKey, c.hash, c.mgf, msg)
			if err != nil {
				t.Fatal(err)
			}
			got, err := k.Decrypt(nil, ct, &rsa.OAEPOptions{Hash: c.hash, MGFHash: c.mgf})
			if err != nil || !bytes.Equal(got, msg) {
				t.Fatalf("%d: OAEP %v/%v: %q, %v", bits, c.hash, c.mgf, got, err)
			}
		}
	}
}

// Two encryptions of one message differ: the padding is random.
func TestPaddingIsRandom(t *testing.T) {
	k := testKey(t, 2048)
	a, err := EncryptPKCS1v15(&k.PublicKey, []byte("x"))
	if err != nil {
		t.Fatal(err)
	}
	b, err := EncryptPKCS1v15(&k.PublicKey, []byte("x"))
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Equal(a, b) {
		t.Fatal("two PKCS#1 v1.5 encryptions are equal")
	}
}

func TestRefusals(t *testing.T) {
	k := testKey(t, 2048)
	if _, err := EncryptPKCS1v15(&k.PublicKey, make([]byte, 256-10)); err == nil {
		t.Error("a message longer than k-11 bytes was encrypted")
	}
	if _, err := EncryptOAEP(&k.PublicKey, crypto.SHA256, crypto.SHA256, make([]byte, 256-2*sha256.Size-1)); err == nil {
		t.Error("a message longer than k-2hLen-2 bytes was encrypted")
	}
	if _, err := EncryptOAEP(&k.PublicKey, crypto.SHA512, crypto.SHA1, []byte("x")); err == nil {
		t.Error("OAEP with SHA-512 was not refused")
	}
	even := &rsa.PublicKey{N: new(big.Int).Lsh(k.N, 1), E: 65537}
	if _, err := EncryptPKCS1v15(even, []byte("x")); err == nil {
		t.Error("an even modulus was not refused")
	}
	if _, err := EncryptPKCS1v15(nil, []byte("x")); err == nil {
		t.Error("a nil key was not refused")
	}
	// The largest message each padding allows still fits.
	if _, err := EncryptOAEP(&k.PublicKey, crypto.SHA1, crypto.SHA1, make([]byte, 256-2*sha1.Size-2)); err != nil {
		t.Errorf("the longest OAEP-SHA1 message: %v", err)
	}
}

// A fresh key per call, as every client key is.
func benchFresh(b *testing.B, bits int, enc func(*rsa.PublicKey, []byte) ([]byte, error)) {
	k := testKey(b, bits)
	msg := []byte("5500000000000004")
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			pub := &rsa.PublicKey{N: new(big.Int).Set(k.N), E: k.E}
			if _, err := enc(pub, msg); err != nil {
				b.Error(err)
				return
			}
		}
	})
}

func BenchmarkPKCS1v15_4096(b *testing.B) {
	b.Run("libcrypto", func(b *testing.B) { benchFresh(b, 4096, EncryptPKCS1v15) })
	b.Run("go", func(b *testing.B) {
		benchFresh(b, 4096, func(p *rsa.PublicKey, m []byte) ([]byte, error) { return rsa.EncryptPKCS1v15(rand.Reader, p, m) })
	})
}

func BenchmarkOAEP256_2048(b *testing.B) {
	b.Run("libcrypto", func(b *testing.B) {
		benchFresh(b, 2048, func(p *rsa.PublicKey, m []byte) ([]byte, error) {
			return EncryptOAEP(p, crypto.SHA256, crypto.SHA256, m)
		})
	})
	b.Run("go", func(b *testing.B) {
		benchFresh(b, 2048, func(p *rsa.PublicKey, m []byte) ([]byte, error) {
			return rsa.EncryptOAEP(sha256.New(), rand.Reader, p, m, nil)
		})
	})
}

// BenchmarkThreeFields_4096 is a Jiko reveal's encryption: three fields
// to one fresh key, loaded once or once per field.
func BenchmarkThreeFields_4096(b *testing.B) {
	k := testKey(b, 4096)
	fields := [][]byte{[]byte("5500000000000004"), []byte("123"), []byte("12/30")}
	b.Run("key-once", func(b *testing.B) {
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				key, err := NewPublicKey(&rsa.PublicKey{N: new(big.Int).Set(k.N), E: k.E})
				if err != nil {
					b.Error(err)
					return
				}
				for _, f := range fields {
					if _, err := key.EncryptPKCS1v15(f); err != nil {
						b.Error(err)
					}
				}
				key.Close()
			}
		})
	})
	b.Run("key-per-field", func(b *testing.B) {
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				pub := &rsa.PublicKey{N: new(big.Int).Set(k.N), E: k.E}
				for _, f := range fields {
					if _, err := EncryptPKCS1v15(pub, f); err != nil {
						b.Error(err)
					}
				}
			}
		})
	})
}
