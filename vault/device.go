package vault

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/sha256"
	"encoding/hex"
	"time"

	"golang.org/x/crypto/cryptobyte"
	"golang.org/x/crypto/cryptobyte/asn1"
)

// DeviceStatus is where a device is in binding.
type DeviceStatus string

// Device statuses. A device reveals nothing until VERIFIED; a DELETED
// device stays in the database so its audit trail and refusals stay
// explainable.
const (
	DevicePending  DeviceStatus = "PENDING"
	DeviceVerified DeviceStatus = "VERIFIED"
	DeviceDeleted  DeviceStatus = "DELETED"
)

// KeyPurpose is what a device key may sign. The unrestricted key binds the
// device and signs secure-view requests; the restricted key signs PIN
// changes.
type KeyPurpose string

// Key purposes (Solaris's names).
const (
	KeyUnrestricted KeyPurpose = "unrestricted"
	KeyRestricted   KeyPurpose = "restricted"
)

// ParseKeyPurpose checks a key purpose against the allow-list.
func ParseKeyPurpose(s string) (KeyPurpose, bool) {
	switch p := KeyPurpose(s); p {
	case KeyUnrestricted, KeyRestricted:
		return p, true
	}
	return "", false
}

// KeyTypeP256 is the one device key type: ECDSA on P-256 with SHA-256.
const KeyTypeP256 = "ecdsa-p256"

// MaxDevicesPerPerson bounds the devices a person may have bound or
// pending at once.
const MaxDevicesPerPerson = 5

// ChallengeTTL is how long a binding challenge can be answered.
const ChallengeTTL = 5 * time.Minute

// Device is a person's bound (or binding) device and its public keys, each
// the 65-byte uncompressed P-256 point, or nil when absent.
type Device struct {
	ID              string
	PersonID        string
	Name            string
	Status          DeviceStatus
	UnrestrictedKey []byte
	RestrictedKey   []byte
	CreatedAt       time.Time
	VerifiedAt      *time.Time
	DeletedAt       *time.Time
}

// Key returns the device's key for a purpose, or nil.
func (d *Device) Key(p KeyPurpose) []byte {
	if p == KeyRestricted {
		return d.RestrictedKey
	}
	return d.UnrestrictedKey
}

// Challenge is a binding challenge: the device proves it holds the key it
// registered by signing StringToSign.
type Challenge struct {
	ID           string
	DeviceID     string
	Purpose      KeyPurpose // the key that must sign
	StringToSign string
	CreatedAt    time.Time
	ExpiresAt    time.Time
	UsedAt       *time.Time
}

// parseDeviceKey checks the hex of an uncompressed P-256 point (04‖X‖Y)
// and returns its bytes.
func parseDeviceKey(field, text string) ([]byte, error) {
	b, err := hex.DecodeString(text)
	if err != nil || len(b) != 65 || b[0] != 0x04 {
		return nil, Invalid(field, "must be hex of an uncompressed P-256 point (04, X, Y: 130 hex digits)")
	}
	if _, err := ecdsa.ParseUncompressedPublicKey(elliptic.P256(), b); err != nil {
		return nil, Invalid(field, "is not a point on P-256")
	}
	return b, nil
}

// maxSignatureDER is the longest DER ECDSA P-256 signature: two 33-byte
// INTEGERs with their headers inside a SEQUENCE.
const maxSignatureDER = 72

// DecodeSignature decodes hex (either case) of an ASN.1 DER ECDSA P-256
// signature: a SEQUENCE of two positive, minimally encoded INTEGERs of at
// most 256 bits, and nothing after it. Its verification is separate, so a
// malformed signature is a named 400 and a wrong one an opaque 403.
func DecodeSignature(field, text string) ([]byte, error) {
	const msg = "must be hex of a DER-encoded ECDSA P-256 signature"
	if text == "" {
		return nil, Invalid(field, "is required")
	}
	if len(text) > 2*maxSignatureDER {
		return nil, Invalid(field, msg)
	}
	der, err := hex.DecodeString(text)
	if err != nil {
		return nil, Invalid(field, msg)
	}
	input := cryptobyte.String(der)
	var seq, r, s cryptobyte.String
	if !input.ReadASN1(&seq, asn1.SEQUENCE) || !input.Empty() ||
		!seq.ReadASN1(&r, asn1.INTEGER) || !seq.ReadASN1(&s, asn1.INTEGER) || !seq.Empty() ||
		!positiveScalar(r) || !positiveScalar(s) {
		return nil, Invalid(field, msg)
	}
	return der, nil
}

// positiveScalar checks a DER INTEGER's content: minimal, positive, and
// no longer than a P-256 scalar.
func positiveScalar(b []byte) bool {
	switch {
	case len(b) == 0 || len(b) > 33:
		return false
	case b[0]&0x80 != 0: // negative
		return false
	case len(b) > 1 && b[0] == 0 && b[1]&0x80 == 0: // not minimal
		return false
	case len(b) == 33 && b[0] != 0:
		return false
	}
	for _, c := range b {
		if c != 0 {
			return true
		}
	}
	return false // zero
}

// verifySignature checks a DER ECDSA P-256/SHA-256 signature over msg by
// the device key point.
func verifySignature(point, msg, der []byte) bool {
	pub, err := ecdsa.ParseUncompressedPublicKey(elliptic.P256(), point)
	if err != nil {
		return false
	}
	digest := sha256.Sum256(msg)
	return ecdsa.VerifyASN1(pub, digest[:], der)
}
