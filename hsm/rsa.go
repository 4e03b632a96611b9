package hsm

import (
	"context"
	"crypto"
	"crypto/rsa"
	"crypto/sha1"
	"crypto/sha256"
	"fmt"
	"hash"
	"math/big"

	"github.com/miekg/pkcs11"
)

// RSAPadding is the allow-list of RSA decryption schemes.
type RSAPadding int

// RSA decryption schemes.
const (
	PKCS1v15           RSAPadding = iota + 1 // RSAES-PKCS1-v1_5
	OAEPSHA1                                 // OAEP, SHA-1, MGF1-SHA-1
	OAEPSHA256                               // OAEP, SHA-256, MGF1-SHA-256
	OAEPSHA256MGF1SHA1                       // OAEP, SHA-256, MGF1-SHA-1 (Android Keystore's default)
)

func (p RSAPadding) String() string {
	switch p {
	case PKCS1v15:
		return "RSA-PKCS1-v1_5"
	case OAEPSHA1:
		return "RSA-OAEP-SHA1"
	case OAEPSHA256:
		return "RSA-OAEP-SHA256"
	case OAEPSHA256MGF1SHA1:
		return "RSA-OAEP-SHA256-MGF1SHA1"
	}
	return fmt.Sprintf("RSAPadding(%d)", int(p))
}

// oaepParams returns the OAEP hash and MGF1 hash of a padding.
func (p RSAPadding) oaepParams() (h, mgf crypto.Hash, ok bool) {
	switch p {
	case OAEPSHA1:
		return crypto.SHA1, crypto.SHA1, true
	case OAEPSHA256:
		return crypto.SHA256, crypto.SHA256, true
	case OAEPSHA256MGF1SHA1:
		return crypto.SHA256, crypto.SHA1, true
	}
	return 0, 0, false
}

func newHash(h crypto.Hash) hash.Hash {
	if h == crypto.SHA1 {
		return sha1.New()
	}
	return sha256.New()
}

func p11Hash(h crypto.Hash) (mech, mgf uint) {
	if h == crypto.SHA1 {
		return pkcs11.CKM_SHA_1, pkcs11.CKG_MGF1_SHA1
	}
	return pkcs11.CKM_SHA256, pkcs11.CKG_MGF1_SHA256
}

// Where RSA-OAEP with SHA-256 runs, as Module.oaepSHA256 holds it and a
// profile names it (oaepNames).
const (
	oaepUntried int32 = iota
	oaepInToken
	oaepRawFallback
	oaepNone
)

var oaepNames = []string{"untried", "token", "raw", "none"}

// PublicKey returns the public half of a set_pin version.
func (m *Module) PublicKey(ctx context.Context, version uint32) (*rsa.PublicKey, error) {
	var pub *rsa.PublicKey
	err := m.do(ctx, "public key", func(c *conn) error {
		return c.withSession(func(sh pkcs11.SessionHandle) error {
			var err error
			pub, err = c.publicKey(sh, Label(SetPIN, version))
			return err
		})
	})
	return pub, err
}

// DecryptRSA decrypts ciphertext with a set_pin private key inside the
// token. Every failure rooted in the ciphertext (wrong length, bad padding)
// is ErrCrypto.
//
// OAEP with SHA-256 runs inside the token where the token supports it. A
// token that refuses the parameters (SoftHSM2 2.6.1 answers
// CKR_ARGUMENTS_BAD, SoftHSMv2#474) gets the RSA_X_509 path instead: the raw
// private-key operation runs inside the token and the constant-time EME-OAEP
// decoding runs here. The key never leaves the token either way.
func (m *Module) DecryptRSA(ctx context.Context, version uint32, pad RSAPadding, ciphertext []byte) ([]byte, error) {
	label := Label(SetPIN, version)
	var out []byte
	err := m.do(ctx, "rsa decrypt", func(c *conn) error {
		var err error
		switch pad {
		case PKCS1v15:
			out, err = c.decryptRSA(label, pkcs11.NewMechanism(pkcs11.CKM_RSA_PKCS, nil), ciphertext)
		case OAEPSHA1, OAEPSHA256, OAEPSHA256MGF1SHA1:
			out, err = m.decryptOAEP(c, label, pad, ciphertext)
		default:
			err = fmt.Errorf("hsm: padding %v not allowed", pad)
		}
		return err
	})
	return out, opaque(err)
}

func (m *Module) decryptOAEP(c *conn, label string, pad RSAPadding, ciphertext []byte) ([]byte, error) {
	h, mgf, _ := pad.oaepParams()
	state := m.oaepSHA256.Load()
	if h == crypto.SHA1 || state == oaepUntried || state == oaepInToken {
		hashMech, _ := p11Hash(h)
		_, mgfMech := p11Hash(mgf)
		params := pkcs11.NewOAEPParams(hashMech, mgfMech, pkcs11.CKZ_DATA_SPECIFIED, nil)
		out, err := c.decryptRSA(label, pkcs11.NewMechanism(pkcs11.CKM_RSA_PKCS_OAEP, params), ciphertext)
		if h == crypto.SHA1 || state == oaepInToken || !refusesParams(err) {
			if err == nil && h != crypto.SHA1 {
				m.oaepSHA256.CompareAndSwap(oaepUntried, oaepInToken)
			}
			return out, err
		}
		state = oaepRawFallback
		if !c.rawRSA {
			state = oaepNone
		}
		if m.oaepSHA256.CompareAndSwap(oaepUntried, state) {
			m.log.Info("the token refuses RSA-OAEP with SHA-256", "path", oaepNames[state])
		}
	}
	if state == oaepNone {
		return nil, ErrNoOAEPSHA256
	}
	em, err := c.decryptRSA(label, pkcs11.NewMechanism(pkcs11.CKM_RSA_X_509, nil), ciphertext)
	if err != nil {
		return nil, err
	}
	defer clear(em)
	msg, ok := decodeOAEP(newHash(h), newHash(mgf), em, nil)
	if !ok {
		return nil, ErrCrypto
	}
	return msg, nil
}

// refusesParams reports a token that does not accept the mechanism
// parameters, as opposed to one that rejected the ciphertext.
func refusesParams(err error) bool {
	code, ok := returnCode(err)
	return ok && (code == pkcs11.CKR_ARGUMENTS_BAD || code == pkcs11.CKR_MECHANISM_PARAM_INVALID || code == pkcs11.CKR_MECHANISM_INVALID)
}

func (c *conn) decryptRSA(label string, mech *pkcs11.Mechanism, ciphertext []byte) ([]byte, error) {
	var out []byte
	err := c.withSession(func(sh pkcs11.SessionHandle) error {
		priv, err := c.handle(sh, label, classPrivate)
		if err != nil {
			return err
		}
		k, err := c.modulusLen(sh, label)
		if err != nil {
			return err
		}
		if len(ciphertext) != k {
			return ErrCrypto
		}
		if err := c.p.DecryptInit(sh, []*pkcs11.Mechanism{mech}, priv); err != nil {
			return describe("C_DecryptInit(RSA)", err)
		}
		out, err = c.p.Decrypt(sh, ciphertext)
		if err != nil {
			return decryptFault("C_Decrypt(RSA)", err)
		}
		if mech.Mechanism == pkcs11.CKM_RSA_X_509 && len(out) < k {
			// Some tokens strip leading zeros of the raw result.
			padded := make([]byte, k)
			copy(padded[k-len(out):], out)
			clear(out)
			out = padded
		}
		return nil
	})
	return out, err
}

// modulusLen is the modulus size of a key pair, in bytes.
func (c *conn) modulusLen(sh pkcs11.SessionHandle, label string) (int, error) {
	pub, err := c.publicKey(sh, label)
	if err != nil {
		return 0, err
	}
	return pub.Size(), nil
}

// publicKey reads a key pair's public key once per connection: the
// set-PIN path needs it on every request, and a key never changes under
// its label. It is read from the private half, a private object: the
// public half is a public object, which a session without the user PIN
// can alter or destroy. A token whose private keys do not show their
// public exponent is read from the public half instead.
func (c *conn) publicKey(sh pkcs11.SessionHandle, label string) (*rsa.PublicKey, error) {
	c.handleMu.RLock()
	pub, ok := c.pubKeys[label]
	c.handleMu.RUnlock()
	if ok {
		return pub, nil
	}
	h, err := c.handle(sh, label, classPrivate)
	if err != nil {
		return nil, err
	}
	if pub, err = c.rsaPublicOf(sh, h, label); err != nil || pub.E == 0 || pub.N.Sign() == 0 {
		if h, err = c.handle(sh, label, classPublic); err != nil {
			return nil, err
		}
		if pub, err = c.rsaPublicOf(sh, h, label); err != nil {
			return nil, err
		}
	}
	c.handleMu.Lock()
	c.pubKeys[label] = pub
	c.handleMu.Unlock()
	return pub, nil
}

// rsaPublicOf reads the public key of an RSA object, either half: both
// carry the modulus and public exponent.
func (c *conn) rsaPublicOf(sh pkcs11.SessionHandle, h pkcs11.ObjectHandle, label string) (*rsa.PublicKey, error) {
	attrs, err := c.p.GetAttributeValue(sh, h, []*pkcs11.Attribute{
		pkcs11.NewAttribute(pkcs11.CKA_MODULUS, nil),
		pkcs11.NewAttribute(pkcs11.CKA_PUBLIC_EXPONENT, nil),
	})
	if err != nil {
		return nil, describe("C_GetAttributeValue", err)
	}
	e := new(big.Int).SetBytes(attrs[1].Value)
	if !e.IsInt64() || e.Int64() > 1<<31 {
		return nil, fmt.Errorf("hsm: %s has an unusable public exponent", label)
	}
	return &rsa.PublicKey{N: new(big.Int).SetBytes(attrs[0].Value), E: int(e.Int64())}, nil
}
