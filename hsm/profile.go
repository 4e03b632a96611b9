package hsm

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"strings"

	"github.com/miekg/pkcs11"
)

// Profile is how a token behaves where PKCS#11 tokens differ, found by
// its mechanism list and by trials on session objects that die with the
// session. It carries no key material.
type Profile struct {
	Token TokenInfo
	// Mechanisms are the mechanisms the vault cares about, in order, and
	// whether the token lists each.
	Mechanisms []MechanismListed
	// GCMIV is what the token does with the caller's AES-GCM IV:
	// "honoured", "overwritten" (it draws its own and writes it back) or
	// "refused" (CKR_MECHANISM_PARAM_INVALID).
	GCMIV string
	// TrustedWrap says whether the token refuses to wrap a
	// CKA_WRAP_WITH_TRUSTED key under a key the user made.
	TrustedWrap bool
	// Copyable is what making keys has shown of CKA_COPYABLE on token
	// keys: "accepted", "refused" or "not yet tried".
	Copyable string
}

// MechanismListed is one mechanism of a profile.
type MechanismListed struct {
	Name   string
	Listed bool
}

// profileMechanisms are the mechanisms a profile reports, in order.
var profileMechanisms = []struct {
	mech uint
	name string
}{
	{pkcs11.CKM_AES_GCM, "CKM_AES_GCM"},
	{pkcs11.CKM_AES_ECB, "CKM_AES_ECB"},
	{pkcs11.CKM_AES_CMAC, "CKM_AES_CMAC"},
	{pkcs11.CKM_SHA256_HMAC, "CKM_SHA256_HMAC"},
	{pkcs11.CKM_RSA_PKCS, "CKM_RSA_PKCS"},
	{pkcs11.CKM_RSA_X_509, "CKM_RSA_X_509"},
	{pkcs11.CKM_RSA_PKCS_OAEP, "CKM_RSA_PKCS_OAEP"},
	{pkcs11.CKM_AES_KEY_WRAP, "CKM_AES_KEY_WRAP"},
	{pkcs11.CKM_AES_KEY_WRAP_PAD, "CKM_AES_KEY_WRAP_PAD"},
}

// Name is the profile in one line, for logs and transcripts.
func (p Profile) Name() string {
	wrap := "trusted-wrap"
	if !p.TrustedWrap {
		wrap = "any-wrap"
	}
	return fmt.Sprintf("gcm-iv-%s+%s+copyable-%s", p.GCMIV, wrap, strings.ReplaceAll(p.Copyable, " ", "-"))
}

// Profile probes the token.
func (m *Module) Profile(ctx context.Context) (Profile, error) {
	var p Profile
	tok, err := m.Token(ctx)
	if err != nil {
		return p, err
	}
	p.Token = tok
	err = m.do(ctx, "profile", func(c *conn) error {
		mechs, err := c.p.GetMechanismList(c.slot)
		if err != nil {
			return describe("C_GetMechanismList", err)
		}
		listed := map[uint]bool{}
		for _, mech := range mechs {
			listed[mech.Mechanism] = true
		}
		for _, want := range profileMechanisms {
			p.Mechanisms = append(p.Mechanisms, MechanismListed{want.name, listed[want.mech]})
		}
		p.TrustedWrap = !c.untrustedWrap
		switch {
		case c.noCopyable.Load():
			p.Copyable = "refused"
		case c.madeKeys.Load():
			p.Copyable = "accepted"
		default:
			p.Copyable = "not yet tried"
		}
		p.GCMIV, err = c.probeGCMIV()
		return err
	})
	return p, err
}

// probeGCMIV seals a block under a session key with a random IV and
// compares the IV the token reports having used.
func (c *conn) probeGCMIV() (string, error) {
	var mode string
	err := c.withSession(func(sh pkcs11.SessionHandle) error {
		key, err := c.probeKey(sh, pkcs11.NewAttribute(pkcs11.CKA_ENCRYPT, true))
		if err != nil {
			return describe("C_CreateObject(probe key)", err)
		}
		defer c.p.DestroyObject(sh, key)
		iv := make([]byte, gcmIVLen)
		if _, err := rand.Read(iv); err != nil {
			return err
		}
		params := pkcs11.NewGCMParams(bytes.Clone(iv), nil, gcmTagLen*8)
		defer params.Free()
		err = c.p.EncryptInit(sh, []*pkcs11.Mechanism{pkcs11.NewMechanism(pkcs11.CKM_AES_GCM, params)}, key)
		if errors.Is(err, pkcs11.Error(pkcs11.CKR_MECHANISM_PARAM_INVALID)) {
			mode = "refused"
			return nil
		}
		if err != nil {
			return describe("C_EncryptInit(AES_GCM probe)", err)
		}
		if _, err := c.p.Encrypt(sh, make([]byte, 16)); err != nil {
			return describe("C_Encrypt(AES_GCM probe)", err)
		}
		mode = "honoured"
		if !bytes.Equal(params.IV(), iv) {
			mode = "overwritten"
		}
		return nil
	})
	return mode, err
}
