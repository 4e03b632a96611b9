package hsm

import (
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"fmt"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/miekg/pkcs11"
)

// Purpose names what a key is for. Together with a version it forms the
// key's label, "purpose/vN", which is how the adapter finds keys.
type Purpose string

// The purposes of docs/design.md's key table.
const (
	CardKEK Purpose = "card-kek" // AES-256-GCM seal/open of card records
	PANHMAC Purpose = "pan-hmac" // HMAC-SHA256 PAN fingerprints
	SetPIN  Purpose = "set-pin"  // RSA-4096 pair clients encrypt PINs to
	PEK     Purpose = "pek"      // AES-256 PIN encryption key, ISO 9564 format 4
	Audit   Purpose = "audit"    // HMAC-SHA256 audit chain checkpoints
	// ZonePIN is a zone PIN key shared with an acquirer or a network:
	// AES-256, ISO 9564 format 4 PIN blocks the vault only deciphers.
	ZonePIN Purpose = "zpk"
)

// Purposes lists every purpose the vault makes, in the order a ceremony
// creates them; a server needs each.
var Purposes = []Purpose{CardKEK, PANHMAC, SetPIN, PEK, Audit}

// ImportedPurposes are the purposes whose keys come from outside, formed
// from custodian components or a TR-31 key block, and never generated:
// a zone key is worth only what the other side of the zone also holds.
var ImportedPurposes = []Purpose{ZonePIN}

// allPurposes is every purpose a label may name.
func allPurposes() []Purpose { return append(append([]Purpose{}, Purposes...), ImportedPurposes...) }

// Imported says whether the purpose's keys are imported, never generated.
func (p Purpose) Imported() bool { return p == ZonePIN }

// Kind is the key type behind a purpose.
type Kind string

// Key kinds.
const (
	KindAES  Kind = "AES-256"
	KindHMAC Kind = "HMAC-SHA256"
	KindRSA  Kind = "RSA-4096"
)

// Kind returns the key type a purpose uses.
func (p Purpose) Kind() Kind {
	switch p {
	case CardKEK, PEK, ZonePIN:
		return KindAES
	case PANHMAC, Audit:
		return KindHMAC
	case SetPIN:
		return KindRSA
	}
	return ""
}

// ParsePurpose validates a purpose name against the allow-list.
func ParsePurpose(s string) (Purpose, error) {
	for _, p := range allPurposes() {
		if string(p) == s {
			return p, nil
		}
	}
	return "", fmt.Errorf("unknown key purpose %q (want one of %s)", s, purposeNames())
}

func purposeNames() string {
	all := allPurposes()
	names := make([]string, len(all))
	for i, p := range all {
		names[i] = string(p)
	}
	return strings.Join(names, ", ")
}

// Label is the CKA_LABEL of a purpose's version.
func Label(p Purpose, version uint32) string {
	return fmt.Sprintf("%s/v%d", p, version)
}

// parseLabel is the inverse of Label; ok is false for labels the vault did
// not make.
func parseLabel(label string) (p Purpose, version uint32, ok bool) {
	name, v, found := strings.Cut(label, "/v")
	if !found {
		return "", 0, false
	}
	purpose, err := ParsePurpose(name)
	if err != nil {
		return "", 0, false
	}
	n, err := strconv.ParseUint(v, 10, 32)
	if err != nil || n == 0 || strconv.FormatUint(n, 10) != v {
		return "", 0, false
	}
	return purpose, uint32(n), true
}

// KeyInfo describes one key object in the token. It carries no key material.
type KeyInfo struct {
	Label       string
	Purpose     Purpose
	Version     uint32
	Kind        Kind
	Class       string // "secret", "private", "public"
	Sensitive   bool
	Extractable bool
	// WrapWithTrusted means the key can leave only wrapped under a key
	// the security officer marked trusted.
	WrapWithTrusted bool
	Usages          []string // the CKA_ usage flags that are true
	// Modifiable and Copyable are CKA_MODIFIABLE and CKA_COPYABLE; Local
	// is CKA_LOCAL, which only the token sets, on keys it generated.
	Modifiable, Copyable, Local bool
	// Check is the KCV of a secret key or "sha256:" and the SPKI
	// fingerprint of either half of a key pair, computed from this very
	// object; empty when it cannot be computed.
	Check string
	// Digest is the full-length check (catalog records compare it).
	Digest string
	// Rejected says why the server will not use the object, when a key
	// catalog is pinned and the object does not match its record.
	Rejected string
	Active   bool // the highest usable version of its purpose
	// EndDate is a public half's CKA_END_DATE, the last day (UTC) clients
	// may encrypt to it, or zero when none is set.
	EndDate time.Time
}

// usageAttrs are the usage flags the catalog reports.
var usageAttrs = []struct {
	attr uint
	name string
}{
	{pkcs11.CKA_ENCRYPT, "encrypt"},
	{pkcs11.CKA_DECRYPT, "decrypt"},
	{pkcs11.CKA_SIGN, "sign"},
	{pkcs11.CKA_VERIFY, "verify"},
	{pkcs11.CKA_WRAP, "wrap"},
	{pkcs11.CKA_UNWRAP, "unwrap"},
	{pkcs11.CKA_DERIVE, "derive"},
}

// listKeys reads every object whose label follows the vault's scheme.
func (c *conn) listKeys() ([]KeyInfo, error) {
	var out []KeyInfo
	err := c.withSession(func(sh pkcs11.SessionHandle) error {
		handles, err := c.findObjects(sh, nil)
		if err != nil {
			return err
		}
		for _, h := range handles {
			info, ok, err := c.describeObject(sh, h)
			if err != nil {
				return err
			}
			if ok {
				out = append(out, info)
			}
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].Purpose != out[j].Purpose {
			return purposeIndex(out[i].Purpose) < purposeIndex(out[j].Purpose)
		}
		if out[i].Version != out[j].Version {
			return out[i].Version < out[j].Version
		}
		return out[i].Class < out[j].Class
	})
	return out, nil
}

func purposeIndex(p Purpose) int {
	all := allPurposes()
	for i, q := range all {
		if p == q {
			return i
		}
	}
	return len(all)
}

func (c *conn) describeObject(sh pkcs11.SessionHandle, h pkcs11.ObjectHandle) (KeyInfo, bool, error) {
	attrs, err := c.p.GetAttributeValue(sh, h, []*pkcs11.Attribute{
		pkcs11.NewAttribute(pkcs11.CKA_LABEL, nil),
		pkcs11.NewAttribute(pkcs11.CKA_CLASS, nil),
	})
	if err != nil {
		return KeyInfo{}, false, describe("C_GetAttributeValue", err)
	}
	purpose, version, ok := parseLabel(string(attrs[0].Value))
	if !ok {
		return KeyInfo{}, false, nil
	}
	info := KeyInfo{Label: string(attrs[0].Value), Purpose: purpose, Version: version, Kind: purpose.Kind()}
	switch bytesToUint(attrs[1].Value) {
	case pkcs11.CKO_SECRET_KEY:
		info.Class = "secret"
	case pkcs11.CKO_PRIVATE_KEY:
		info.Class = "private"
	case pkcs11.CKO_PUBLIC_KEY:
		info.Class = "public"
	default:
		return KeyInfo{}, false, nil
	}
	if info.Class == "public" {
		if info.EndDate, err = c.endDate(sh, h); err != nil {
			return KeyInfo{}, false, err
		}
	}
	info.Modifiable = c.boolAttr(sh, h, pkcs11.CKA_MODIFIABLE)
	info.Copyable = c.boolAttr(sh, h, pkcs11.CKA_COPYABLE)
	info.Local = c.boolAttr(sh, h, pkcs11.CKA_LOCAL)
	info.Check, info.Digest = c.objectCheck(sh, h, info)
	info.Sensitive = c.boolAttr(sh, h, pkcs11.CKA_SENSITIVE)
	info.Extractable = c.boolAttr(sh, h, pkcs11.CKA_EXTRACTABLE)
	info.WrapWithTrusted = c.boolAttr(sh, h, pkcs11.CKA_WRAP_WITH_TRUSTED)
	for _, u := range usageAttrs {
		if c.boolAttr(sh, h, u.attr) {
			info.Usages = append(info.Usages, u.name)
		}
	}
	return info, true, nil
}

// ecbDigestBlock is what the full-length digest of a key checked by
// AES-ECB encrypts: not zero (that would be H), and ending in a zero
// counter, which GCM with a 96-bit IV never encrypts.
var ecbDigestBlock = []byte("cardvault-kc\x00\x00\x00\x00")

// objectCheck computes an object's check value and full-length digest
// from its own handle, so that a second object under a label can never
// lend it its check. A key whose usages were narrowed so the check cannot
// run has none.
func (c *conn) objectCheck(sh pkcs11.SessionHandle, h pkcs11.ObjectHandle, info KeyInfo) (check, digest string) {
	if info.Class == "secret" {
		method, ok := c.kcvMethod(info.Kind)
		if !ok {
			return "", ""
		}
		sum, err := c.checkBlock(sh, h, method.mech, make([]byte, 16))
		if err != nil || len(sum) < 16 {
			return "", ""
		}
		check = "KCV " + CheckValue{fmt.Sprintf("%X", sum[:3]), method.name}.String()
		if method.mech != pkcs11.CKM_AES_ECB {
			return check, fmt.Sprintf("%x", sum)
		}
		// The full ECB encryption of the zero block is a GCM key's
		// hash key H, which a catalog copy must not hold: the digest
		// encrypts a block no GCM use of the key ever encrypts (a
		// counter of zero under a 96-bit IV).
		sum, err = c.checkBlock(sh, h, method.mech, ecbDigestBlock)
		if err != nil || len(sum) < 16 {
			return "", ""
		}
		return check, "ecb:" + fmt.Sprintf("%x", sum)
	}
	pub, err := c.rsaPublicOf(sh, h, info.Label)
	if err != nil {
		return "", ""
	}
	fp, err := PublicKeyFingerprint(pub)
	if err != nil {
		return "", ""
	}
	return "sha256:" + fp, fp
}

// boolAttr reads one boolean attribute; an attribute the object type does
// not have reads as false.
func (c *conn) boolAttr(sh pkcs11.SessionHandle, h pkcs11.ObjectHandle, attr uint) bool {
	attrs, err := c.p.GetAttributeValue(sh, h, []*pkcs11.Attribute{pkcs11.NewAttribute(attr, nil)})
	if err != nil || len(attrs) == 0 || len(attrs[0].Value) == 0 {
		return false
	}
	return attrs[0].Value[0] != 0
}

func bytesToUint(b []byte) uint {
	var n uint
	for i := len(b) - 1; i >= 0; i-- { // PKCS#11 CK_ULONG is host order, little-endian here
		n = n<<8 | uint(b[i])
	}
	return n
}

// findObjects returns every object matching the template.
func (c *conn) findObjects(sh pkcs11.SessionHandle, template []*pkcs11.Attribute) ([]pkcs11.ObjectHandle, error) {
	if err := c.p.FindObjectsInit(sh, template); err != nil {
		return nil, describe("C_FindObjectsInit", err)
	}
	var all []pkcs11.ObjectHandle
	for {
		hs, _, err := c.p.FindObjects(sh, 64)
		if err != nil {
			_ = c.p.FindObjectsFinal(sh)
			return nil, describe("C_FindObjects", err)
		}
		all = append(all, hs...)
		if len(hs) < 64 {
			break
		}
	}
	if err := c.p.FindObjectsFinal(sh); err != nil {
		return nil, describe("C_FindObjectsFinal", err)
	}
	return all, nil
}

// PublicKeyFingerprint is the SHA-256 of the DER SubjectPublicKeyInfo, in
// hex: the figure a transcript records for an RSA key.
func PublicKeyFingerprint(pub any) (string, error) {
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		return "", fmt.Errorf("marshal public key: %w", err)
	}
	sum := sha256.Sum256(der)
	return hex.EncodeToString(sum[:]), nil
}
