package vault

import (
	"bytes"
	"crypto/rand"
	"crypto/rsa"
	"testing"
)

// The vault's PKCS#1 v1.5 encryption must be what crypto/rsa (and so
// openssl) decrypts, for every message length it sends and at the limit.
func TestEncryptPKCS1v15DecryptsWithCryptoRSA(t *testing.T) {
	priv, err := rsa.GenerateKey(rand.Reader, 4096)
	if err != nil {
		t.Fatal(err)
	}
	key, err := newClientKey("public_key", &priv.PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	for _, msg := range [][]byte{[]byte("4111111111111111"), []byte("737"), []byte("12/31"), bytes.Repeat([]byte{0}, 501), {}} {
		cts, err := key.EncryptPKCS1v15(msg)
		if err != nil {
			t.Fatalf("%d bytes: %v", len(msg), err)
		}
		ct := cts[0]
		if len(ct) != 512 {
			t.Fatalf("ciphertext of %d bytes", len(ct))
		}
		got, err := rsa.DecryptPKCS1v15(nil, priv, ct)
		if err != nil || !bytes.Equal(got, msg) {
			t.Fatalf("%d bytes: decrypted %x, %v", len(msg), got, err)
		}
	}
	if _, err := key.EncryptPKCS1v15(make([]byte, 502)); err == nil {
		t.Fatal("a message over k-11 bytes was encrypted")
	}
}

// Two encryptions of one message differ: the padding is random.
func TestEncryptPKCS1v15IsRandomized(t *testing.T) {
	priv, _ := rsa.GenerateKey(rand.Reader, 4096)
	key, _ := newClientKey("public_key", &priv.PublicKey)
	ct, _ := key.EncryptPKCS1v15([]byte("4111111111111111"), []byte("4111111111111111"))
	if bytes.Equal(ct[0], ct[1]) {
		t.Fatal("two encryptions are equal")
	}
}
