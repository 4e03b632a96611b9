package hsm

import (
	"context"
	"errors"
	"fmt"

	"github.com/miekg/pkcs11"
)

// ErrActiveVersion reports an attempt to destroy the version new writes
// use.
var ErrActiveVersion = errors.New("hsm: refusing to destroy the active version")

// DestroyVersion destroys every object of a purpose's version (a secret
// key, or both halves of a key pair) and returns how many it destroyed.
// It refuses the active version. Whether any record still needs the
// version is the caller's question; the token cannot know.
func (m *Module) DestroyVersion(ctx context.Context, p Purpose, version uint32) (int, error) {
	label := Label(p, version)
	var n int
	err := m.do(ctx, "destroy", func(c *conn) error {
		active, err := c.activeVersion(p)
		if err != nil {
			return err
		}
		if version == active {
			return fmt.Errorf("%w: %s", ErrActiveVersion, label)
		}
		err = c.withSession(func(sh pkcs11.SessionHandle) error {
			hs, err := c.findObjects(sh, []*pkcs11.Attribute{pkcs11.NewAttribute(pkcs11.CKA_LABEL, label)})
			if err != nil {
				return err
			}
			if len(hs) == 0 {
				return fmt.Errorf("%w: %s", ErrKeyNotFound, label)
			}
			for _, h := range hs {
				if err := c.p.DestroyObject(sh, h); err != nil {
					return describe("C_DestroyObject", err)
				}
				n++
			}
			return nil
		})
		if err != nil {
			return err
		}
		c.forget(label)
		return c.loadVersions()
	})
	return n, err
}

// forgetHandles drops every cached handle.
func (c *conn) forgetHandles() {
	c.handleMu.Lock()
	defer c.handleMu.Unlock()
	clear(c.handles)
}

// forget drops the cached handles and public key of a label.
func (c *conn) forget(label string) {
	c.handleMu.Lock()
	defer c.handleMu.Unlock()
	for k := range c.handles {
		if k.label == label {
			delete(c.handles, k)
		}
	}
	delete(c.pubKeys, label)
}

// ValueKCV is the key check value a clear secret of a purpose's kind would
// have, computed inside the token on a session object that is destroyed
// straight after: what a key custodian checks a component against before
// it is combined. The value is the caller's to clear.
func (m *Module) ValueKCV(ctx context.Context, kind Kind, value []byte) (CheckValue, error) {
	if len(value) != 32 {
		return CheckValue{}, fmt.Errorf("hsm: key value of %d bytes, want 32", len(value))
	}
	var cv CheckValue
	err := m.do(ctx, "kcv", func(c *conn) error {
		method, ok := c.kcvMethod(kind)
		if !ok {
			return fmt.Errorf("hsm: %s keys have no KCV", kind)
		}
		return c.withSession(func(sh pkcs11.SessionHandle) error {
			h, err := c.p.CreateObject(sh, []*pkcs11.Attribute{
				pkcs11.NewAttribute(pkcs11.CKA_CLASS, pkcs11.CKO_SECRET_KEY),
				pkcs11.NewAttribute(pkcs11.CKA_KEY_TYPE, method.keyType),
				pkcs11.NewAttribute(pkcs11.CKA_TOKEN, false), // gone with the session at the latest
				pkcs11.NewAttribute(pkcs11.CKA_SENSITIVE, true),
				pkcs11.NewAttribute(pkcs11.CKA_EXTRACTABLE, false),
				pkcs11.NewAttribute(pkcs11.CKA_SIGN, method.mech != pkcs11.CKM_AES_ECB),
				pkcs11.NewAttribute(pkcs11.CKA_ENCRYPT, method.mech == pkcs11.CKM_AES_ECB),
				pkcs11.NewAttribute(pkcs11.CKA_VALUE, value),
			})
			if err != nil {
				return describe("C_CreateObject", err)
			}
			defer func() { _ = c.p.DestroyObject(sh, h) }()
			cv, err = c.kcv(sh, h, method)
			return err
		})
	})
	return cv, err
}
