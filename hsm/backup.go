package hsm

import (
	"context"
	"crypto/rsa"
	"crypto/x509"
	"errors"
	"fmt"
	"time"

	"github.com/miekg/pkcs11"
)

// Backups move every vault key from one token to another under a
// key-encryption key that custodians form from components. The keys are
// sensitive and extractable only under a wrapping key with CKA_TRUSTED,
// which only the security officer can set: an export needs the SO PIN,
// the user PIN and the custodians together (dual control), and the
// wrapping key exists only as a session object for the length of the
// export. An import needs the user PIN and the custodians.

// BackupFormat names the layout of a backup file.
const BackupFormat = "cardvault-backup-v1"

// wrapMechanisms are the allow-list of backup wrap mechanisms, best
// first: AES key wrap with padding (RFC 5649) wraps secrets and PKCS#8
// private keys of any length; plain AES key wrap (RFC 3394) only keys a
// multiple of 8 bytes long, which the vault's secrets are and an RSA
// private key's PKCS#8 encoding in general is not.
var wrapMechanisms = map[string]uint{
	"CKM_AES_KEY_WRAP_PAD": pkcs11.CKM_AES_KEY_WRAP_PAD,
	"CKM_AES_KEY_WRAP":     pkcs11.CKM_AES_KEY_WRAP,
}

// wrapMechanismName is the name wrapMechanisms knows a mechanism by.
func wrapMechanismName(mech uint) string {
	for name, m := range wrapMechanisms {
		if m == mech {
			return name
		}
	}
	return ""
}

// BackupKey is one key object in a backup: a secret or private key
// wrapped under the backup KEK, or a public half in clear.
type BackupKey struct {
	Label   string  `json:"label"`
	Purpose Purpose `json:"purpose"`
	Version uint32  `json:"version"`
	Class   string  `json:"class"` // secret, private or public
	// Check is the KCV of a secret key, or "sha256:" and the SPKI
	// fingerprint of a key pair's half.
	Check     string `json:"check"`
	Wrapped   []byte `json:"wrapped,omitempty"`
	PublicKey []byte `json:"public_key,omitempty"` // PKIX DER of a public half
	EndDate   string `json:"end_date,omitempty"`   // a public half's CKA_END_DATE, YYYY-MM-DD
}

// Backup is the content of a backup file. It holds no key in clear.
type Backup struct {
	Format      string      `json:"format"`
	Mechanism   string      `json:"mechanism"`
	WrappingKCV string      `json:"wrapping_kcv"`
	Token       TokenInfo   `json:"token"`
	Created     time.Time   `json:"created"`
	Keys        []BackupKey `json:"keys"`
}

// ErrSOLogin reports that the security officer's PIN was refused.
var ErrSOLogin = errors.New("hsm: security officer login refused")

// Export wraps every vault key under kek, a 32-byte AES key the caller
// formed from components and clears. soPIN makes the trusted wrapping key.
// It is a ceremony: nothing else may use the module while it runs, because
// it logs the token's application in and out.
func (m *Module) Export(ctx context.Context, soPIN string, kek []byte) (*Backup, error) {
	if len(kek) != 32 {
		return nil, fmt.Errorf("hsm: backup key of %d bytes, want 32", len(kek))
	}
	c, err := m.current()
	if err != nil {
		return nil, err
	}
	c.inflight.RLock()
	defer c.inflight.RUnlock()
	keys, err := c.listKeys()
	if err != nil {
		return nil, err
	}
	if err := c.exportable(keys); err != nil {
		return nil, err
	}
	wrapKCV, err := m.ValueKCV(ctx, KindAES, kek)
	if err != nil {
		return nil, err
	}
	sh, err := c.p.OpenSession(c.slot, pkcs11.CKF_SERIAL_SESSION|pkcs11.CKF_RW_SESSION)
	if err != nil {
		return nil, describe("C_OpenSession", err)
	}
	defer func() { _ = c.p.CloseSession(sh) }() // destroys the session's wrapping key too
	wrapKey, err := c.trustedWrapKey(sh, soPIN, m.cfg.PIN, kek)
	// The logout voided the handles of private objects (SoftHSM2 hands
	// out new ones after the login); find them again.
	c.forgetHandles()
	if err != nil {
		return nil, err
	}
	defer func() { _ = c.p.DestroyObject(sh, wrapKey) }()

	tok, err := m.Token(ctx)
	if err != nil {
		return nil, err
	}
	b := &Backup{
		Format: BackupFormat, Mechanism: wrapMechanismName(c.wrapMech), WrappingKCV: wrapKCV.String(),
		Token: tok, Created: time.Now().UTC(),
	}
	for _, k := range keys {
		bk := BackupKey{Label: k.Label, Purpose: k.Purpose, Version: k.Version, Class: k.Class}
		switch k.Class {
		case "secret", "private":
			class := uint(classSecret)
			if k.Class == "private" {
				class = classPrivate
			}
			h, err := c.handle(sh, k.Label, class)
			if err != nil {
				return nil, err
			}
			if bk.Wrapped, err = c.p.WrapKey(sh, []*pkcs11.Mechanism{pkcs11.NewMechanism(c.wrapMech, nil)}, wrapKey, h); err != nil {
				return nil, fmt.Errorf("%s: %w", k.Label, describe("C_WrapKey", err))
			}
		case "public":
			pub, err := c.publicKey(sh, k.Label)
			if err != nil {
				return nil, err
			}
			if bk.PublicKey, err = x509.MarshalPKIXPublicKey(pub); err != nil {
				return nil, err
			}
			if !k.EndDate.IsZero() {
				bk.EndDate = k.EndDate.Format(time.DateOnly)
			}
		}
		if bk.Check, err = m.objectCheck(ctx, k); err != nil {
			return nil, err
		}
		b.Keys = append(b.Keys, bk)
	}
	return b, nil
}

// exportable refuses, before anything is wrapped, a backup this token
// cannot make: no wrap mechanism, a key made never extractable, or a
// private key where only RFC 3394 (no padding) is offered.
func (c *conn) exportable(keys []KeyInfo) error {
	if c.wrapMech == 0 {
		return errNoWrapMechanism
	}
	for _, k := range keys {
		switch {
		case k.Class == "public":
		case k.Class == "private" && c.wrapMech == pkcs11.CKM_AES_KEY_WRAP:
			return fmt.Errorf("hsm: %s is an RSA private key; the token offers CKM_AES_KEY_WRAP (RFC 3394), which wraps only keys a multiple of 8 bytes long, and not CKM_AES_KEY_WRAP_PAD (RFC 5649), which the key needs", k.Label)
		case !k.Extractable:
			return fmt.Errorf("hsm: %s (%s) is never extractable; back it up with the vendor's cloning or replication (docs/hsm.md), or make keys with ceremony init --backup=wrap", k.Label, k.Class)
		}
	}
	return nil
}

// trustedWrapKey logs the application out of the user role and in as the
// security officer, creates the trusted wrapping key as a public session
// object (the SO may create no other kind), and logs back in as the user,
// whatever happens, so the user PIN is always restored.
func (c *conn) trustedWrapKey(sh pkcs11.SessionHandle, soPIN, userPIN string, kek []byte) (h pkcs11.ObjectHandle, err error) {
	_ = c.p.Logout(sh) // the user role crypto11 logged in
	defer func() {
		_ = c.p.Logout(sh)
		if lerr := c.p.Login(sh, pkcs11.CKU_USER, userPIN); lerr != nil && err == nil {
			err = describe("C_Login(user)", lerr)
		}
	}()
	if err := c.p.Login(sh, pkcs11.CKU_SO, soPIN); err != nil {
		if code, ok := returnCode(err); ok && code == pkcs11.CKR_PIN_INCORRECT {
			return 0, ErrSOLogin
		}
		return 0, fmt.Errorf("%w: %w", ErrSOLogin, describe("C_Login(SO)", err))
	}
	h, err = c.p.CreateObject(sh, []*pkcs11.Attribute{
		pkcs11.NewAttribute(pkcs11.CKA_CLASS, pkcs11.CKO_SECRET_KEY),
		pkcs11.NewAttribute(pkcs11.CKA_KEY_TYPE, pkcs11.CKK_AES),
		pkcs11.NewAttribute(pkcs11.CKA_LABEL, "cardvault-backup-kek"),
		pkcs11.NewAttribute(pkcs11.CKA_TOKEN, false),   // dies with the session
		pkcs11.NewAttribute(pkcs11.CKA_PRIVATE, false), // the SO cannot make private objects
		pkcs11.NewAttribute(pkcs11.CKA_TRUSTED, true),  // only the SO can set it
		pkcs11.NewAttribute(pkcs11.CKA_WRAP, true),
		pkcs11.NewAttribute(pkcs11.CKA_UNWRAP, false),
		pkcs11.NewAttribute(pkcs11.CKA_ENCRYPT, false),
		pkcs11.NewAttribute(pkcs11.CKA_DECRYPT, false),
		pkcs11.NewAttribute(pkcs11.CKA_SENSITIVE, true),
		pkcs11.NewAttribute(pkcs11.CKA_EXTRACTABLE, false),
		pkcs11.NewAttribute(pkcs11.CKA_VALUE, kek),
	})
	if err != nil {
		return 0, describe("C_CreateObject(trusted wrapping key)", err)
	}
	return h, nil
}

// objectCheck is a key object's check: the KCV of a secret, the SPKI
// fingerprint of either half of a key pair.
func (m *Module) objectCheck(ctx context.Context, k KeyInfo) (string, error) {
	if k.Class == "secret" {
		cv, err := m.KCV(ctx, k.Purpose, k.Version)
		return cv.String(), err
	}
	var pub *rsa.PublicKey
	err := m.do(ctx, "public key", func(c *conn) error {
		return c.withSession(func(sh pkcs11.SessionHandle) error {
			class := uint(classPublic)
			if k.Class == "private" {
				class = classPrivate
			}
			h, err := c.handle(sh, k.Label, class)
			if err != nil {
				return err
			}
			pub, err = c.rsaPublicOf(sh, h, k.Label)
			return err
		})
	})
	if err != nil {
		return "", err
	}
	fp, err := PublicKeyFingerprint(pub)
	if err != nil {
		return "", err
	}
	return "sha256:" + fp, nil
}

// Import restores a backup's keys into this token under their labels,
// unwrapping with kek, and checks each restored key against the backup's
// check value. It refuses if any label is taken, and destroys whatever it
// created if any key fails, so a failed import leaves the token as it
// was.
func (m *Module) Import(ctx context.Context, kek []byte, b *Backup) (err error) {
	if b.Format != BackupFormat {
		return fmt.Errorf("hsm: backup format %q, want %q", b.Format, BackupFormat)
	}
	mech, ok := wrapMechanisms[b.Mechanism]
	if !ok {
		return fmt.Errorf("hsm: backup wrapped with %q, which is not on the allow-list", b.Mechanism)
	}
	wrapKCV, err := m.ValueKCV(ctx, KindAES, kek)
	if err != nil {
		return err
	}
	if wrapKCV.String() != b.WrappingKCV {
		return fmt.Errorf("hsm: the components form a key with KCV %s; the backup was wrapped under %s", wrapKCV, b.WrappingKCV)
	}
	c, err := m.current()
	if err != nil {
		return err
	}
	c.inflight.RLock()
	defer c.inflight.RUnlock()
	if !c.listed[mech] {
		return fmt.Errorf("hsm: the backup was wrapped with %s, which this token does not offer", b.Mechanism)
	}
	for _, k := range b.Keys {
		if k.Label != Label(k.Purpose, k.Version) || k.Purpose.Kind() == "" {
			return fmt.Errorf("hsm: backup key %q does not follow the label scheme", k.Label)
		}
		if exists, err := c.exists(k.Label); err != nil {
			return err
		} else if exists {
			return fmt.Errorf("%w: %s", ErrKeyExists, k.Label)
		}
	}
	sh, err := c.p.OpenSession(c.slot, pkcs11.CKF_SERIAL_SESSION|pkcs11.CKF_RW_SESSION)
	if err != nil {
		return describe("C_OpenSession", err)
	}
	defer func() { _ = c.p.CloseSession(sh) }()
	unwrapKey, err := c.p.CreateObject(sh, []*pkcs11.Attribute{
		pkcs11.NewAttribute(pkcs11.CKA_CLASS, pkcs11.CKO_SECRET_KEY),
		pkcs11.NewAttribute(pkcs11.CKA_KEY_TYPE, pkcs11.CKK_AES),
		pkcs11.NewAttribute(pkcs11.CKA_TOKEN, false), // dies with the session
		pkcs11.NewAttribute(pkcs11.CKA_PRIVATE, true),
		pkcs11.NewAttribute(pkcs11.CKA_UNWRAP, true),
		pkcs11.NewAttribute(pkcs11.CKA_WRAP, false),
		pkcs11.NewAttribute(pkcs11.CKA_SENSITIVE, true),
		pkcs11.NewAttribute(pkcs11.CKA_EXTRACTABLE, false),
		pkcs11.NewAttribute(pkcs11.CKA_VALUE, kek),
	})
	if err != nil {
		return describe("C_CreateObject(unwrapping key)", err)
	}
	defer func() { _ = c.p.DestroyObject(sh, unwrapKey) }()

	var created []pkcs11.ObjectHandle
	defer func() {
		if err != nil {
			for _, h := range created {
				_ = c.p.DestroyObject(sh, h)
			}
			for _, k := range b.Keys {
				c.forget(k.Label)
			}
			_ = c.loadVersions()
		}
	}()
	unwrapMech := []*pkcs11.Mechanism{pkcs11.NewMechanism(mech, nil)}
	for _, k := range b.Keys {
		var h pkcs11.ObjectHandle
		switch k.Class {
		case "secret":
			h, err = c.p.UnwrapKey(sh, unwrapMech, unwrapKey, k.Wrapped, c.fit(secretTemplate(k.Purpose, k.Version), true))
			err = describeIf("C_UnwrapKey", err)
		case "private":
			h, err = c.p.UnwrapKey(sh, unwrapMech, unwrapKey, k.Wrapped, c.fit(privateTemplate(k.Label), true))
			err = describeIf("C_UnwrapKey", err)
		case "public":
			h, err = c.createPublic(sh, k)
		default:
			err = fmt.Errorf("unknown class %q", k.Class)
		}
		if err != nil {
			return fmt.Errorf("hsm: restore %s (%s): %w", k.Label, k.Class, err)
		}
		created = append(created, h)
	}
	if err = c.loadVersions(); err != nil {
		return err
	}
	for _, k := range b.Keys {
		info := KeyInfo{Label: k.Label, Purpose: k.Purpose, Version: k.Version, Class: k.Class}
		got, cerr := m.objectCheck(ctx, info)
		if cerr != nil {
			return fmt.Errorf("hsm: check %s: %w", k.Label, cerr)
		}
		if got != k.Check {
			return fmt.Errorf("hsm: restored %s (%s) checks as %s; the backup says %s", k.Label, k.Class, got, k.Check)
		}
	}
	return nil
}

// privateTemplate is the attribute set of a restored set_pin private half:
// the one generateRSA gives a new one.
func privateTemplate(label string) []*pkcs11.Attribute {
	return []*pkcs11.Attribute{
		pkcs11.NewAttribute(pkcs11.CKA_CLASS, pkcs11.CKO_PRIVATE_KEY),
		pkcs11.NewAttribute(pkcs11.CKA_KEY_TYPE, pkcs11.CKK_RSA),
		pkcs11.NewAttribute(pkcs11.CKA_LABEL, label),
		pkcs11.NewAttribute(pkcs11.CKA_ID, []byte(label)),
		pkcs11.NewAttribute(pkcs11.CKA_TOKEN, true),
		pkcs11.NewAttribute(pkcs11.CKA_PRIVATE, true),
		pkcs11.NewAttribute(pkcs11.CKA_DECRYPT, true),
		pkcs11.NewAttribute(pkcs11.CKA_SIGN, false),
		pkcs11.NewAttribute(pkcs11.CKA_UNWRAP, false),
		// Decrypt only: the set_pin key never signs, unwraps or derives.
		pkcs11.NewAttribute(pkcs11.CKA_DERIVE, false),
		// Never in clear; wrapped only by a key the security officer
		// marked trusted; fixed once made, and never copied.
		pkcs11.NewAttribute(pkcs11.CKA_SENSITIVE, true),
		pkcs11.NewAttribute(pkcs11.CKA_EXTRACTABLE, true),
		pkcs11.NewAttribute(pkcs11.CKA_WRAP_WITH_TRUSTED, true),
		pkcs11.NewAttribute(pkcs11.CKA_COPYABLE, false),
		// Last: SoftHSM2 applies an unwrap template in order and refuses
		// any attribute after CKA_MODIFIABLE=false (CKR_ATTRIBUTE_READ_ONLY).
		pkcs11.NewAttribute(pkcs11.CKA_MODIFIABLE, false),
	}
}

// createPublic restores a public half from its DER and end date.
func (c *conn) createPublic(sh pkcs11.SessionHandle, k BackupKey) (pkcs11.ObjectHandle, error) {
	parsed, err := x509.ParsePKIXPublicKey(k.PublicKey)
	if err != nil {
		return 0, fmt.Errorf("public key: %w", err)
	}
	pub, ok := parsed.(*rsa.PublicKey)
	if !ok {
		return 0, fmt.Errorf("public key is %T, want RSA", parsed)
	}
	template := []*pkcs11.Attribute{
		pkcs11.NewAttribute(pkcs11.CKA_CLASS, pkcs11.CKO_PUBLIC_KEY),
		pkcs11.NewAttribute(pkcs11.CKA_KEY_TYPE, pkcs11.CKK_RSA),
		pkcs11.NewAttribute(pkcs11.CKA_LABEL, k.Label),
		pkcs11.NewAttribute(pkcs11.CKA_ID, []byte(k.Label)),
		pkcs11.NewAttribute(pkcs11.CKA_TOKEN, true),
		pkcs11.NewAttribute(pkcs11.CKA_ENCRYPT, true),
		pkcs11.NewAttribute(pkcs11.CKA_VERIFY, false),
		pkcs11.NewAttribute(pkcs11.CKA_WRAP, false),
		pkcs11.NewAttribute(pkcs11.CKA_MODULUS, pub.N.Bytes()),
		pkcs11.NewAttribute(pkcs11.CKA_PUBLIC_EXPONENT, bigEndian(pub.E)),
	}
	if k.EndDate != "" {
		day, err := time.Parse(time.DateOnly, k.EndDate)
		if err != nil {
			return 0, fmt.Errorf("end date: %w", err)
		}
		template = append(template, pkcs11.NewAttribute(pkcs11.CKA_END_DATE, []byte(day.Format("20060102"))))
	}
	h, err := c.p.CreateObject(sh, template)
	return h, describeIf("C_CreateObject", err)
}

func bigEndian(e int) []byte {
	var out []byte
	for ; e > 0; e >>= 8 {
		out = append([]byte{byte(e)}, out...)
	}
	return out
}
