package vault

// Card verification for the authorization host: a card-not-present
// transaction's CVV2 and expiry checked against the sealed record, with
// an answer of match or no match per field and nothing else.

import (
	"context"
	"crypto/subtle"
	"time"
)

// DefaultVerifyBudget lets a card be verified a few times an hour (a
// checkout and its retries) and bounds what a stolen cards:verify token
// can learn: 10 guesses of a 3-digit CVV per card per hour.
var DefaultVerifyBudget = Budget{Window: time.Hour, PerCard: 10, PerCaller: 10000}

// Verification answers.
const (
	Match   = "match"
	NoMatch = "no_match"
)

// VerifyRequest is what the authorization host asks of a card: a CVV, an
// expiry (month and four-digit year), or both.
type VerifyRequest struct {
	CardID                  string
	CVV                     []byte // nil: not asked
	ExpiryMonth, ExpiryYear int    // 0: not asked
}

// Verification is the answer, per field asked.
type Verification struct {
	CVV    string `json:"cvv,omitempty"`
	Expiry string `json:"expiry,omitempty"`
}

// VerifyCard compares what the authorization host holds with the card's
// sealed record. The record is opened and both fields are compared on
// every call, in constant time, whatever was asked and whatever the
// answer, so a match and a no match do the same work. The answer is
// audited (match or no match, never the values) and budgeted.
func (s *Service) VerifyCard(ctx context.Context, c Caller, in VerifyRequest) (*Verification, error) {
	cvvAsked, expiryAsked := in.CVV != nil, in.ExpiryMonth != 0 || in.ExpiryYear != 0
	switch {
	case !cvvAsked && !expiryAsked:
		return nil, Invalid("cvv", "give cvv, expiry or both")
	case cvvAsked && (len(in.CVV) < 3 || len(in.CVV) > 4 || !allDigits(in.CVV)):
		return nil, Invalid("cvv", "must be 3 or 4 digits")
	case expiryAsked && (in.ExpiryMonth < 1 || in.ExpiryMonth > 12 || in.ExpiryYear < 2000 || in.ExpiryYear > 2099):
		return nil, Invalid("expiry", "must be MM/YY")
	}
	card, err := s.store.CardByID(ctx, in.CardID)
	if err != nil {
		return nil, err
	}
	if err := revealable(card, "card_id"); err != nil {
		return nil, s.refuse(ctx, c, "card.verify", card.ID, card.OwnerID, err)
	}
	slot := s.slot(BudgetVerify, card.ID, "", c)
	if err := s.checkBudget(ctx, slot); err != nil {
		return nil, s.refuse(ctx, c, "card.verify", card.ID, card.OwnerID, err)
	}
	cvvMatch, expiryMatch, err := s.compareRecord(ctx, card, in)
	if err != nil {
		return nil, s.refuse(ctx, c, "card.verify", card.ID, card.OwnerID, err)
	}
	out, detail := &Verification{}, map[string]string{}
	if cvvAsked {
		out.CVV = answer(cvvMatch)
		detail["cvv"] = out.CVV
	}
	if expiryAsked {
		out.Expiry = answer(expiryMatch)
		detail["expiry"] = out.Expiry
	}
	w := Write{Audit: s.audit(c, "card.verify", card.ID, card.OwnerID, "ok", detail), Slot: slot,
		Reveal: s.revealCheck(card, "card_id", false)}
	if err := s.store.Commit(ctx, w); err != nil {
		if refusedByRule(err) {
			return nil, s.refuse(ctx, c, "card.verify", card.ID, card.OwnerID, err)
		}
		return nil, err
	}
	for field, answer := range detail {
		s.cfg.Observer.Verified(field, answer)
	}
	return out, nil
}

// compareRecord opens the card's record and compares both fields in
// constant time; the record's buffers are cleared before it returns.
func (s *Service) compareRecord(ctx context.Context, card *Card, in VerifyRequest) (cvv, expiry bool, err error) {
	rec, err := s.openRecord(ctx, card)
	if err != nil {
		return false, false, err
	}
	defer rec.clear()
	var got, want [4]byte
	defer clear(got[:])
	defer clear(want[:])
	copy(got[:], in.CVV)
	copy(want[:], rec.CVV)
	sameLength := subtle.ConstantTimeEq(int32(len(in.CVV)), int32(len(rec.CVV)))
	cvvEqual := subtle.ConstantTimeCompare(got[:], want[:]) & sameLength
	expiryEqual := subtle.ConstantTimeEq(int32(in.ExpiryMonth), int32(rec.ExpiryMonth)) & subtle.ConstantTimeEq(int32(in.ExpiryYear), int32(rec.ExpiryYear))
	return cvvEqual == 1, expiryEqual == 1, nil
}

func answer(match bool) string {
	if match {
		return Match
	}
	return NoMatch
}
