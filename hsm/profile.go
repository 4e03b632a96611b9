package hsm

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/miekg/pkcs11"
)

// Profile is how a token behaves where PKCS#11 tokens differ, found from
// its mechanism list and by trials on session objects that die with the
// session, or forced by the configuration. Every path that differs
// between tokens reads it. It carries no key material.
type Profile struct {
	Token TokenInfo
	// Mechanisms are the mechanisms the vault cares about, in order, and
	// whether the token lists each.
	Mechanisms []MechanismListed
	// GCMIV is what the token does with the caller's AES-GCM IV:
	// "honoured", "overwritten" (it draws its own and writes it back into
	// the parameters, as cloud HSMs do) or "refused" (it wants a zeroed
	// buffer to fill, as FIPS-mode modules do).
	GCMIV string
	// RawRSA is "yes" when the token offers CKM_RSA_X_509: the PIN path
	// then decodes PKCS#1 v1.5 here, in constant time. With "no" the token
	// unpads with CKM_RSA_PKCS.
	RawRSA string
	// OAEPSHA256 is where RSA-OAEP with SHA-256 runs: "token", "raw"
	// (CKM_RSA_X_509 in the token, the decoding here), "none" (the Solaris
	// PIN route answers 503) or "untried" (no set_pin key to try it on
	// yet; the first use decides).
	OAEPSHA256 string
	// KCV is how secret AES keys are checked: "cmac" (AES-CMAC of a zero
	// block) or "ecb" (the legacy AES-ECB encryption of a zero block).
	KCV string
	// Wrap is the mechanism backups wrap keys with: "pad" (RFC 5649,
	// CKM_AES_KEY_WRAP_PAD), "plain" (RFC 3394, CKM_AES_KEY_WRAP, which
	// carries only keys a multiple of 8 bytes long) or "none".
	Wrap string
	// TrustedWrap is "enforced" when the token refuses to wrap a
	// CKA_WRAP_WITH_TRUSTED key under a key the user made, "ignored"
	// otherwise.
	TrustedWrap string
	// Copyable is what making keys has shown of CKA_COPYABLE on token
	// keys: "accepted", "refused" or "untried".
	Copyable string
	// Forced names the settings the configuration forced.
	Forced []string
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

// profileSetting is one setting of a profile, and the values the
// configuration may force it to (none: it is only ever probed).
type profileSetting struct {
	key       string
	forceable []string
}

// profileSettings are a profile's settings in the order its name lists
// them.
var profileSettings = []profileSetting{
	{"gcm-iv", []string{"honoured", "overwritten", "refused"}},
	{"raw-rsa", []string{"yes", "no"}},
	{"oaep-sha256", []string{"token", "raw", "none"}},
	{"kcv", []string{"cmac", "ecb"}},
	{"wrap", []string{"pad", "plain", "none"}},
	{"trusted-wrap", nil},
	{"copyable", nil},
}

// field is the profile's value for a setting's key.
func (p *Profile) field(key string) *string {
	switch key {
	case "gcm-iv":
		return &p.GCMIV
	case "raw-rsa":
		return &p.RawRSA
	case "oaep-sha256":
		return &p.OAEPSHA256
	case "kcv":
		return &p.KCV
	case "wrap":
		return &p.Wrap
	case "trusted-wrap":
		return &p.TrustedWrap
	case "copyable":
		return &p.Copyable
	}
	return nil
}

// Name is the profile in one line, for logs and transcripts. Its forceable
// part is what the configuration's profile setting takes.
func (p Profile) Name() string {
	parts := make([]string, 0, len(profileSettings))
	for _, s := range profileSettings {
		parts = append(parts, s.key+"="+*p.field(s.key))
	}
	return strings.Join(parts, ",")
}

// parseForced reads a forced profile: comma-separated key=value settings
// of the forceable keys, as Name prints them.
func parseForced(s string) (map[string]string, error) {
	out := map[string]string{}
	if strings.TrimSpace(s) == "" {
		return out, nil
	}
	for _, part := range strings.Split(s, ",") {
		key, value, ok := strings.Cut(strings.TrimSpace(part), "=")
		i := slices.IndexFunc(profileSettings, func(ps profileSetting) bool { return ps.key == key })
		switch {
		case !ok:
			return nil, fmt.Errorf("hsm profile: %q is not key=value", part)
		case i < 0 || profileSettings[i].forceable == nil:
			return nil, fmt.Errorf("hsm profile: %q cannot be forced; the forceable settings are gcm-iv, raw-rsa, oaep-sha256, kcv and wrap", key)
		case !slices.Contains(profileSettings[i].forceable, value):
			return nil, fmt.Errorf("hsm profile: %s=%q, want one of %s", key, value, strings.Join(profileSettings[i].forceable, ", "))
		}
		out[key] = value
	}
	return out, nil
}

// Profile is how the token behaves, as the module uses it now.
func (m *Module) Profile(ctx context.Context) (Profile, error) {
	tok, err := m.Token(ctx)
	if err != nil {
		return Profile{}, err
	}
	var p Profile
	err = m.do(ctx, "profile", func(c *conn) error {
		p = c.profile(m)
		return nil
	})
	p.Token = tok
	return p, err
}

// profile is the connection's behaviour as a Profile.
func (c *conn) profile(m *Module) Profile {
	p := Profile{
		GCMIV:       c.gcmIV,
		RawRSA:      yesNo(c.rawRSA),
		OAEPSHA256:  oaepNames[m.oaepSHA256.Load()],
		KCV:         "cmac",
		Wrap:        "none",
		TrustedWrap: "enforced",
		Copyable:    "untried",
	}
	for _, want := range profileMechanisms {
		p.Mechanisms = append(p.Mechanisms, MechanismListed{want.name, c.listed[want.mech]})
	}
	if c.kcvECB {
		p.KCV = "ecb"
	}
	switch c.wrapMech {
	case pkcs11.CKM_AES_KEY_WRAP_PAD:
		p.Wrap = "pad"
	case pkcs11.CKM_AES_KEY_WRAP:
		p.Wrap = "plain"
	}
	if c.untrustedWrap {
		p.TrustedWrap = "ignored"
	}
	switch {
	case c.noCopyable.Load():
		p.Copyable = "refused"
	case c.madeKeys.Load():
		p.Copyable = "accepted"
	}
	for _, s := range profileSettings {
		if _, ok := m.forced[s.key]; ok {
			p.Forced = append(p.Forced, s.key)
		}
	}
	return p
}

func yesNo(b bool) string {
	if b {
		return "yes"
	}
	return "no"
}

// adapt probes the token's behaviour on a new connection and applies what
// the configuration forces. A token without AES-GCM is refused: every
// card record is sealed with it, and a software fallback would put the
// card KEK in this process.
func (m *Module) adapt(c *conn) error {
	mechs, err := c.p.GetMechanismList(c.slot)
	if err != nil {
		return describe("C_GetMechanismList", err)
	}
	c.listed = map[uint]bool{}
	for _, mech := range mechs {
		c.listed[mech.Mechanism] = true
	}
	if !c.listed[pkcs11.CKM_AES_GCM] {
		return fmt.Errorf("hsm: the %s does not offer CKM_AES_GCM, which seals every card record; cardvault does not run without it (docs/hsm.md)", m.cfg.selector())
	}
	forced := func(key string) (string, bool) { v, ok := m.forced[key]; return v, ok }

	if v, ok := forced("gcm-iv"); ok {
		c.gcmIV = v
	} else if c.gcmIV, err = c.probeGCMIV(); err != nil {
		return err
	}
	c.rawRSA = c.listed[pkcs11.CKM_RSA_X_509]
	if v, ok := forced("raw-rsa"); ok {
		c.rawRSA = v == "yes"
	}
	c.kcvECB = !c.listed[pkcs11.CKM_AES_CMAC]
	if v, ok := forced("kcv"); ok {
		c.kcvECB = v == "ecb"
	}
	switch {
	case c.listed[pkcs11.CKM_AES_KEY_WRAP_PAD]:
		c.wrapMech = pkcs11.CKM_AES_KEY_WRAP_PAD
	case c.listed[pkcs11.CKM_AES_KEY_WRAP]:
		c.wrapMech = pkcs11.CKM_AES_KEY_WRAP
	}
	if v, ok := forced("wrap"); ok {
		c.wrapMech = map[string]uint{"pad": pkcs11.CKM_AES_KEY_WRAP_PAD, "plain": pkcs11.CKM_AES_KEY_WRAP, "none": 0}[v]
	}
	if c.wrapMech != 0 {
		enforced, err := c.probeTrustedWrap()
		if err != nil {
			return err
		}
		c.untrustedWrap = !enforced
	}
	if v, ok := forced("oaep-sha256"); ok {
		m.oaepSHA256.Store(int32(slices.Index(oaepNames, v)))
	}
	return nil
}

// probeOAEP tries RSA-OAEP with SHA-256 on the active set_pin key, once,
// with a ciphertext of a random value made here: the trial decrypts
// nothing a client sent. Without a set_pin key the first use decides.
func (m *Module) probeOAEP(c *conn) error {
	if m.oaepSHA256.Load() != oaepUntried {
		return nil
	}
	v, err := c.activeVersion(SetPIN)
	if err != nil {
		return nil // no set_pin key yet
	}
	var pub *rsa.PublicKey
	if err := c.withSession(func(sh pkcs11.SessionHandle) error {
		var err error
		pub, err = c.publicKey(sh, Label(SetPIN, v))
		return err
	}); err != nil {
		return err
	}
	secret := make([]byte, 32)
	if _, err := rand.Read(secret); err != nil {
		return err
	}
	ct, err := rsa.EncryptOAEP(sha256.New(), rand.Reader, pub, secret, nil)
	if err != nil {
		return err
	}
	got, err := m.decryptOAEP(c, Label(SetPIN, v), OAEPSHA256, ct)
	switch {
	case errors.Is(err, ErrNoOAEPSHA256):
		return nil // recorded as none
	case err != nil:
		return err
	case !bytes.Equal(got, secret):
		return fmt.Errorf("hsm: the token's RSA-OAEP-SHA256 trial decrypted to another value")
	}
	return nil
}

// probeGCMIV seals a block under a session key with a random IV and
// compares the IV the token reports having used. A token that refuses the
// IV is tried again with a zeroed buffer, which it must fill.
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
		used, err := c.probeSeal(sh, key, iv)
		switch {
		case errors.Is(err, pkcs11.Error(pkcs11.CKR_MECHANISM_PARAM_INVALID)):
			mode = "refused"
			if used, err = c.probeSeal(sh, key, make([]byte, gcmIVLen)); err != nil {
				return describe("AES_GCM probe with a zeroed IV", err)
			}
			if !slices.ContainsFunc(used, func(b byte) bool { return b != 0 }) {
				return errors.New("hsm: the token refuses a caller's GCM IV and leaves a zeroed one unfilled; it cannot seal records")
			}
		case err != nil:
			return describe("AES_GCM probe", err)
		case bytes.Equal(used, iv):
			mode = "honoured"
		default:
			mode = "overwritten"
		}
		return nil
	})
	return mode, err
}

// probeSeal seals a block under the probe key with the IV offered and
// returns the IV the token reports.
func (c *conn) probeSeal(sh pkcs11.SessionHandle, key pkcs11.ObjectHandle, iv []byte) ([]byte, error) {
	params := pkcs11.NewGCMParams(bytes.Clone(iv), nil, gcmTagLen*8)
	defer params.Free()
	if err := c.p.EncryptInit(sh, []*pkcs11.Mechanism{pkcs11.NewMechanism(pkcs11.CKM_AES_GCM, params)}, key); err != nil {
		return nil, err
	}
	if _, err := c.p.Encrypt(sh, make([]byte, 16)); err != nil {
		return nil, err
	}
	return params.IV(), nil
}

// Limitations are what the token's profile stops the vault doing, for
// /readyz to name; the vault still serves everything else.
func (m *Module) Limitations() []string {
	if m.oaepSHA256.Load() == oaepNone {
		return []string{"Solaris PIN updates (RSA-OAEP-256 JWEs) answer 503: " + ErrNoOAEPSHA256.Msg}
	}
	return nil
}
