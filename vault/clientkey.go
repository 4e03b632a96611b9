package vault

import (
	"bytes"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/pem"
	"fmt"

	"github.com/cardvault/cardvault/internal/clienttext"
	"github.com/cardvault/cardvault/internal/libcrypto"
)

// ClientKey is a single-use RSA key a client sends to receive card data.
type ClientKey struct {
	Public *rsa.PublicKey
	// Fingerprint is the SHA-256 of the key's PKCS#1 DER encoding, so the
	// same key sent as SPKI or as PKCS#1 has one fingerprint.
	Fingerprint []byte
}

// clientKeyBits is the one RSA size Jiko's single-use keys may have.
const clientKeyBits = 4096

// ParseClientKeyPEM parses a Jiko single-use public key: an SPKI ("PUBLIC
// KEY") or PKCS#1 ("RSA PUBLIC KEY") PEM block with LF or CRLF line ends,
// RSA of exactly 4096 bits with e = 65537. field names the input in errors.
func ParseClientKeyPEM(field, text string) (*ClientKey, error) {
	data := bytes.ReplaceAll([]byte(text), []byte("\r\n"), []byte("\n"))
	block, rest := pem.Decode(bytes.TrimSpace(data))
	if block == nil {
		return nil, Invalid(field, "must be a PEM-encoded RSA public key")
	}
	if len(bytes.TrimSpace(rest)) != 0 {
		return nil, Invalid(field, "must hold exactly one PEM block")
	}
	var pub *rsa.PublicKey
	switch block.Type {
	case "PUBLIC KEY":
		k, err := x509.ParsePKIXPublicKey(block.Bytes)
		if err != nil {
			return nil, Invalid(field, "is not a valid SubjectPublicKeyInfo")
		}
		rk, ok := k.(*rsa.PublicKey)
		if !ok {
			return nil, Invalid(field, "must be an RSA key")
		}
		pub = rk
	case "RSA PUBLIC KEY":
		k, err := x509.ParsePKCS1PublicKey(block.Bytes)
		if err != nil {
			return nil, Invalid(field, "is not a valid PKCS#1 RSA public key")
		}
		pub = k
	default:
		return nil, Invalid(field, fmt.Sprintf("PEM type %q is not allowed; use PUBLIC KEY or RSA PUBLIC KEY", clienttext.Name(block.Type)))
	}
	return newClientKey(field, pub)
}

func newClientKey(field string, pub *rsa.PublicKey) (*ClientKey, error) {
	if bits := pub.N.BitLen(); bits != clientKeyBits {
		return nil, Invalid(field, fmt.Sprintf("RSA key must be %d bits, got %d", clientKeyBits, bits))
	}
	if pub.E != 65537 {
		return nil, Invalid(field, "RSA public exponent must be 65537")
	}
	if pub.N.Bit(0) == 0 {
		// No RSA modulus is even; crypto/rsa would refuse it only after
		// the card's record was opened.
		return nil, Invalid(field, "RSA modulus must be odd")
	}
	sum := sha256.Sum256(x509.MarshalPKCS1PublicKey(pub))
	return &ClientKey{Public: pub, Fingerprint: sum[:]}, nil
}

// EncryptPKCS1v15 is RSAES-PKCS1-v1_5 encryption (RFC 8017, 7.2.1) of
// each message (card data) to the client key, by OpenSSL's libcrypto:
// every client key is new, so no per-key precomputation is repaid across
// requests, but the key is loaded once for the request's messages.
// libcrypto's public operation is several times Go's (internal/libcrypto
// says what it does about timing). libcrypto pads in a buffer it clears;
// the one copy of each message is the caller's.
func (k *ClientKey) EncryptPKCS1v15(msgs ...[]byte) ([][]byte, error) {
	key, err := libcrypto.NewPublicKey(k.Public)
	if err != nil {
		return nil, err
	}
	defer key.Close()
	out := make([][]byte, len(msgs))
	for i, msg := range msgs {
		if out[i], err = key.EncryptPKCS1v15(msg); err != nil {
			return nil, err
		}
	}
	return out, nil
}
