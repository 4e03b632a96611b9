package vault

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"time"
	"unicode"
)

// ImportRequest is card data from a processor. PAN and CVV are byte slices
// the caller clears after Import returns.
type ImportRequest struct {
	OwnerID     string
	Type        CardType
	PAN         []byte
	CVV         []byte
	ExpiryMonth int
	ExpiryYear  int
	Name        string
}

// Import is the native ingest path: it validates processor card data,
// refuses a PAN already in the vault, and seals and stores it with its
// audit entry in one transaction.
func (s *Service) Import(ctx context.Context, c Caller, in ImportRequest, idem *IdemKey) (*Card, error) {
	if err := ValidateOwnerID("owner_id", in.OwnerID); err != nil {
		return nil, err
	}
	if err := validatePAN(in.PAN); err != nil {
		return nil, err
	}
	if err := validateCVV(in.CVV); err != nil {
		return nil, err
	}
	if in.ExpiryMonth < 1 || in.ExpiryMonth > 12 {
		return nil, Invalid("expiry_month", "must be 1 to 12")
	}
	if in.ExpiryYear < 2000 || in.ExpiryYear > 2099 {
		return nil, Invalid("expiry_year", "must be a four-digit year")
	}
	if expired(in.ExpiryMonth, in.ExpiryYear, s.cfg.Now()) {
		return nil, Invalid("expiry_year", "card has expired")
	}
	if err := validateName("name", in.Name); err != nil {
		return nil, err
	}
	switch in.Type {
	case "":
		in.Type = TypeVirtual
	case TypeVirtual, TypePhysical:
	default:
		return nil, Invalid("type", "must be VIRTUAL or PHYSICAL")
	}
	return idempotently(ctx, s, idem, func() (*Card, error) {
		rec := &secretRecord{PAN: in.PAN, CVV: in.CVV, ExpiryMonth: in.ExpiryMonth, ExpiryYear: in.ExpiryYear, Name: []byte(in.Name)}
		card, err := s.sealNew(ctx, in.OwnerID, in.Type, StatusOpen, rec)
		if err != nil {
			return nil, err
		}
		meta := card.metadata()
		// The store counts the slot before it checks the PAN is new, so
		// past the budget a PAN in the vault and one not in it answer
		// alike.
		w := Write{Slot: s.slot(BudgetImport, hex.EncodeToString(card.Fingerprint), "", c)}
		w.Audit = s.audit(c, "card.import", card.ID, in.OwnerID, "ok", map[string]string{"type": string(in.Type), "key_version": fmt.Sprint(card.KeyVersion)})
		if w.Idempotent, err = s.idempotent(ctx, idem, card.ID, meta); err != nil {
			return nil, err
		}
		if err := s.store.CreateCard(ctx, card, w); err != nil {
			var e *Error
			if errors.As(err, &e) && e.Kind == KindConflict && e.Field == "pan" {
				return nil, s.panTaken(ctx, c, in.OwnerID, card.Fingerprint, err)
			}
			if refusedByRule(err) {
				return nil, s.refuse(ctx, c, "card.import", "", in.OwnerID, err)
			}
			return nil, err
		}
		return meta, nil
	})
}

// metadata is the card without its sealed record and fingerprint.
func (c *Card) metadata() *Card {
	m := *c
	m.Sealed, m.Fingerprint = nil, nil
	return &m
}

func validateName(field, name string) error {
	if len(name) > 100 {
		return Invalid(field, "must be at most 100 characters")
	}
	for _, r := range name {
		if !unicode.IsPrint(r) {
			return Invalid(field, "must be printable characters")
		}
	}
	return nil
}

// Card returns a card's metadata; another owner's card is ErrNotFound.
func (s *Service) Card(ctx context.Context, ownerID, id string) (*Card, error) {
	card, err := s.store.Card(ctx, ownerID, id)
	if err != nil {
		return nil, err
	}
	return card.metadata(), nil
}

// CardByID returns a card's metadata, whoever owns it (native API).
func (s *Service) CardByID(ctx context.Context, id string) (*Card, error) {
	card, err := s.store.CardByID(ctx, id)
	if err != nil {
		return nil, err
	}
	return card.metadata(), nil
}

// LookupPAN finds the id of the card with a PAN, by the PAN's
// fingerprint and without decrypting anything. Whether a PAN is in the
// vault is itself card data, so every look-up, hit or miss, is audited
// and counted against the caller's budget of distinct PANs, in one
// transaction before the answer. The caller clears pan.
func (s *Service) LookupPAN(ctx context.Context, c Caller, pan []byte) (string, error) {
	if err := validatePAN(pan); err != nil {
		return "", err
	}
	fps, err := s.keys.PANFingerprints(ctx, pan)
	if err != nil {
		return "", err
	}
	// The active version's fingerprint counts the PAN in the budget; a
	// card not yet rewrapped is found by an older one.
	fp := fps[0].Sum
	var card *Card
	for _, f := range fps {
		card, err = s.store.CardByFingerprint(ctx, f.Sum)
		if err == nil {
			break
		}
		if KindOf(err) != KindNotFound {
			return "", err
		}
		card = nil
	}
	cardID, ownerID, outcome := "", "", "not found"
	if card != nil {
		cardID, ownerID, outcome = card.ID, card.OwnerID, "ok"
	}
	if err := s.spendPAN(ctx, c, BudgetLookup, "card.lookup", cardID, ownerID, outcome, fp); err != nil {
		return "", err
	}
	if card == nil {
		return "", ErrNotFound
	}
	return card.ID, nil
}

// panTaken answers an import whose PAN is already in the vault. The
// create rolled back with its slot, so the 409 spends the PAN from the
// caller's import budget on its own, as a 201 does; past the budget the
// answer is 429, as it is for a PAN not in the vault.
func (s *Service) panTaken(ctx context.Context, c Caller, ownerID string, fp []byte, taken error) error {
	if err := s.spendPAN(ctx, c, BudgetImport, "card.import", "", ownerID, "refused: "+taken.Error(), fp); err != nil {
		return err
	}
	return taken
}

// spendPAN commits an answer about whether a PAN is in the vault: its
// audit entry and one PAN from the caller's budget of the kind in
// distinct PANs (by fingerprint). Past the budget it is refused, and
// audited so.
func (s *Service) spendPAN(ctx context.Context, c Caller, kind, action, cardID, ownerID, outcome string, fp []byte) error {
	w := Write{Audit: s.audit(c, action, cardID, ownerID, outcome, nil), Slot: s.slot(kind, hex.EncodeToString(fp), "", c)}
	err := s.store.Commit(ctx, w)
	if err != nil && refusedByRule(err) {
		return s.refuse(ctx, c, action, "", ownerID, err)
	}
	return err
}

// MaxPageSize bounds a list page.
const MaxPageSize = 100

// List returns a page of an owner's cards and the cursor of the next page
// ("" at the end).
func (s *Service) List(ctx context.Context, f CardFilter) ([]*Card, string, error) {
	if err := ValidateOwnerID("account_id", f.OwnerID); err != nil {
		return nil, "", err
	}
	if f.Limit == 0 {
		f.Limit = 20
	}
	if f.Limit < 1 || f.Limit > MaxPageSize {
		return nil, "", Invalid("limit", fmt.Sprintf("must be 1 to %d", MaxPageSize))
	}
	want := f.Limit
	f.Limit++ // one more tells whether there is a next page
	cards, err := s.store.ListCards(ctx, f)
	if err != nil {
		return nil, "", err
	}
	next := ""
	if len(cards) > want {
		cards = cards[:want]
		next = cards[want-1].ID
	}
	for i, c := range cards {
		cards[i] = c.metadata()
	}
	return cards, next, nil
}

// SetStatus locks or unlocks a card: OPEN and LOCKED move between each
// other; any other status is a conflict.
func (s *Service) SetStatus(ctx context.Context, c Caller, ownerID, id, status string) (*Card, error) {
	to, ok := ParseStatus(status)
	if !ok || (to != StatusOpen && to != StatusLocked) {
		return nil, Invalid("status", "must be OPEN or LOCKED")
	}
	w := Write{Audit: s.audit(c, "card.status", id, ownerID, "ok", map[string]string{"status": string(to)})}
	card, err := s.store.SetStatus(ctx, ownerID, id, []Status{StatusOpen, StatusLocked}, to, s.cfg.Now().UTC(), w)
	if err != nil {
		if KindOf(err) == KindConflict {
			return nil, s.refuse(ctx, c, "card.status", id, ownerID, err)
		}
		return nil, err
	}
	return card.metadata(), nil
}

// Close closes a card and crypto-shreds its sealed record. lostStolenDate
// is optional, YYYY-MM-DD.
func (s *Service) Close(ctx context.Context, c Caller, ownerID, id, reason, lostStolenDate string) error {
	r, ok := ParseClosureReason(reason)
	if !ok {
		return Invalid("closure_reason", "must be one of LOST, STOLEN, DAMAGED, NEVER_RECEIVED, EXPIRED, CANCELED")
	}
	detail := map[string]string{"reason": string(r)}
	if lostStolenDate != "" {
		d, err := time.Parse(time.DateOnly, lostStolenDate)
		if err != nil {
			return Invalid("lost_stolen_date", "must be a date, YYYY-MM-DD")
		}
		if d.After(s.cfg.Now()) {
			return Invalid("lost_stolen_date", "must not be in the future")
		}
		detail["lost_stolen_date"] = lostStolenDate
	}
	w := Write{Audit: s.audit(c, "card.close", id, ownerID, "ok", detail)}
	err := s.store.CloseCard(ctx, ownerID, id, r, s.cfg.Now().UTC(), w)
	if KindOf(err) == KindConflict {
		return s.refuse(ctx, c, "card.close", id, ownerID, err)
	}
	return err
}
