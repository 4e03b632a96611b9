package vault

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"

	"github.com/cardvault/cardvault/internal/clienttext"
	"github.com/cardvault/cardvault/jwe"
)

// SecureViewRequest is a bound device asking to see a card: Solaris's
// virtual card request.
type SecureViewRequest struct {
	CardID     string
	DeviceID   string
	Signature  string // hex DER, by the device's unrestricted key over the JWK's signed string
	JWK        []byte // the jwk member as received
	Alg        string // jwe[alg], Solaris's name
	Enc        string // jwe[enc], Solaris's name
	DeviceData string
}

// validate checks everything that needs no lookup and returns the parsed
// parts.
func (in *SecureViewRequest) validate() (*DeviceJWK, []byte, jwe.KeyAlg, jwe.ContentEnc, error) {
	if in.DeviceID == "" {
		return nil, nil, "", "", Invalid("device_id", "is required")
	}
	if !idPattern.MatchString(in.DeviceID) {
		return nil, nil, "", "", Invalid("device_id", "must be 1 to 64 letters, digits, '-' or '_'")
	}
	sig, err := DecodeSignature("signature", in.Signature)
	if err != nil {
		return nil, nil, "", "", err
	}
	if len(in.JWK) == 0 {
		return nil, nil, "", "", Invalid("jwk", "is required")
	}
	key, err := ParseDeviceJWK(in.JWK)
	if err != nil {
		return nil, nil, "", "", err
	}
	alg, ok := jwe.ParseKeyAlg(in.Alg)
	if !ok {
		return nil, nil, "", "", Invalid("jwe[alg]", "must be one of "+joinNames(jwe.KeyAlgs))
	}
	enc, ok := jwe.ParseContentEnc(in.Enc)
	if !ok {
		return nil, nil, "", "", Invalid("jwe[enc]", "must be one of "+joinNames(jwe.ContentEncs))
	}
	if err := validateDeviceData(in.DeviceData); err != nil {
		return nil, nil, "", "", err
	}
	return key, sig, alg, enc, nil
}

func joinNames[T ~string](names []T) string {
	s := make([]string, len(names))
	for i, n := range names {
		s[i] = string(n)
	}
	return strings.Join(s, ", ")
}

// auditDetail is what the trail keeps of a request: the device, its
// fingerprint string and the algorithms, each only once validated, so a
// refusal never stores arbitrary client text.
func (in *SecureViewRequest) auditDetail() map[string]string {
	d := map[string]string{}
	if in.DeviceID != "" {
		// The device's own id replaces this once it is found.
		d["device_id"] = clienttext.ID(in.DeviceID)
	}
	if validateDeviceData(in.DeviceData) == nil && in.DeviceData != "" {
		d["device_data"] = in.DeviceData
	}
	if a, ok := jwe.ParseKeyAlg(in.Alg); ok {
		d["alg"] = string(a)
	}
	if e, ok := jwe.ParseContentEnc(in.Enc); ok {
		d["enc"] = string(e)
	}
	return d
}

// SecureView is the Solaris reveal path. It verifies the device's
// signature over the fresh JWK, checks that the device's person owns the
// card and that the budgets allow it, opens the sealed record once, and
// returns the card details as a compact JWE to the JWK. The JWK is burnt:
// the same signed key never receives card data again, for this card or
// any other.
func (s *Service) SecureView(ctx context.Context, c Caller, in SecureViewRequest, idem *IdemKey) (string, error) {
	return idempotently(ctx, s, idem, func() (string, error) {
		return s.viewOnDevice(ctx, c, in, idem, cardDetailsView(s))
	})
}

// deviceView is what a device-signed view shows: its audited action, what
// the card must have beyond being revealable, and the JWE's plaintext,
// which the caller clears.
type deviceView struct {
	action  string
	ready   func(*Card) error
	payload func(context.Context, *Card) ([]byte, error)
}

// cardDetailsView is the secure view's: the card details.
func cardDetailsView(s *Service) deviceView {
	return deviceView{
		action: "card.secure_view",
		ready:  func(*Card) error { return nil },
		payload: func(ctx context.Context, card *Card) ([]byte, error) {
			rec, err := s.openRecord(ctx, card)
			if err != nil {
				return nil, err
			}
			defer rec.clear()
			payload, err := secureViewPayload(rec)
			if err != nil {
				return nil, Internal(err)
			}
			return payload, nil
		},
	}
}

// viewOnDevice audits what view refuses; see viewOnDeviceOnce.
func (s *Service) viewOnDevice(ctx context.Context, c Caller, in SecureViewRequest, idem *IdemKey, view deviceView) (string, error) {
	detail := in.auditDetail()
	out, ownerID, err := s.viewOnDeviceOnce(ctx, c, in, idem, detail, view)
	if err != nil {
		return "", s.refuseWith(ctx, c, view.action, in.CardID, ownerID, detail, err)
	}
	return out, nil
}

// viewOnDeviceOnce does the work of a device-signed view. It returns the
// card owner's id once known, for the audit trail.
func (s *Service) viewOnDeviceOnce(ctx context.Context, c Caller, in SecureViewRequest, idem *IdemKey, detail map[string]string, view deviceView) (string, string, error) {
	jwk, sig, alg, enc, err := in.validate()
	if err != nil {
		return "", "", err
	}
	d, err := s.requestingDevice(ctx, in.DeviceID)
	if err != nil {
		return "", "", err
	}
	detail["device_id"] = d.ID
	if d.Status != DeviceVerified {
		return "", d.PersonID, errUnverified("device_id")
	}
	if d.UnrestrictedKey == nil || !verifySignature(d.UnrestrictedKey, []byte(jwk.SignedString), sig) {
		return "", d.PersonID, errSignature
	}
	// Another person's card answers exactly as a card that does not exist.
	card, err := s.store.Card(ctx, d.PersonID, in.CardID)
	if err != nil {
		return "", d.PersonID, err
	}
	if err := revealable(card, "id"); err != nil {
		return "", d.PersonID, err
	}
	if err := view.ready(card); err != nil {
		return "", d.PersonID, err
	}
	slot := s.slot(BudgetReveal, card.ID, d.ID, c)
	if err := s.checkBudget(ctx, slot); err != nil {
		return "", d.PersonID, err
	}
	out, err := s.encryptToDevice(ctx, card, jwk, alg, enc, view.payload)
	if err != nil {
		return "", d.PersonID, err
	}
	w := Write{
		Audit:   s.audit(c, view.action, card.ID, d.PersonID, "ok", detail),
		UsedKey: jwk.Fingerprint,
		Slot:    slot,
		Reveal:  s.revealCheck(card, "id", false),
	}
	if w.Idempotent, err = s.idempotent(ctx, idem, card.ID, out); err != nil {
		return "", d.PersonID, err
	}
	if err := s.store.Commit(ctx, w); err != nil {
		if e := new(Error); errors.As(err, &e) && e.Kind == KindConflict && e.Field == "public_key" {
			// The burnt key; name it as the request does.
			err = Conflict("jwk", "key has received card data before; send a fresh key")
		}
		return "", d.PersonID, err
	}
	return out, d.PersonID, nil
}

// encryptToDevice encrypts a view's plaintext to the device JWK, and
// clears the plaintext.
func (s *Service) encryptToDevice(ctx context.Context, card *Card, jwk *DeviceJWK, alg jwe.KeyAlg, enc jwe.ContentEnc, payload func(context.Context, *Card) ([]byte, error)) (string, error) {
	plain, err := payload(ctx, card)
	if err != nil {
		return "", err
	}
	defer clear(plain)
	out, err := jwe.Encrypt(jwe.Recipient{Key: jwk.Public, KeyID: jwk.KeyID, HasKeyID: jwk.HasKeyID}, alg, enc, plain)
	if err != nil {
		return "", Internal(err)
	}
	return out, nil
}

// secureViewPayload is the JWE plaintext {"pan","cvc","expires_at",
// "line_1"}, built in one buffer the caller clears. expires_at is the last
// day of the expiry month.
func secureViewPayload(rec *secretRecord) ([]byte, error) {
	name, err := json.Marshal(string(rec.Name))
	if err != nil {
		return nil, err
	}
	last := lastDayOfMonth(rec.ExpiryMonth, rec.ExpiryYear)
	out := make([]byte, 0, 96+len(rec.PAN)+len(rec.CVV)+len(name))
	out = append(out, `{"pan":"`...)
	out = append(out, rec.PAN...)
	out = append(out, `","cvc":"`...)
	out = append(out, rec.CVV...)
	out = append(out, `","expires_at":"`...)
	out = fmt.Appendf(out, "%04d-%02d-%02d", last.Year(), last.Month(), last.Day())
	out = append(out, `","line_1":`...)
	out = append(out, name...)
	out = append(out, '}')
	return out, nil
}
