package hsm

import (
	"context"
	"errors"
	"fmt"

	"github.com/ThalesGroup/crypto11"
	"github.com/miekg/pkcs11"
)

// ErrKeyExists reports that a label is already taken; ceremonies never
// overwrite a key.
var ErrKeyExists = errors.New("hsm: key already exists")

// secretTemplate is the attribute set of a purpose's secret key. Usages are
// limited to what the purpose needs.
func secretTemplate(p Purpose, version uint32) []*pkcs11.Attribute {
	label := Label(p, version)
	aes := p.Kind() == KindAES
	keyType := uint(pkcs11.CKK_GENERIC_SECRET)
	if aes {
		keyType = pkcs11.CKK_AES
	}
	return []*pkcs11.Attribute{
		pkcs11.NewAttribute(pkcs11.CKA_CLASS, pkcs11.CKO_SECRET_KEY),
		pkcs11.NewAttribute(pkcs11.CKA_KEY_TYPE, keyType),
		pkcs11.NewAttribute(pkcs11.CKA_LABEL, label),
		pkcs11.NewAttribute(pkcs11.CKA_ID, []byte(label)),
		pkcs11.NewAttribute(pkcs11.CKA_TOKEN, true),
		pkcs11.NewAttribute(pkcs11.CKA_PRIVATE, true),
		// The value never leaves the token in clear. If the key is
		// backed up by wrap (fit decides), it leaves wrapped only under
		// a key the security officer marked trusted, which is how a
		// backup ceremony moves keys between tokens; otherwise never.
		pkcs11.NewAttribute(pkcs11.CKA_SENSITIVE, true),
		pkcs11.NewAttribute(pkcs11.CKA_EXTRACTABLE, true),
		pkcs11.NewAttribute(pkcs11.CKA_WRAP_WITH_TRUSTED, true),
		// AES keys seal (card KEK) or encipher PIN blocks (PEK); a zone
		// PIN key only deciphers the blocks the zone sends.
		pkcs11.NewAttribute(pkcs11.CKA_ENCRYPT, aes && p != ZonePIN),
		pkcs11.NewAttribute(pkcs11.CKA_DECRYPT, aes),
		// Sign is the HMAC for HMAC keys, and only the KCV (CMAC of a zero
		// block) for AES keys.
		pkcs11.NewAttribute(pkcs11.CKA_SIGN, true),
		pkcs11.NewAttribute(pkcs11.CKA_VERIFY, false),
		pkcs11.NewAttribute(pkcs11.CKA_WRAP, false),
		pkcs11.NewAttribute(pkcs11.CKA_UNWRAP, false),
		pkcs11.NewAttribute(pkcs11.CKA_DERIVE, false),
		// Fixed once made: with the user PIN alone nobody can add a usage,
		// relabel it, narrow its export policy or copy it under new
		// attributes.
		pkcs11.NewAttribute(pkcs11.CKA_COPYABLE, false),
		// Last: SoftHSM2 applies an unwrap template in order and refuses
		// any attribute after CKA_MODIFIABLE=false (CKR_ATTRIBUTE_READ_ONLY).
		pkcs11.NewAttribute(pkcs11.CKA_MODIFIABLE, false),
	}
}

// Generate creates version of a purpose's key inside the token. It refuses
// (ErrKeyExists) if the label is taken.
func (m *Module) Generate(ctx context.Context, p Purpose, version uint32) error {
	if p.Kind() == "" {
		return fmt.Errorf("hsm: unknown purpose %q", p)
	}
	if p.Imported() {
		return fmt.Errorf("hsm: a %s key is imported (from components or a TR-31 key block), never generated", p)
	}
	return m.createKey(Label(p, version), func(c *conn, extractable bool) error {
		if p.Kind() == KindRSA {
			return c.generateRSA(Label(p, version), extractable)
		}
		return c.generateSecret(p, version, extractable)
	})
}

// createKey runs a key-creating call once a free label is confirmed, then
// reloads the catalog; the call makes the key extractable (only under a
// trusted wrapping key) if the module's key backup is by wrap. It is not
// retried on a session fault; the existence check makes a second attempt
// by the caller safe.
func (m *Module) createKey(label string, create func(c *conn, extractable bool) error) error {
	c, err := m.current()
	if err != nil {
		return err
	}
	c.inflight.RLock()
	defer c.inflight.RUnlock()
	extractable := m.backupByWrap.Load()
	if extractable {
		if err := c.canBackUpByWrap(); err != nil {
			return err
		}
	}
	if exists, err := c.exists(label); err != nil {
		return err
	} else if exists {
		return fmt.Errorf("%w: %s", ErrKeyExists, label)
	}
	err = create(c, extractable)
	if err != nil && c.refusedCopyable(err) {
		m.log.Info("the token refuses CKA_COPYABLE on token keys; keys are made without it", "token", m.Label())
		err = create(c, extractable)
	}
	if err != nil {
		return fmt.Errorf("hsm: create %s: %w", label, err)
	}
	c.madeKeys.Store(true)
	return c.loadVersions()
}

// refusedCopyable reports whether a key template was refused in the way a
// token without CKA_COPYABLE refuses it, and if so drops the attribute
// from then on. Such a token keeps nothing to copy with: it reads the
// attribute back as absent.
func (c *conn) refusedCopyable(err error) bool {
	var code pkcs11.Error
	if c.noCopyable.Load() || !errors.As(err, &code) || (code != pkcs11.CKR_GENERAL_ERROR && code != pkcs11.CKR_ATTRIBUTE_TYPE_INVALID) {
		return false
	}
	c.noCopyable.Store(true)
	return true
}

func (c *conn) exists(label string) (bool, error) {
	var found bool
	err := c.withSession(func(sh pkcs11.SessionHandle) error {
		hs, err := c.findObjects(sh, []*pkcs11.Attribute{pkcs11.NewAttribute(pkcs11.CKA_LABEL, label)})
		found = len(hs) > 0
		return err
	})
	return found, err
}

func (c *conn) generateSecret(p Purpose, version uint32, extractable bool) error {
	template := crypto11.NewAttributeSet()
	for _, a := range c.fit(secretTemplate(p, version), extractable) {
		if a.Type == pkcs11.CKA_CLASS || a.Type == pkcs11.CKA_KEY_TYPE {
			continue // crypto11 sets these from the cipher
		}
		if err := template.Set(a.Type, a.Value); err != nil {
			return err
		}
	}
	cipher := crypto11.CipherAES
	if p.Kind() == KindHMAC {
		// CKK_GENERIC_SECRET: the type SoftHSM2 and most HSMs accept for
		// CKM_SHA256_HMAC.
		cipher = crypto11.CipherGeneric
	}
	_, err := c.c11.GenerateSecretKeyWithAttributes(template, 256, cipher)
	return renewIfLost(err)
}

func (c *conn) generateRSA(label string, extractable bool) error {
	public, err := crypto11.NewAttributeSetWithIDAndLabel([]byte(label), []byte(label))
	if err != nil {
		return err
	}
	private := public.Copy()
	for _, kv := range []struct {
		t uint
		v any
	}{
		{pkcs11.CKA_ENCRYPT, true},
		{pkcs11.CKA_VERIFY, false},
		{pkcs11.CKA_WRAP, false},
	} {
		if err := public.Set(kv.t, kv.v); err != nil {
			return err
		}
	}
	// The private half has the attributes a restored one gets (backup.go),
	// less those crypto11 sets itself.
	for _, a := range c.fit(privateTemplate(label), extractable) {
		switch a.Type {
		case pkcs11.CKA_CLASS, pkcs11.CKA_KEY_TYPE, pkcs11.CKA_LABEL, pkcs11.CKA_ID, pkcs11.CKA_TOKEN:
			continue
		}
		if err := private.Set(a.Type, a.Value); err != nil {
			return err
		}
	}
	_, err = c.c11.GenerateRSAKeyPairWithAttributes(public, private, 4096)
	return renewIfLost(err)
}

// ImportSecret creates a purpose's secret key from a clear value, for
// split-knowledge component import and for tests with known keys. The value
// is the caller's to clear.
func (m *Module) ImportSecret(ctx context.Context, p Purpose, version uint32, value []byte) error {
	if p.Kind() != KindAES && p.Kind() != KindHMAC {
		return fmt.Errorf("hsm: %s is not a secret-key purpose", p)
	}
	if len(value) != 32 {
		return fmt.Errorf("hsm: key value of %d bytes, want 32", len(value))
	}
	return m.createKey(Label(p, version), func(c *conn, extractable bool) error {
		template := append(c.fit(secretTemplate(p, version), extractable), pkcs11.NewAttribute(pkcs11.CKA_VALUE, value))
		return c.withSession(func(sh pkcs11.SessionHandle) error {
			_, err := c.p.CreateObject(sh, template)
			return describeIf("C_CreateObject", err)
		})
	})
}

// fit adapts a key template to the token and to the key's backup:
//   - A key backed up by the vendor's cloning or replication gets
//     CKA_EXTRACTABLE=false; only a key backed up by wrap keeps the
//     template's CKA_EXTRACTABLE=true with CKA_WRAP_WITH_TRUSTED, and only
//     on a token that enforces the latter (NSS softokn wraps such a key
//     under any key the user makes) and can wrap at all.
//   - A token that refuses CKA_COPYABLE on token keys (NSS again, with
//     CKR_GENERAL_ERROR; it takes it on session keys only, so no session
//     trial can tell) gets keys without it; createKey learns this from the
//     first refusal.
//
// Every other attribute is required as written.
func (c *conn) fit(template []*pkcs11.Attribute, extractable bool) []*pkcs11.Attribute {
	extractable = extractable && c.canBackUpByWrap() == nil
	out := make([]*pkcs11.Attribute, 0, len(template))
	for _, a := range template {
		switch {
		case a.Type == pkcs11.CKA_COPYABLE && c.noCopyable.Load():
			continue
		case a.Type == pkcs11.CKA_EXTRACTABLE:
			a = pkcs11.NewAttribute(pkcs11.CKA_EXTRACTABLE, extractable)
		}
		out = append(out, a)
	}
	return out
}

// errNoWrapMechanism is a token that can wrap no key at all.
var errNoWrapMechanism = errors.New("hsm: the token offers neither CKM_AES_KEY_WRAP_PAD nor CKM_AES_KEY_WRAP; back its keys up with the vendor's cloning or replication (docs/hsm.md)")

// canBackUpByWrap says why keys on this token cannot be backed up by
// wrap, or nil if they can.
func (c *conn) canBackUpByWrap() error {
	switch {
	case c.untrustedWrap:
		return errors.New("hsm: the token ignores CKA_WRAP_WITH_TRUSTED, so an extractable key would leave wrapped under any key the user PIN can make; keys are never extractable here: back the token up with the vendor's cloning or replication (docs/hsm.md)")
	case c.wrapMech == 0:
		return errNoWrapMechanism
	}
	return nil
}

// KeyBackup is how the keys a module makes from now on can be backed up,
// chosen in the ceremony that makes them.
type KeyBackup int

const (
	// BackupByVendor: keys are never extractable; the token is backed up
	// by the vendor's cloning or replication. The default.
	BackupByVendor KeyBackup = iota
	// BackupByWrap: keys are extractable only wrapped under a key the
	// security officer marked trusted (ceremony export).
	BackupByWrap
)

func (b KeyBackup) String() string {
	if b == BackupByWrap {
		return "wrap"
	}
	return "vendor"
}

// ParseKeyBackup reads "vendor" or "wrap".
func ParseKeyBackup(s string) (KeyBackup, error) {
	switch s {
	case "vendor":
		return BackupByVendor, nil
	case "wrap":
		return BackupByWrap, nil
	}
	return 0, fmt.Errorf("key backup %q, want vendor or wrap", s)
}

// SetKeyBackup chooses how the keys the module makes from now on can be
// backed up. By wrap is refused on a token that cannot enforce it.
func (m *Module) SetKeyBackup(b KeyBackup) error {
	if b == BackupByWrap {
		c, err := m.current()
		if err != nil {
			return err
		}
		if err := c.canBackUpByWrap(); err != nil {
			return err
		}
	}
	m.backupByWrap.Store(b == BackupByWrap)
	return nil
}

// probeTrustedWrap finds out, on session keys that die with the session,
// whether the token enforces CKA_WRAP_WITH_TRUSTED: a key marked so must
// not wrap under a key the user made.
func (c *conn) probeTrustedWrap() (enforced bool, err error) {
	err = c.withSession(func(sh pkcs11.SessionHandle) error {
		key, err := c.probeKey(sh, pkcs11.NewAttribute(pkcs11.CKA_EXTRACTABLE, true), pkcs11.NewAttribute(pkcs11.CKA_WRAP_WITH_TRUSTED, true))
		if err != nil {
			return describe("C_CreateObject(probe key)", err)
		}
		defer c.p.DestroyObject(sh, key)
		wrapper, err := c.probeKey(sh, pkcs11.NewAttribute(pkcs11.CKA_WRAP, true))
		if err != nil {
			return describe("C_CreateObject(probe wrapping key)", err)
		}
		defer c.p.DestroyObject(sh, wrapper)
		_, werr := c.p.WrapKey(sh, []*pkcs11.Mechanism{pkcs11.NewMechanism(c.wrapMech, nil)}, wrapper, key)
		enforced = werr != nil
		return nil
	})
	return enforced, err
}

// probeKey is an AES key of a known value on a session object, which dies
// with the session: what the probes try a token's behaviour on.
func (c *conn) probeKey(sh pkcs11.SessionHandle, extra ...*pkcs11.Attribute) (pkcs11.ObjectHandle, error) {
	return c.p.CreateObject(sh, append([]*pkcs11.Attribute{
		pkcs11.NewAttribute(pkcs11.CKA_CLASS, pkcs11.CKO_SECRET_KEY),
		pkcs11.NewAttribute(pkcs11.CKA_KEY_TYPE, pkcs11.CKK_AES),
		pkcs11.NewAttribute(pkcs11.CKA_TOKEN, false),
		pkcs11.NewAttribute(pkcs11.CKA_VALUE, make([]byte, 32)),
	}, extra...))
}
