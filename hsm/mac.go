package hsm

import (
	"context"
	"fmt"

	"github.com/cardvault/cardvault/vault"
	"github.com/miekg/pkcs11"
)

// MAC computes HMAC-SHA256 of data inside the token with the active key of
// an HMAC purpose (pan-hmac or audit), and returns the version it used.
func (m *Module) MAC(ctx context.Context, p Purpose, data []byte) (sum []byte, version uint32, err error) {
	if p.Kind() != KindHMAC {
		return nil, 0, fmt.Errorf("hsm: %s is not an HMAC purpose", p)
	}
	err = m.do(ctx, "hmac", func(c *conn) error {
		var err error
		if version, err = c.activeVersion(p); err != nil {
			return err
		}
		sum, err = c.sign(Label(p, version), pkcs11.CKM_SHA256_HMAC, data)
		return err
	})
	return sum, version, err
}

// FingerprintPAN is the PAN fingerprint of vault.Keys: HMAC-SHA256 under
// the active pan-hmac key.
func (m *Module) FingerprintPAN(ctx context.Context, pan []byte) ([]byte, uint32, error) {
	return m.MAC(ctx, PANHMAC, pan)
}

// PANFingerprints is the PAN's fingerprint under every usable pan-hmac
// version of one view of the token, the active one first. After a
// rotation, until the old version is retired, a PAN costs one HMAC more.
func (m *Module) PANFingerprints(ctx context.Context, pan []byte) ([]vault.PANFingerprint, error) {
	var out []vault.PANFingerprint
	err := m.do(ctx, "hmac", func(c *conn) error {
		v, err := c.view()
		if err != nil {
			return err
		}
		versions := v.versionsOf(PANHMAC)
		if len(versions) == 0 {
			return fmt.Errorf("%w: no %s key", ErrKeyNotFound, PANHMAC)
		}
		out = out[:0]
		for _, version := range versions {
			sum, err := c.sign(Label(PANHMAC, version), pkcs11.CKM_SHA256_HMAC, pan)
			if err != nil {
				return err
			}
			out = append(out, vault.PANFingerprint{Version: version, Sum: sum})
		}
		return nil
	})
	return out, err
}

// MACWithVersion computes HMAC-SHA256 with a named version, for verifying
// values made under an older key.
func (m *Module) MACWithVersion(ctx context.Context, p Purpose, version uint32, data []byte) ([]byte, error) {
	if p.Kind() != KindHMAC {
		return nil, fmt.Errorf("hsm: %s is not an HMAC purpose", p)
	}
	var sum []byte
	err := m.do(ctx, "hmac", func(c *conn) error {
		var err error
		sum, err = c.sign(Label(p, version), pkcs11.CKM_SHA256_HMAC, data)
		return err
	})
	return sum, err
}

func (c *conn) sign(label string, mech uint, data []byte) ([]byte, error) {
	var out []byte
	err := c.withSession(func(sh pkcs11.SessionHandle) error {
		key, err := c.handle(sh, label, classSecret)
		if err != nil {
			return err
		}
		if err := c.p.SignInit(sh, []*pkcs11.Mechanism{pkcs11.NewMechanism(mech, nil)}, key); err != nil {
			return describe("C_SignInit", err)
		}
		out, err = c.p.Sign(sh, data)
		if err != nil {
			return describe("C_Sign", err)
		}
		return nil
	})
	return out, err
}

// CheckValue is a key check value and the method that made it: KCVs made
// by different methods never compare equal.
type CheckValue struct {
	Value  string // the first 3 bytes, upper-case hex
	Method string // "AES-CMAC", "AES-ECB" (the legacy KCV) or "HMAC-SHA256"
}

func (v CheckValue) String() string { return v.Value + " (" + v.Method + ")" }

// KCV returns the key check value of a secret key, computed in the token
// over one zero block: for AES keys AES-CMAC (ANSI X9.24-1), or on a token
// without CMAC the legacy AES-ECB encryption; for HMAC keys HMAC-SHA256.
func (m *Module) KCV(ctx context.Context, p Purpose, version uint32) (CheckValue, error) {
	var cv CheckValue
	err := m.do(ctx, "kcv", func(c *conn) error {
		method, ok := c.kcvMethod(p.Kind())
		if !ok {
			return fmt.Errorf("hsm: %s keys have no KCV; use the public key fingerprint", p)
		}
		return c.withSession(func(sh pkcs11.SessionHandle) error {
			key, err := c.handle(sh, Label(p, version), classSecret)
			if err != nil {
				return err
			}
			cv, err = c.kcv(sh, key, method)
			return err
		})
	})
	return cv, err
}

// kcvMethod is how this token checks a secret kind's keys.
type kcvMethod struct {
	keyType, mech uint
	name          string
}

func (c *conn) kcvMethod(k Kind) (kcvMethod, bool) {
	switch {
	case k == KindAES && c.kcvECB:
		return kcvMethod{pkcs11.CKK_AES, pkcs11.CKM_AES_ECB, "AES-ECB"}, true
	case k == KindAES:
		return kcvMethod{pkcs11.CKK_AES, pkcs11.CKM_AES_CMAC, "AES-CMAC"}, true
	case k == KindHMAC:
		return kcvMethod{pkcs11.CKK_GENERIC_SECRET, pkcs11.CKM_SHA256_HMAC, "HMAC-SHA256"}, true
	}
	return kcvMethod{}, false
}

// kcv is a key object's KCV by a method: over one zero block, the first
// 3 bytes.
func (c *conn) kcv(sh pkcs11.SessionHandle, key pkcs11.ObjectHandle, method kcvMethod) (CheckValue, error) {
	sum, err := c.checkBlock(sh, key, method.mech, make([]byte, 16))
	if err != nil {
		return CheckValue{}, err
	}
	return CheckValue{fmt.Sprintf("%X", sum[:3]), method.name}, nil
}

// checkBlock runs a KCV mechanism over one block with a key object: the
// MAC of it, or for AES-ECB its encryption.
func (c *conn) checkBlock(sh pkcs11.SessionHandle, key pkcs11.ObjectHandle, mech uint, block []byte) ([]byte, error) {
	m := []*pkcs11.Mechanism{pkcs11.NewMechanism(mech, nil)}
	var out []byte
	var err error
	if mech == pkcs11.CKM_AES_ECB {
		if err := c.p.EncryptInit(sh, m, key); err != nil {
			return nil, describe("C_EncryptInit(AES_ECB)", err)
		}
		out, err = c.p.Encrypt(sh, block)
		return out, describeIf("C_Encrypt(AES_ECB)", err)
	}
	if err := c.p.SignInit(sh, m, key); err != nil {
		return nil, describe("C_SignInit", err)
	}
	out, err = c.p.Sign(sh, block)
	if err == nil && len(out) < 3 {
		return nil, fmt.Errorf("hsm: a %d-byte check", len(out))
	}
	return out, describeIf("C_Sign", err)
}

// AuditMAC MACs an audit checkpoint under the active audit key.
func (m *Module) AuditMAC(ctx context.Context, msg []byte) ([]byte, uint32, error) {
	return m.MAC(ctx, Audit, msg)
}

// AuditMACWithVersion re-MACs a checkpoint under the version that made it,
// for verification.
func (m *Module) AuditMACWithVersion(ctx context.Context, version uint32, msg []byte) ([]byte, error) {
	return m.MACWithVersion(ctx, Audit, version, msg)
}

// requestDigestDomain separates request digests from PAN fingerprints
// under the same key: a PAN is digits only, so no fingerprint input can
// begin with it.
var requestDigestDomain = []byte("cardvault idempotency v1\x00")

// RequestDigest is vault.Keys' keyed digest of an idempotent request:
// HMAC-SHA256 under a pan-hmac version (0 for the active one), which it
// returns. A copy of the database then holds no hash that a guess of the
// request's card data could be checked against.
func (m *Module) RequestDigest(ctx context.Context, version uint32, request []byte) ([]byte, uint32, error) {
	msg := make([]byte, 0, len(requestDigestDomain)+len(request))
	msg = append(append(msg, requestDigestDomain...), request...)
	defer clear(msg)
	var sum []byte
	err := m.do(ctx, "hmac", func(c *conn) error {
		var err error
		if version == 0 {
			if version, err = c.activeVersion(PANHMAC); err != nil {
				return err
			}
		}
		sum, err = c.sign(Label(PANHMAC, version), pkcs11.CKM_SHA256_HMAC, msg)
		return err
	})
	return sum, version, err
}
