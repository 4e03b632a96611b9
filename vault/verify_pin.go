package vault

// PIN verification for the authorization host: a PIN block a terminal's
// zone sent (ISO 9564 format 4 under a zone PIN key) checked against the
// card's own PIN block (under the PEK), with an answer of match, no match
// or blocked. Neither PIN leaves the cleared buffers of this path.

import (
	"context"
	"crypto/subtle"
	"errors"
	"strconv"
)

// DefaultPINTryLimit is the issuer's PIN try limit most cards carry.
const DefaultPINTryLimit = 3

// Blocked is the answer of a card whose PIN tries are spent.
const Blocked = "blocked"

// VerifyPINRequest is a PIN block to verify against a card: 16 bytes, ISO
// 9564 format 4 under a zone PIN key version (0: the active one).
type VerifyPINRequest struct {
	CardID         string
	PINBlock       []byte
	ZoneKeyVersion uint32
}

// PINVerification is the answer: match, no_match or blocked.
type PINVerification struct {
	PIN string `json:"pin"`
}

// VerifyPIN compares a zone's PIN block with the card's. Both blocks are
// deciphered in the token to their digits, which are compared in
// constant time and cleared; a zone block that does not decipher to a
// well-formed format 4 PIN for the card's PAN (a wrong zone key, a block
// made for another PAN) is a wrong PIN, after the same work. A wrong PIN
// counts against the card's try limit, a right one clears the count;
// once the limit is reached the card answers blocked, without HSM work,
// until a new PIN is set. Every answer is budgeted (BudgetVerify) and
// audited without the PINs.
func (s *Service) VerifyPIN(ctx context.Context, c Caller, in VerifyPINRequest) (*PINVerification, error) {
	if len(in.PINBlock) != 16 {
		return nil, Invalid("pin_block", "must be 32 hexadecimal digits: an ISO 9564 format 4 PIN block")
	}
	card, err := s.store.CardByID(ctx, in.CardID)
	if err != nil {
		return nil, err
	}
	refuse := func(err error) (*PINVerification, error) {
		return nil, s.refuse(ctx, c, "card.verify_pin", card.ID, card.OwnerID, err)
	}
	if err := revealable(card, "card_id"); err != nil {
		return refuse(err)
	}
	if err := hasPIN(card, "card_id"); err != nil {
		return refuse(err)
	}
	if card.PINTries >= s.cfg.PINTryLimit {
		return s.pinBlocked(ctx, c, card)
	}
	slot := s.slot(BudgetVerify, card.ID, "", c)
	if err := s.checkBudget(ctx, slot); err != nil {
		return refuse(err)
	}
	matched, version, err := s.comparePINs(ctx, card, in)
	if err != nil {
		return refuse(err)
	}
	out := &PINVerification{PIN: answer(matched)}
	w := Write{
		Audit:  s.audit(c, "card.verify_pin", card.ID, card.OwnerID, "ok", map[string]string{"pin": out.PIN, "zone_key_version": strconv.FormatUint(uint64(version), 10)}),
		Slot:   slot,
		Reveal: s.revealCheck(card, "card_id", false),
		PINTry: &PINTry{CardID: card.ID, PINBlock: card.PINBlock, Matched: matched, Limit: s.cfg.PINTryLimit},
	}
	if err := s.store.Commit(ctx, w); err != nil {
		if errors.Is(err, ErrPINBlocked) {
			// A concurrent verification took the last try first.
			return s.pinBlocked(ctx, c, card)
		}
		if refusedByRule(err) {
			return refuse(err)
		}
		return nil, err
	}
	s.cfg.Observer.Verified("pin", out.PIN)
	return out, nil
}

// pinBlocked answers blocked and audits it.
func (s *Service) pinBlocked(ctx context.Context, c Caller, card *Card) (*PINVerification, error) {
	if err := s.store.AppendAudit(ctx, s.audit(c, "card.verify_pin", card.ID, card.OwnerID, "ok", map[string]string{"pin": Blocked})); err != nil {
		return nil, err
	}
	s.cfg.Observer.Verified("pin", Blocked)
	return &PINVerification{PIN: Blocked}, nil
}

// comparePINs deciphers the card's block under the PEK and the zone's
// under the zone key, both for the card's PAN, and compares the digits
// in constant time. It returns the zone key version used.
func (s *Service) comparePINs(ctx context.Context, card *Card, in VerifyPINRequest) (bool, uint32, error) {
	rec, err := s.openRecord(ctx, card)
	if err != nil {
		return false, 0, err
	}
	defer rec.clear()
	want, err := s.keys.PINDigits(ctx, card.PINKeyVersion, card.PINBlock, rec.PAN)
	if err != nil {
		return false, 0, Internal(errors.New("card " + card.ID + ": stored PIN block does not decode"))
	}
	defer clear(want)
	got, version, err := s.keys.ZonePINDigits(ctx, in.ZoneKeyVersion, in.PINBlock, rec.PAN)
	if errors.Is(err, errNotFormat4) {
		// Not a format 4 PIN for this PAN under this zone key: a wrong
		// PIN, compared as one so the work is the same. Any other
		// failure is the token's, and spends no try.
		got, err = nil, nil
	}
	if err != nil {
		return false, 0, err
	}
	defer clear(got)
	return equalPINs(got, want), version, nil
}

// equalPINs compares two PINs of 4 to 12 digits in constant time, in
// fixed buffers that are cleared.
func equalPINs(a, b []byte) bool {
	var x, y [12]byte
	defer clear(x[:])
	defer clear(y[:])
	copy(x[:], a)
	copy(y[:], b)
	sameLength := subtle.ConstantTimeEq(int32(len(a)), int32(len(b)))
	return subtle.ConstantTimeCompare(x[:], y[:])&sameLength&subtle.ConstantTimeLessOrEq(4, len(a)) == 1
}
