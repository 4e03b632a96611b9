package vault

import (
	"context"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"slices"

	"github.com/cardvault/cardvault/jwe"
)

// errPIN is the one answer to every encrypted PIN that cannot be used:
// wrong length, bad padding, a failed JWE, non-digits or a weak PIN. Its
// path through the HSM is the same as a good PIN's (see setPIN).
var errPIN = Invalid("encrypted_pin", "could not be decrypted to an acceptable 4-digit PIN")

// SetPINKeyID names a set_pin version as a JWK kid.
func SetPINKeyID(version uint32) string { return fmt.Sprintf("set-pin-v%d", version) }

// parseSetPINKeyID reads a kid made by SetPINKeyID.
func parseSetPINKeyID(kid string) (uint32, bool) {
	var v uint32
	if _, err := fmt.Sscanf(kid, "set-pin-v%d", &v); err != nil || v == 0 || SetPINKeyID(v) != kid {
		return 0, false
	}
	return v, true
}

// SetPINKey returns the active set_pin public key and its kid.
func (s *Service) SetPINKey(ctx context.Context) (*PublicSetPINKey, error) {
	pub, v, err := s.keys.SetPINPublicKey(ctx, 0)
	if err != nil {
		return nil, err
	}
	return &PublicSetPINKey{Key: pub, KeyID: SetPINKeyID(v)}, nil
}

// setPINVersions returns the set_pin versions a PIN may be encrypted under
// now: the active one first, then the previous one through the end date
// its rotation set (a grace period for clients holding the key published
// before). A previous version with no end date is not accepted: grace is
// granted by the ceremony, never assumed.
func (s *Service) setPINVersions(ctx context.Context) ([]uint32, error) {
	active, prev, lastDay, err := s.keys.SetPINVersions(ctx)
	if err != nil {
		return nil, err
	}
	if prev != 0 && !lastDay.IsZero() && s.cfg.Now().Before(lastDay.AddDate(0, 0, 1)) {
		return []uint32{active, prev}, nil
	}
	return []uint32{active}, nil
}

// pinCiphertext is an encrypted PIN as it reaches the one PIN path: a
// PKCS#1 v1.5 RSA ciphertext (Jiko) or a compact JWE (Solaris), and the
// set_pin versions to try it under. The versions depend only on the key
// schedule, never on the ciphertext, so neither does the HSM call
// sequence.
type pinCiphertext struct {
	versions []uint32 // active first
	rsa      []byte   // Jiko: RSAES-PKCS1-v1_5 ciphertext, as decoded
	jwe      string   // Solaris: compact JWE
	// burn is the digest of a request that may be accepted only once,
	// committed with the attempt whatever its outcome.
	burn []byte
}

// SetPINJiko is Jiko's set-PIN path: a PKCS#1 v1.5 ciphertext under the
// published set_pin key, of a 4-digit PIN with an optional newline. The
// HTTP edge decodes its base64; a ciphertext that could not be decoded
// arrives empty and is refused as every unusable ciphertext is. Jiko
// names no key, so during a rotation's grace period the ciphertext is
// tried under both versions.
func (s *Service) SetPINJiko(ctx context.Context, c Caller, ownerID, cardID string, ct []byte) error {
	if err := ValidateOwnerID("account_id", ownerID); err != nil {
		return err
	}
	card, err := s.store.Card(ctx, ownerID, cardID)
	if err != nil {
		return err
	}
	if err := s.deviceGate(ctx, card); err != nil {
		return s.refuse(ctx, c, "card.pin", card.ID, ownerID, err)
	}
	versions, err := s.setPINVersions(ctx)
	if err != nil {
		return err
	}
	return s.setPIN(ctx, c, card, "", pinCiphertext{versions: versions, rsa: ct}, nil)
}

// SetPINSolarisRequest is Solaris's PIN update request.
type SetPINSolarisRequest struct {
	CardID       string
	DeviceID     string
	EncryptedPIN string // compact JWE, RSA-OAEP-256 + A256CBC-HS512, kid
	KeyID        string
	Signature    string // the restricted device key's, over EncryptedPIN
}

// SetPINSolaris is Solaris's set-PIN path: the device's restricted key
// signs the JWE, whose kid names the set_pin version: the active one, or
// the previous one during its grace period.
func (s *Service) SetPINSolaris(ctx context.Context, c Caller, in SetPINSolarisRequest) error {
	if in.EncryptedPIN == "" {
		return Invalid("encrypted_pin", "is required")
	}
	sig, err := DecodeSignature("signature", in.Signature)
	if err != nil {
		return err
	}
	d, err := s.requestingDevice(ctx, in.DeviceID)
	if err != nil {
		return err
	}
	detail := map[string]string{"device_id": d.ID, "key_id": in.KeyID}
	switch {
	case d.Status != DeviceVerified:
		return s.refuseWith(ctx, c, "card.pin", in.CardID, d.PersonID, detail, errUnverified("device_id"))
	case d.RestrictedKey == nil:
		return s.refuseWith(ctx, c, "card.pin", in.CardID, d.PersonID, detail, &Error{Kind: KindForbidden, Field: "device_id", Msg: "device has no restricted key"})
	case !verifySignature(d.RestrictedKey, []byte(in.EncryptedPIN), sig):
		return s.refuseWith(ctx, c, "card.pin", in.CardID, d.PersonID, detail, errSignature)
	}
	card, err := s.store.Card(ctx, d.PersonID, in.CardID)
	if err != nil {
		return err
	}
	versions, err := s.setPINVersions(ctx)
	if err != nil {
		return err
	}
	v, ok := parseSetPINKeyID(in.KeyID)
	if !ok || !slices.Contains(versions, v) {
		return Invalid("key_id", fmt.Sprintf("must name the published set_pin key, %s", SetPINKeyID(versions[0])))
	}
	// The signature covers the JWE alone: no card, no time. Burning the
	// JWE's digest makes a signed request good once, on one card.
	burn := sha256.Sum256([]byte("cardvault pin jwe\x00" + in.EncryptedPIN))
	return s.setPIN(ctx, c, card, d.ID, pinCiphertext{versions: []uint32{v}, jwe: in.EncryptedPIN, burn: burn[:]}, detail)
}

// setPIN is the one PIN path. Whatever the ciphertext holds, it makes the
// same HSM calls in the same order (open the card's record for its PAN;
// one RSA private operation per version tried; two PEK encryptions) and
// one database transaction, and answers errPIN for every kind of unusable
// PIN. The clear PIN exists only here, in buffers cleared before it
// returns.
func (s *Service) setPIN(ctx context.Context, c Caller, card *Card, deviceID string, ct pinCiphertext, detail map[string]string) error {
	if detail == nil {
		detail = map[string]string{}
	}
	refuse := func(err error) error { return s.refuseWith(ctx, c, "card.pin", card.ID, card.OwnerID, detail, err) }
	if card.Status == StatusClosed || card.Sealed == nil {
		return refuse(Conflict("card_id", "card is closed"))
	}
	slot := s.slot(BudgetPINAttempt, card.ID, deviceID, c)
	if err := s.checkBudget(ctx, slot); err != nil {
		return refuse(err)
	}
	rec, err := s.openRecord(ctx, card)
	if err != nil {
		return err
	}
	defer rec.clear()

	pin, ok, err := s.decryptPIN(ctx, ct)
	if err != nil {
		return err
	}
	defer clear(pin[:])
	block, pekVersion, err := s.encipherPIN(ctx, pin[:], rec.PAN)
	if err != nil {
		return err
	}
	now := s.cfg.Now().UTC()
	if ok != 1 {
		w := Write{Audit: s.audit(c, "card.pin", card.ID, card.OwnerID, "refused: "+errPIN.Error(), detail), Slot: slot, UsedKey: ct.burn}
		if err := s.store.Commit(ctx, w); err != nil {
			return refuse(pinReplay(err))
		}
		return errPIN
	}
	detail["pek_version"] = fmt.Sprint(pekVersion)
	w := Write{Audit: s.audit(c, "card.pin", card.ID, card.OwnerID, "ok", detail), Slot: slot, UsedKey: ct.burn}
	if o, err := s.store.OrderByCard(ctx, card.ID); err == nil && o.Status == OrderOrdered {
		if w.Order, err = o.move(OrderReceived, now); err != nil {
			return err
		}
	} else if err != nil && KindOf(err) != KindNotFound {
		return err
	}
	if err := s.store.SetPIN(ctx, card.ID, block, pekVersion, now, w); err != nil {
		if refusedByRule(err) {
			return refuse(pinReplay(err))
		}
		return err
	}
	return nil
}

// pinReplay names a burnt request's conflict as the PIN route's field;
// the store names the burnt value as a client key.
func pinReplay(err error) error {
	var e *Error
	if errors.As(err, &e) && e.Kind == KindConflict && e.Field == "public_key" {
		return Conflict("encrypted_pin", "this request was accepted before; encrypt and sign the PIN afresh")
	}
	return err
}

// decryptPIN runs the ciphertext's RSA private operations and decodes the
// PIN, returning ok 1 or 0. A JWE names its one version. A Jiko ciphertext
// is tried under every version in the list, each decoded in constant time,
// and the first good one is selected without a branch.
func (s *Service) decryptPIN(ctx context.Context, ct pinCiphertext) ([4]byte, int, error) {
	if ct.jwe != "" {
		return s.decryptPINJWE(ctx, ct.versions[0], ct.jwe)
	}
	pin, ok := dummyPIN, 0
	for _, v := range ct.versions {
		got, good, err := s.decryptPINRSA(ctx, v, ct.rsa)
		if err != nil {
			return [4]byte{}, 0, err
		}
		subtle.ConstantTimeCopy(good&(1^ok), pin[:], got[:])
		ok |= good
		clear(got[:])
	}
	return pin, ok, nil
}

// decryptPINRSA is one RSA private operation under a set_pin version,
// and the constant-time PKCS#1 v1.5 decode. A ciphertext of the wrong
// length is replaced by a zero stand-in so the HSM still sees the call; a
// value the HSM refuses (not below the modulus, or, on a token without raw
// RSA, bad padding) decodes as an all-zero message. All are invalid by the
// same code path.
func (s *Service) decryptPINRSA(ctx context.Context, version uint32, ct []byte) ([4]byte, int, error) {
	pub, _, err := s.keys.SetPINPublicKey(ctx, version)
	if err != nil {
		return [4]byte{}, 0, err
	}
	size := (pub.N.BitLen() + 7) / 8
	formed := subtle.ConstantTimeEq(int32(len(ct)), int32(size))
	if formed != 1 {
		ct = make([]byte, size)
	}
	em, err := s.keys.SetPINDecryptPKCS1(ctx, version, ct)
	if KindOf(err) == KindCrypto {
		em, err = make([]byte, size), nil
	}
	if err != nil {
		return [4]byte{}, 0, err
	}
	defer clear(em)
	pin, ok := pinFromPKCS1(em)
	return pin, ok & formed, nil
}

// decryptPINJWE opens a Solaris PIN JWE: the content key is unwrapped in
// the HSM (RSA-OAEP-256); a failed unwrap yields a random key, so content
// decryption runs and fails on its tag as a wrong PIN would (RFC 7516
// §11.5). The plaintext is {"pin":"NNNN"}.
func (s *Service) decryptPINJWE(ctx context.Context, version uint32, compact string) ([4]byte, int, error) {
	var pin [4]byte
	pub, _, err := s.keys.SetPINPublicKey(ctx, version)
	if err != nil {
		return pin, 0, err
	}
	plain, hsmErr := jwe.DecryptPIN(compact, SetPINKeyID(version), (pub.N.BitLen()+7)/8, func(wrapped []byte) ([]byte, error) {
		cek, err := s.keys.SetPINDecryptOAEP(ctx, version, wrapped)
		if KindOf(err) == KindCrypto {
			return nil, jwe.ErrUnwrap
		}
		return cek, err
	})
	if hsmErr != nil && !errors.Is(hsmErr, jwe.ErrDecrypt) {
		return pin, 0, hsmErr
	}
	defer clear(plain)
	// The value is read as raw JSON, a buffer that can be cleared: a Go
	// string could not be.
	var body struct {
		PIN json.RawMessage `json:"pin"`
	}
	defer func() { clear(body.PIN) }()
	ok := 0
	if plain != nil && json.Unmarshal(plain, &body) == nil && len(body.PIN) == 6 && body.PIN[0] == '"' && body.PIN[5] == '"' {
		copy(pin[:], body.PIN[1:5])
		ok = 1
	}
	ok &= pinAcceptable(pin)
	subtle.ConstantTimeCopy(1^ok, pin[:], dummyPIN[:])
	return pin, ok, nil
}

// encipherPIN builds the format 4 PIN block of pin for pan under the
// active PEK, with the two encryptions inside the HSM.
func (s *Service) encipherPIN(ctx context.Context, pin, pan []byte) ([]byte, uint32, error) {
	// One field, made in place and cleared here: a field returned by
	// value left an uncleared copy on the heap (found in a core dump).
	var field [pinBlockSize]byte
	defer clear(field[:])
	if err := pinField(&field, pin, s.cfg.Rand); err != nil {
		return nil, 0, Internal(err)
	}
	ib, v, err := s.keys.PEKEncryptBlock(ctx, 0, field[:])
	if err != nil {
		return nil, 0, err
	}
	pf := panField(pan)
	defer clear(pf[:])
	subtle.XORBytes(ib, ib, pf[:])
	block, _, err := s.keys.PEKEncryptBlock(ctx, v, ib)
	clear(ib)
	return block, v, err
}

// translatePIN re-enciphers a format 4 PIN block from one PEK version to
// another: the plain-text PIN field (plainPINField) is enciphered under to
// as encipherPIN does. The PIN field exists only here, and is cleared. A
// block that does not decode to a format 4 field is ErrCrypto.
func translatePIN(ctx context.Context, keys RewrapKeys, block []byte, from, to uint32, pan []byte) ([]byte, error) {
	field, err := plainPINField(block, pan, func(b []byte) ([]byte, error) { return keys.PEKDecryptBlock(ctx, from, b) })
	if err != nil {
		return nil, err
	}
	defer clear(field)
	out, _, err := keys.PEKEncryptBlock(ctx, to, field)
	if err != nil {
		return nil, err
	}
	pf := panField(pan)
	defer clear(pf[:])
	subtle.XORBytes(out, out, pf[:])
	defer clear(out)
	next, _, err := keys.PEKEncryptBlock(ctx, to, out)
	return next, err
}

// PublicSetPINKey is a published set_pin key.
type PublicSetPINKey struct {
	Key   *rsa.PublicKey
	KeyID string
}
