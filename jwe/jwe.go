// Package jwe encrypts a payload to a device's RSA public key as a compact
// JWE, in the key and content algorithm pairs the Solaris secure view
// allows. go-jose does the work; the one variant it cannot express, RSA-OAEP
// with SHA-256 and MGF1-SHA-1 (Android Keystore's default), is assembled
// from go-jose's content encryption and the standard library's OAEP.
package jwe

import (
	"crypto"
	"crypto/rand"
	"crypto/rsa"
	"encoding/base64"
	"errors"
	"fmt"
	"slices"
	"strings"

	jose "github.com/go-jose/go-jose/v4"
)

// KeyAlg is a key-encryption algorithm, by its Solaris request name.
type KeyAlg string

// The allowed key-encryption algorithms.
const (
	RSA1_5            KeyAlg = "RSA1_5"
	RSAOAEP256        KeyAlg = "RSA_OAEP_256"
	RSAOAEP256Android KeyAlg = "RSA_OAEP_256_ANDROID" // OAEP-SHA-256 with MGF1-SHA-1
)

// ContentEnc is a content-encryption algorithm, by its Solaris request
// name.
type ContentEnc string

// The allowed content-encryption algorithms.
const (
	A256GCM      ContentEnc = "A256GCM"
	A256CBCHS512 ContentEnc = "A256CBC_HS512"
)

// KeyAlgs and ContentEncs are the allow-lists, in a stable order.
var (
	KeyAlgs     = []KeyAlg{RSA1_5, RSAOAEP256, RSAOAEP256Android}
	ContentEncs = []ContentEnc{A256GCM, A256CBCHS512}
)

// ParseKeyAlg checks a key algorithm against the allow-list.
func ParseKeyAlg(s string) (KeyAlg, bool) {
	if !slices.Contains(KeyAlgs, KeyAlg(s)) {
		return "", false
	}
	return KeyAlg(s), true
}

// ParseContentEnc checks a content algorithm against the allow-list.
func ParseContentEnc(s string) (ContentEnc, bool) {
	if !slices.Contains(ContentEncs, ContentEnc(s)) {
		return "", false
	}
	return ContentEnc(s), true
}

// HeaderAlg is the standard name the JWE header carries: the Android
// variant is announced as RSA-OAEP-256, as Android clients expect.
func (a KeyAlg) HeaderAlg() jose.KeyAlgorithm {
	if a == RSA1_5 {
		return jose.RSA1_5
	}
	return jose.RSA_OAEP_256
}

func (e ContentEnc) jose() jose.ContentEncryption {
	if e == A256GCM {
		return jose.A256GCM
	}
	return jose.A256CBC_HS512
}

// cekSize is the content key length: A256CBC-HS512 takes a 256-bit MAC key
// and a 256-bit AES key.
func (e ContentEnc) cekSize() int {
	if e == A256GCM {
		return 32
	}
	return 64
}

// Recipient is the device key a JWE is for.
type Recipient struct {
	Key *rsa.PublicKey
	// KeyID is the JWK's kid; HasKeyID says the JWK had one, which may be
	// the empty string.
	KeyID    string
	HasKeyID bool
}

// Encrypt returns the compact JWE of plaintext to r, with the pair's
// standard names and r's kid in the protected header.
func Encrypt(r Recipient, alg KeyAlg, enc ContentEnc, plaintext []byte) (string, error) {
	if _, ok := ParseKeyAlg(string(alg)); !ok {
		return "", fmt.Errorf("jwe: key algorithm %q not allowed", alg)
	}
	if _, ok := ParseContentEnc(string(enc)); !ok {
		return "", fmt.Errorf("jwe: content algorithm %q not allowed", enc)
	}
	if r.Key == nil {
		return "", errors.New("jwe: no recipient key")
	}
	opts := new(jose.EncrypterOptions)
	if r.HasKeyID {
		opts = opts.WithHeader(jose.HeaderKey("kid"), r.KeyID)
	}
	if alg == RSAOAEP256Android {
		return encryptAndroid(r.Key, enc, opts, plaintext)
	}
	e, err := jose.NewEncrypter(enc.jose(), jose.Recipient{Algorithm: alg.HeaderAlg(), Key: r.Key}, opts)
	if err != nil {
		return "", fmt.Errorf("jwe: %w", err)
	}
	return serialize(e, plaintext)
}

// encryptAndroid wraps a fresh content key with OAEP (SHA-256, MGF1-SHA-1)
// and lets go-jose encrypt the content under it. go-jose encrypts with a
// given key only as "dir", so the header's alg is set to RSA-OAEP-256
// before the header becomes the AAD, and the wrapped key fills the compact
// form's empty encrypted-key part, which is outside the AAD (RFC 7516 §7.1).
func encryptAndroid(pub *rsa.PublicKey, enc ContentEnc, opts *jose.EncrypterOptions, plaintext []byte) (string, error) {
	cek := make([]byte, enc.cekSize())
	defer clear(cek)
	if _, err := rand.Read(cek); err != nil {
		return "", fmt.Errorf("jwe: %w", err)
	}
	wrapped, err := rsa.EncryptOAEPWithOptions(rand.Reader, pub, cek, &rsa.OAEPOptions{Hash: crypto.SHA256, MGFHash: crypto.SHA1})
	if err != nil {
		return "", fmt.Errorf("jwe: wrap content key: %w", err)
	}
	opts = opts.WithHeader(jose.HeaderKey("alg"), string(jose.RSA_OAEP_256))
	e, err := jose.NewEncrypter(enc.jose(), jose.Recipient{Algorithm: jose.DIRECT, Key: cek}, opts)
	if err != nil {
		return "", fmt.Errorf("jwe: %w", err)
	}
	compact, err := serialize(e, plaintext)
	if err != nil {
		return "", err
	}
	parts := strings.Split(compact, ".")
	if len(parts) != 5 || parts[1] != "" || !strings.Contains(decodedHeader(parts[0]), `"alg":"RSA-OAEP-256"`) {
		// go-jose changed how it builds direct JWEs; refuse rather than
		// send something a device cannot read.
		return "", errors.New("jwe: unexpected direct-encryption output")
	}
	parts[1] = base64.RawURLEncoding.EncodeToString(wrapped)
	return strings.Join(parts, "."), nil
}

func serialize(e jose.Encrypter, plaintext []byte) (string, error) {
	obj, err := e.Encrypt(plaintext)
	if err != nil {
		return "", fmt.Errorf("jwe: %w", err)
	}
	compact, err := obj.CompactSerialize()
	if err != nil {
		return "", fmt.Errorf("jwe: %w", err)
	}
	return compact, nil
}

func decodedHeader(part string) string {
	b, _ := base64.RawURLEncoding.DecodeString(part)
	return string(b)
}
