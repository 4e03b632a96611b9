// Package jwe encrypts a payload to a device's RSA public key as a compact
// JWE, in the key and content algorithm pairs the Solaris secure view
// allows. go-jose encrypts the content; the content key is wrapped by
// OpenSSL's libcrypto (internal/libcrypto), which also expresses the one
// variant go-jose has no name for, RSA-OAEP with SHA-256 and MGF1-SHA-1
// (Android Keystore's default).
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

	"github.com/cardvault/cardvault/internal/libcrypto"
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
	return encryptWrapped(r.Key, alg, enc, opts, plaintext)
}

// wrapKey encrypts the content key to the device key by libcrypto, whose
// RSA public operation is several times Go's for a key seen once (and every
// device JWK is: a secure view's key is burnt after one use).
func wrapKey(pub *rsa.PublicKey, alg KeyAlg, cek []byte) ([]byte, error) {
	switch alg {
	case RSA1_5:
		return libcrypto.EncryptPKCS1v15(pub, cek)
	case RSAOAEP256:
		return libcrypto.EncryptOAEP(pub, crypto.SHA256, crypto.SHA256, cek)
	case RSAOAEP256Android:
		return libcrypto.EncryptOAEP(pub, crypto.SHA256, crypto.SHA1, cek)
	}
	return nil, fmt.Errorf("jwe: key algorithm %q not allowed", alg)
}

// encryptWrapped wraps a fresh content key itself and lets go-jose encrypt
// the content under it. go-jose encrypts with a given key only as "dir", so
// the header's alg is set to the standard name before the header becomes
// the AAD, and the wrapped key fills the compact form's empty encrypted-key
// part, which is outside the AAD (RFC 7516 §7.1). The same assembly also
// expresses the one variant go-jose has no name for, RSA-OAEP with SHA-256
// and MGF1-SHA-1 (Android Keystore's default).
func encryptWrapped(pub *rsa.PublicKey, alg KeyAlg, enc ContentEnc, opts *jose.EncrypterOptions, plaintext []byte) (string, error) {
	cek := make([]byte, enc.cekSize())
	defer clear(cek)
	if _, err := rand.Read(cek); err != nil {
		return "", fmt.Errorf("jwe: %w", err)
	}
	wrapped, err := wrapKey(pub, alg, cek)
	if err != nil {
		return "", fmt.Errorf("jwe: wrap content key: %w", err)
	}
	header := string(alg.HeaderAlg())
	opts = opts.WithHeader(jose.HeaderKey("alg"), header)
	e, err := jose.NewEncrypter(enc.jose(), jose.Recipient{Algorithm: jose.DIRECT, Key: cek}, opts)
	if err != nil {
		return "", fmt.Errorf("jwe: %w", err)
	}
	compact, err := serialize(e, plaintext)
	if err != nil {
		return "", err
	}
	parts := strings.Split(compact, ".")
	if len(parts) != 5 || parts[1] != "" || !strings.Contains(decodedHeader(parts[0]), `"alg":"`+header+`"`) {
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
