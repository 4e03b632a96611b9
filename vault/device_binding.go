package vault

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"regexp"

	"github.com/google/uuid"
)

// RegisterDeviceRequest is a device asking to be bound to a person.
type RegisterDeviceRequest struct {
	PersonID      string
	KeyType       string
	Key           string // hex of the uncompressed P-256 point
	KeyPurpose    string
	ChallengeType string
	Name          string
	DeviceData    string
}

// maxDeviceData bounds the opaque device fingerprint kept in the audit
// trail; the provider's example is about 4 KiB.
const maxDeviceData = 8192

var idPattern = regexp.MustCompile(`^[A-Za-z0-9_-]{1,64}$`)

func validateDeviceData(s string) error {
	if len(s) > maxDeviceData {
		return Invalid("device_data", fmt.Sprintf("must be at most %d characters", maxDeviceData))
	}
	if !printableASCII(s) {
		return Invalid("device_data", "must be printable ASCII")
	}
	return nil
}

// errSignature is the one answer for a signature that does not verify,
// whatever the reason: another device's key, another message, a forgery.
var errSignature = &Error{Kind: KindForbidden, Field: "signature", Msg: "does not verify"}

// RegisterDevice records a pending device and issues the challenge its key
// must sign. The challenge's string is given to the authenticated caller,
// who delivers it to the device.
func (s *Service) RegisterDevice(ctx context.Context, c Caller, in RegisterDeviceRequest) (*Device, *Challenge, error) {
	if err := ValidateOwnerID("person_id", in.PersonID); err != nil {
		return nil, nil, err
	}
	if in.KeyType != KeyTypeP256 {
		return nil, nil, Invalid("key_type", "must be "+KeyTypeP256)
	}
	key, err := parseDeviceKey("key", in.Key)
	if err != nil {
		return nil, nil, err
	}
	purpose, ok := ParseKeyPurpose(in.KeyPurpose)
	if !ok {
		return nil, nil, Invalid("key_purpose", "must be unrestricted or restricted")
	}
	if in.ChallengeType != "" && in.ChallengeType != "signature" {
		return nil, nil, Invalid("challenge_type", "must be signature")
	}
	if err := validateName("name", in.Name); err != nil {
		return nil, nil, err
	}
	if err := validateDeviceData(in.DeviceData); err != nil {
		return nil, nil, err
	}
	deviceID, err := uuid.NewV7()
	if err != nil {
		return nil, nil, Internal(err)
	}
	now := s.cfg.Now().UTC()
	d := &Device{ID: deviceID.String(), PersonID: in.PersonID, Name: in.Name, Status: DevicePending, CreatedAt: now}
	if purpose == KeyRestricted {
		d.RestrictedKey = key
	} else {
		d.UnrestrictedKey = key
	}
	ch, err := s.newChallenge(d.ID, purpose)
	if err != nil {
		return nil, nil, err
	}
	w := Write{Audit: s.audit(c, "device.register", "", d.PersonID, "ok",
		map[string]string{"device_id": d.ID, "key_purpose": string(purpose), "device_data": in.DeviceData})}
	if err := s.store.CreateDevice(ctx, d, ch, MaxDevicesPerPerson, w); err != nil {
		if refusedByRule(err) {
			return nil, nil, s.refuseWith(ctx, c, "device.register", "", d.PersonID, w.Audit.Detail, err)
		}
		return nil, nil, err
	}
	return d, ch, nil
}

func (s *Service) newChallenge(deviceID string, purpose KeyPurpose) (*Challenge, error) {
	id, err := uuid.NewV7()
	if err != nil {
		return nil, Internal(err)
	}
	nonce := make([]byte, 32)
	if _, err := s.cfg.Rand.Read(nonce); err != nil {
		return nil, Internal(err)
	}
	now := s.cfg.Now().UTC()
	return &Challenge{
		ID: id.String(), DeviceID: deviceID, Purpose: purpose,
		// The string names what is being signed, so a signature over it
		// means nothing anywhere else.
		StringToSign: "cardvault-device-binding:" + id.String() + ":" + base64.RawURLEncoding.EncodeToString(nonce),
		CreatedAt:    now, ExpiresAt: now.Add(ChallengeTTL),
	}, nil
}

// AnswerChallenge verifies a device: its registered key's signature over
// the challenge's string. A challenge is answered once, within its TTL.
func (s *Service) AnswerChallenge(ctx context.Context, c Caller, challengeID, signature, deviceData string) error {
	sig, err := DecodeSignature("signature", signature)
	if err != nil {
		return err
	}
	if err := validateDeviceData(deviceData); err != nil {
		return err
	}
	if !idPattern.MatchString(challengeID) {
		return ErrNotFound
	}
	ch, err := s.store.Challenge(ctx, challengeID)
	if err != nil {
		return err
	}
	d, err := s.store.Device(ctx, ch.DeviceID)
	if err != nil {
		return err
	}
	detail := map[string]string{"device_id": d.ID, "challenge_id": ch.ID, "device_data": deviceData}
	now := s.cfg.Now().UTC()
	switch {
	case ch.UsedAt != nil:
		return s.refuseWith(ctx, c, "device.verify", "", d.PersonID, detail, Conflict("id", "challenge was already answered"))
	case !now.Before(ch.ExpiresAt):
		return s.refuseWith(ctx, c, "device.verify", "", d.PersonID, detail, Conflict("id", "challenge has expired; register the device again"))
	case !verifySignature(d.Key(ch.Purpose), []byte(ch.StringToSign), sig):
		return s.refuseWith(ctx, c, "device.verify", "", d.PersonID, detail, errSignature)
	}
	w := Write{Audit: s.audit(c, "device.verify", "", d.PersonID, "ok", detail)}
	if err := s.store.AnswerChallenge(ctx, ch.ID, now, w); err != nil {
		if refusedByRule(err) {
			return s.refuseWith(ctx, c, "device.verify", "", d.PersonID, detail, err)
		}
		return err
	}
	return nil
}

// AddDeviceKeyRequest adds a device's second key, signed by its first.
type AddDeviceKeyRequest struct {
	DeviceID   string
	KeyType    string
	Key        string
	KeyPurpose string
	Signature  string // the unrestricted key's signature over Key as sent
	DeviceData string
}

// AddDeviceKey adds the restricted key to a verified device. The
// unrestricted key signs the new key's hex as sent, so only the device
// that was bound can add it.
func (s *Service) AddDeviceKey(ctx context.Context, c Caller, in AddDeviceKeyRequest) (*Device, error) {
	if in.KeyType != KeyTypeP256 {
		return nil, Invalid("key_type", "must be "+KeyTypeP256)
	}
	key, err := parseDeviceKey("key", in.Key)
	if err != nil {
		return nil, err
	}
	if in.KeyPurpose != string(KeyRestricted) {
		return nil, Invalid("key_purpose", "must be restricted; the unrestricted key is the one the device was bound with")
	}
	sig, err := DecodeSignature("signature", in.Signature)
	if err != nil {
		return nil, err
	}
	if err := validateDeviceData(in.DeviceData); err != nil {
		return nil, err
	}
	d, err := s.device(ctx, in.DeviceID)
	if err != nil {
		return nil, err
	}
	detail := map[string]string{"device_id": d.ID, "key_purpose": string(KeyRestricted), "device_data": in.DeviceData}
	switch {
	case d.Status != DeviceVerified:
		return nil, s.refuseWith(ctx, c, "device.add_key", "", d.PersonID, detail, errUnverified("id"))
	case d.UnrestrictedKey == nil || !verifySignature(d.UnrestrictedKey, []byte(in.Key), sig):
		return nil, s.refuseWith(ctx, c, "device.add_key", "", d.PersonID, detail, errSignature)
	}
	w := Write{Audit: s.audit(c, "device.add_key", "", d.PersonID, "ok", detail)}
	if err := s.store.AddDeviceKey(ctx, d.ID, KeyRestricted, key, w); err != nil {
		if refusedByRule(err) {
			return nil, s.refuseWith(ctx, c, "device.add_key", "", d.PersonID, detail, err)
		}
		return nil, err
	}
	d.RestrictedKey = key
	return d, nil
}

func errUnverified(field string) error {
	return &Error{Kind: KindForbidden, Field: field, Msg: "device is not verified"}
}

// device looks a device up by an id from a path or body.
func (s *Service) device(ctx context.Context, id string) (*Device, error) {
	if !idPattern.MatchString(id) {
		return nil, ErrNotFound
	}
	return s.store.Device(ctx, id)
}

// requestingDevice looks up the device a request names in its body: an
// absent or deleted one is a 404 naming device_id; a store fault stays a
// fault.
func (s *Service) requestingDevice(ctx context.Context, id string) (*Device, error) {
	d, err := s.device(ctx, id)
	if errors.Is(err, ErrNotFound) {
		return nil, &Error{Kind: KindNotFound, Field: "device_id", Msg: "not found"}
	}
	return d, err
}

// Device returns a device that is not deleted.
func (s *Service) Device(ctx context.Context, id string) (*Device, error) {
	return s.device(ctx, id)
}

// ListDevices returns a person's devices.
func (s *Service) ListDevices(ctx context.Context, personID string) ([]*Device, error) {
	if personID == "" {
		return nil, Invalid("person_id", "is required")
	}
	if err := ValidateOwnerID("person_id", personID); err != nil {
		return nil, err
	}
	return s.store.ListDevices(ctx, personID, s.cfg.Now().UTC())
}

// DeleteDevice unbinds a device: from then on it can reveal nothing, and
// signatures it made before are worthless.
func (s *Service) DeleteDevice(ctx context.Context, c Caller, id string) error {
	d, err := s.device(ctx, id)
	if err != nil {
		return err
	}
	w := Write{Audit: s.audit(c, "device.delete", "", d.PersonID, "ok", map[string]string{"device_id": d.ID})}
	err = s.store.DeleteDevice(ctx, d.ID, s.cfg.Now().UTC(), w)
	if errors.Is(err, ErrNotFound) {
		return ErrNotFound
	}
	return err
}
