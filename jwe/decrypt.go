package jwe

import (
	"crypto/rand"
	"errors"
	"fmt"

	jose "github.com/go-jose/go-jose/v4"
)

// ErrUnwrap is what an unwrap function returns when the wrapped key does
// not decrypt; DecryptPIN then carries on with a random key.
var ErrUnwrap = errors.New("jwe: content key does not unwrap")

// ErrDecrypt is DecryptPIN's one error for a JWE that does not open,
// whatever the reason.
var ErrDecrypt = errors.New("jwe: does not decrypt")

// DecryptPIN opens a Solaris PIN JWE: compact, RSA-OAEP-256 and
// A256CBC-HS512 only, with the given kid. unwrap decrypts the content key
// inside the HSM; it is called exactly once whatever the JWE holds (on a
// zero stand-in of keySize bytes when the JWE is malformed), and when it
// fails the content is decrypted under a random key and fails on its tag,
// so a bad key wrap costs what a bad tag does (RFC 7516 §11.5). Any other
// error of unwrap (the HSM being away) is returned as is.
func DecryptPIN(compact, kid string, keySize int, unwrap func(wrapped []byte) ([]byte, error)) ([]byte, error) {
	obj, err := jose.ParseEncryptedCompact(compact, []jose.KeyAlgorithm{jose.RSA_OAEP_256}, []jose.ContentEncryption{jose.A256CBC_HS512})
	if err != nil || obj.Header.KeyID != kid {
		if _, err := unwrap(make([]byte, keySize)); err != nil && !errors.Is(err, ErrUnwrap) {
			return nil, err
		}
		return nil, ErrDecrypt
	}
	d := &hsmUnwrap{unwrap: unwrap, keySize: keySize}
	plain, err := obj.Decrypt(d)
	if d.err != nil {
		return nil, d.err
	}
	if err != nil {
		return nil, ErrDecrypt
	}
	return plain, nil
}

// hsmUnwrap is go-jose's opaque key decrypter over the HSM.
type hsmUnwrap struct {
	unwrap  func([]byte) ([]byte, error)
	keySize int
	err     error // a failure that is not the JWE's fault
}

func (h *hsmUnwrap) DecryptKey(wrapped []byte, _ jose.Header) ([]byte, error) {
	if len(wrapped) != h.keySize {
		wrapped = make([]byte, h.keySize)
	}
	cek, err := h.unwrap(wrapped)
	if err == nil && len(cek) == 64 {
		return cek, nil
	}
	if err != nil && !errors.Is(err, ErrUnwrap) {
		h.err = err
		return nil, err
	}
	clear(cek)
	random := make([]byte, 64)
	if _, err := rand.Read(random); err != nil {
		h.err = fmt.Errorf("jwe: %w", err)
		return nil, h.err
	}
	return random, nil
}
