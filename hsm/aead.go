package hsm

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"slices"

	"github.com/miekg/pkcs11"
)

// Sealed record layout. The header is authenticated with the caller's AAD,
// so a record cannot be replayed under another key version or format.
//
//	[0]      format, sealFormatV1
//	[1:5]    card KEK version, big-endian
//	[5:17]   GCM IV (12 bytes)
//	[17:]    ciphertext || 16-byte tag
const (
	sealFormatV1  = 0x01
	sealHeaderLen = 5
	gcmIVLen      = 12
	gcmTagLen     = 16
	sealOverhead  = sealHeaderLen + gcmIVLen + gcmTagLen
)

// SealedKeyVersion returns the card KEK version a sealed record names, for
// rewrap and retire bookkeeping. It does not authenticate the record.
func SealedKeyVersion(sealed []byte) (uint32, error) {
	if len(sealed) < sealOverhead || sealed[0] != sealFormatV1 {
		return 0, ErrCrypto
	}
	return binary.BigEndian.Uint32(sealed[1:5]), nil
}

// Seal encrypts plaintext with AES-256-GCM under the active card KEK inside
// the token, binding aad and the key version, and returns that version. IVs are random: 96 bits per
// record is safe for far more records than one KEK version will ever seal
// before rotation.
func (m *Module) Seal(ctx context.Context, aad, plaintext []byte) (sealed []byte, version uint32, err error) {
	err = m.do(ctx, "seal", func(c *conn) error {
		var err error
		if version, err = c.activeVersion(CardKEK); err != nil {
			return err
		}
		sealed, err = m.sealWith(c, version, aad, plaintext)
		return err
	})
	return sealed, version, err
}

// SealWithVersion seals under a named card KEK version; rewrap uses it.
func (m *Module) SealWithVersion(ctx context.Context, version uint32, aad, plaintext []byte) ([]byte, error) {
	var out []byte
	err := m.do(ctx, "seal", func(c *conn) error {
		var err error
		out, err = m.sealWith(c, version, aad, plaintext)
		return err
	})
	return out, err
}

func (m *Module) sealWith(c *conn, version uint32, aad, plaintext []byte) ([]byte, error) {
	header := make([]byte, sealHeaderLen, sealOverhead+len(plaintext))
	header[0] = sealFormatV1
	binary.BigEndian.PutUint32(header[1:5], version)
	// A token that refuses the caller's IV (FIPS mode) gets a zeroed
	// buffer to fill; every other token gets a random one.
	iv := make([]byte, gcmIVLen)
	if c.gcmIV != "refused" {
		if _, err := io.ReadFull(m.rand, iv); err != nil {
			return nil, fmt.Errorf("hsm: IV: %w", err)
		}
	}
	fullAAD := append(header[:sealHeaderLen:sealHeaderLen], aad...)
	var ct []byte
	err := c.withSession(func(sh pkcs11.SessionHandle) error {
		key, err := c.handle(sh, Label(CardKEK, version), classSecret)
		if err != nil {
			return err
		}
		// The token gets a copy: one that draws its own IV (a cloud HSM)
		// writes it back into the parameters, where it is read below.
		params := pkcs11.NewGCMParams(bytes.Clone(iv), fullAAD, gcmTagLen*8)
		defer params.Free()
		if err := c.p.EncryptInit(sh, []*pkcs11.Mechanism{pkcs11.NewMechanism(pkcs11.CKM_AES_GCM, params)}, key); err != nil {
			return describe("C_EncryptInit(AES_GCM)", err)
		}
		ct, err = c.p.Encrypt(sh, plaintext)
		if err != nil {
			return describe("C_Encrypt(AES_GCM)", err)
		}
		// The record keeps the IV the token actually used, so it opens
		// again whatever the token did with the one offered. An IV left
		// zero means a token that neither took ours nor drew its own:
		// sealing on would repeat the IV, so the seal fails closed.
		used := params.IV()
		if zero := !slices.ContainsFunc(used, func(b byte) bool { return b != 0 }); zero || len(used) != gcmIVLen {
			clear(ct)
			m.log.Error("the token reported an unusable GCM IV; refusing the seal", "iv_bytes", len(used), "zero", zero, "gcm_iv", c.gcmIV)
			return ErrUnavailable
		}
		copy(iv, used)
		return nil
	})
	if err != nil {
		return nil, err
	}
	out := append(header, iv...)
	return append(out, ct...), nil
}

// SealRoundTrip seals a fixed record under the active card KEK and opens
// it again: readiness, which a token that reaches but cannot seal (a
// refused IV, a key it lost) must fail, since every import and issue
// would.
func (m *Module) SealRoundTrip(ctx context.Context) error {
	aad, probe := []byte("cardvault-readiness"), []byte("a record of no value")
	sealed, _, err := m.Seal(ctx, aad, probe)
	if err != nil {
		return err
	}
	opened, err := m.Open(ctx, aad, sealed)
	if err != nil {
		return err
	}
	if !bytes.Equal(opened, probe) {
		return errors.New("hsm: a sealed record opened to other bytes")
	}
	return nil
}

// Open authenticates and decrypts a sealed record inside the token. Every
// failure rooted in the record or the AAD (a flipped byte, another card's
// AAD, an unknown or wrong key version) is ErrCrypto; token faults are
// ErrUnavailable. The caller owns the plaintext and clears it.
func (m *Module) Open(ctx context.Context, aad, sealed []byte) ([]byte, error) {
	version, err := SealedKeyVersion(sealed)
	if err != nil {
		return nil, err
	}
	var pt []byte
	err = m.do(ctx, "open", func(c *conn) error {
		var err error
		pt, err = c.open(version, aad, sealed)
		if errors.Is(err, ErrKeyNotFound) && c.lookAgain(Label(CardKEK, version)) {
			// Sealed under a version newer than this view (a rewrap, or
			// another replica after a rotation).
			pt, err = c.open(version, aad, sealed)
		}
		return err
	})
	return pt, opaque(err)
}

// open is Open on one connection.
func (c *conn) open(version uint32, aad, sealed []byte) ([]byte, error) {
	fullAAD := append(sealed[:sealHeaderLen:sealHeaderLen], aad...)
	iv := sealed[sealHeaderLen : sealHeaderLen+gcmIVLen]
	var pt []byte
	err := c.withSession(func(sh pkcs11.SessionHandle) error {
		key, err := c.handle(sh, Label(CardKEK, version), classSecret)
		if err != nil {
			return err
		}
		params := pkcs11.NewGCMParams(iv, fullAAD, gcmTagLen*8)
		defer params.Free()
		if err := c.p.DecryptInit(sh, []*pkcs11.Mechanism{pkcs11.NewMechanism(pkcs11.CKM_AES_GCM, params)}, key); err != nil {
			return describe("C_DecryptInit(AES_GCM)", err)
		}
		pt, err = c.p.Decrypt(sh, sealed[sealHeaderLen+gcmIVLen:])
		return decryptFault("C_Decrypt(AES_GCM)", err)
	})
	return pt, err
}

// opaque turns every input fault into ErrCrypto, keeping ErrUnavailable,
// a key the token or the pinned catalog cannot give (ErrKeyNotFound: a
// 503 that names the label in the log, never a "record does not open"),
// a missing mechanism and context errors as they are.
func opaque(err error) error {
	switch {
	case err == nil:
		return nil
	case errors.Is(err, ErrUnavailable), errors.Is(err, ErrKeyNotFound), errors.Is(err, ErrNoOAEPSHA256), errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded):
		return err
	default:
		return ErrCrypto
	}
}
