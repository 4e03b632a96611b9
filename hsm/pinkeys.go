package hsm

import (
	"context"
	"crypto/rsa"
	"errors"
	"time"

	"github.com/cardvault/cardvault/vault"
	"github.com/miekg/pkcs11"
)

// The PIN paths' view of the token, in the vault's words: the set_pin key
// pair clients encrypt PINs to, and the PEK that PIN blocks are
// enciphered under. Version 0 means the active version, which is returned.

// SetPINPublicKey returns a set_pin version's public key.
func (m *Module) SetPINPublicKey(ctx context.Context, version uint32) (*rsa.PublicKey, uint32, error) {
	v, err := m.versionOrActive(ctx, SetPIN, version)
	if err != nil {
		return nil, 0, err
	}
	pub, err := m.PublicKey(ctx, v)
	return pub, v, err
}

// SetPINVersions returns the active set_pin version, the one before it (0
// if none) and the last day its public half was published for (zero if no
// end date is set).
func (m *Module) SetPINVersions(ctx context.Context) (uint32, uint32, time.Time, error) {
	return m.Versions(ctx, SetPIN)
}

// SetPINDecryptPKCS1 returns the PKCS#1 v1.5 encoded message of a set_pin
// ciphertext, k bytes, for the caller to decode in constant time. It is
// one token call per ciphertext whatever the token offers:
//   - with raw RSA (CKM_RSA_X_509), the raw private operation, which
//     succeeds for every ciphertext below the modulus and checks no
//     padding, so neither its result code nor its timing says anything
//     about the padding;
//   - without it (FIPS-mode modules), CKM_RSA_PKCS unpads in the token and
//     the message is encoded again here (0x00 0x02, a nonzero filler,
//     0x00, the message), so the caller decodes both alike.
//
// A ciphertext the token refuses is ErrCrypto, which the caller turns
// into an invalid encoded message. The caller clears the result.
func (m *Module) SetPINDecryptPKCS1(ctx context.Context, version uint32, ciphertext []byte) ([]byte, error) {
	var out []byte
	err := m.do(ctx, "rsa pin decrypt", func(c *conn) error {
		label := Label(SetPIN, version)
		if c.rawRSA {
			var err error
			out, err = c.decryptRSA(label, pkcs11.NewMechanism(pkcs11.CKM_RSA_X_509, nil), ciphertext)
			return err
		}
		msg, err := c.decryptRSA(label, pkcs11.NewMechanism(pkcs11.CKM_RSA_PKCS, nil), ciphertext)
		if err != nil {
			return err
		}
		defer clear(msg)
		k := len(ciphertext) // decryptRSA held it to the modulus length
		if len(msg) > k-11 {
			return ErrCrypto
		}
		out = make([]byte, k)
		out[1] = 0x02
		filler := out[2 : k-len(msg)-1]
		for i := range filler {
			filler[i] = 0xff
		}
		copy(out[k-len(msg):], msg)
		return nil
	})
	return out, opaque(err)
}

// SetPINDecryptOAEP is RSA-OAEP with SHA-256 under a set_pin version, as a
// JWE's RSA-OAEP-256 key wrap needs.
func (m *Module) SetPINDecryptOAEP(ctx context.Context, version uint32, ciphertext []byte) ([]byte, error) {
	return m.DecryptRSA(ctx, version, OAEPSHA256, ciphertext)
}

// PEKEncryptBlock enciphers one AES block under a PEK version.
func (m *Module) PEKEncryptBlock(ctx context.Context, version uint32, block []byte) ([]byte, uint32, error) {
	v, err := m.versionOrActive(ctx, PEK, version)
	if err != nil {
		return nil, 0, err
	}
	out, err := m.EncryptBlock(ctx, v, block)
	return out, v, err
}

func (m *Module) versionOrActive(ctx context.Context, p Purpose, version uint32) (uint32, error) {
	if version != 0 {
		return version, nil
	}
	return m.ActiveVersion(ctx, p)
}

// PEKDecryptBlock deciphers one AES block under a PEK version: PIN
// translation between PEK versions needs it.
func (m *Module) PEKDecryptBlock(ctx context.Context, version uint32, block []byte) ([]byte, error) {
	return m.DecryptBlock(ctx, version, block)
}

// PINDigits is the PIN view's decryption: the digits of a format 4 PIN
// block for pan, deciphered with the two AES decryptions in the token
// (vault.DecipherPINBlock), and nothing of a block that is not one.
func (m *Module) PINDigits(ctx context.Context, version uint32, block, pan []byte) ([]byte, error) {
	return vault.DecipherPINBlock(block, pan, func(b []byte) ([]byte, error) { return m.DecryptBlock(ctx, version, b) })
}

// ZonePINDecryptBlock deciphers one block under a zone PIN key version:
// the proof a ceremony makes of a key it imported.
func (m *Module) ZonePINDecryptBlock(ctx context.Context, version uint32, block []byte) ([]byte, error) {
	return m.ecb(ctx, ZonePIN, version, block, false)
}

// ZonePINDigits is PIN verification's decryption of a PIN block a zone
// sent: the digits of a format 4 block under a zone PIN key version (0:
// the active one) for pan, and nothing of a block that is not one. It
// returns the version used.
func (m *Module) ZonePINDigits(ctx context.Context, version uint32, block, pan []byte) ([]byte, uint32, error) {
	version, err := m.versionOrActive(ctx, ZonePIN, version)
	if errors.Is(err, ErrKeyNotFound) {
		return nil, 0, &vault.Error{Kind: vault.KindUnavailable, Field: "zone_key_version", Err: err,
			Msg: "the token holds no zone PIN key; security staff import one (ceremony import-tr31 or import-components --purpose zpk)"}
	}
	if err != nil {
		return nil, 0, err
	}
	pin, err := vault.DecipherPINBlock(block, pan, func(b []byte) ([]byte, error) { return m.ecb(ctx, ZonePIN, version, b, false) })
	if errors.Is(err, ErrKeyNotFound) {
		return nil, version, vault.Invalid("zone_key_version", "the token holds no usable zone PIN key of that version")
	}
	return pin, version, err
}
