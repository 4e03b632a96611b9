package vault

// Sandbox issuing (Jiko's create): a PAN made under the BIN, sealed, and
// answered encrypted to the client's single-use key.

import (
	"context"
	"errors"
	"fmt"
)

// IssueVirtual is the sandbox issuing path: it makes a PAN under the BIN,
// a CVV and an expiry, seals them, and returns them encrypted to the
// client's single-use key.
func (s *Service) IssueVirtual(ctx context.Context, c Caller, ownerID, publicKeyPEM string, idem *IdemKey) (*RSAReveal, error) {
	key, err := parseRSARequest(ownerID, publicKeyPEM)
	if err != nil {
		return nil, err
	}
	return idempotently(ctx, s, idem, func() (*RSAReveal, error) {
		out, err := retryPANCollision(func() (*RSAReveal, error) { return s.issueOnce(ctx, c, ownerID, key, idem) })
		var e *Error
		if errors.As(err, &e) && e.Kind == KindConflict && e.Field == "public_key" {
			return nil, s.refuse(ctx, c, "card.issue", "", ownerID, err)
		}
		return out, err
	})
}

// IssueUnseen issues a virtual card to ownerID as IssueVirtual does, but
// reveals it to no one and returns its id. It is not an API route: the
// bench seeds a database to a platform's size with it (`cardvault bench
// --cards`), through the token and the store as issuing does, audited.
func (s *Service) IssueUnseen(ctx context.Context, c Caller, ownerID string) (string, error) {
	if err := ValidateOwnerID("account_id", ownerID); err != nil {
		return "", err
	}
	out, err := retryPANCollision(func() (*RSAReveal, error) { return s.issueOnce(ctx, c, ownerID, nil, nil) })
	if err != nil {
		return "", err
	}
	return out.CardID, nil
}

// retryPANCollision runs issue again when the fresh PAN it made is already
// a card's. A fresh PAN collides about once in 10^9 per card in the vault
// for a six-digit BIN; a few tries before calling it a conflict.
func retryPANCollision(issue func() (*RSAReveal, error)) (*RSAReveal, error) {
	var out *RSAReveal
	var err error
	for attempt := 0; attempt < 5; attempt++ {
		out, err = issue()
		var e *Error
		if errors.As(err, &e) && e.Kind == KindConflict && e.Field == "pan" {
			continue
		}
		break
	}
	return out, err
}

// newRecord makes a sandbox card's secrets: a PAN under the BIN, a CVV
// and an expiry. The caller clears the record.
func (s *Service) newRecord(name string) (*secretRecord, error) {
	pan, err := generatePAN(s.cfg.Rand, s.cfg.BIN)
	if err != nil {
		return nil, Internal(err)
	}
	cvv := make([]byte, 3)
	if err := randomDigits(s.cfg.Rand, cvv); err != nil {
		clear(pan)
		return nil, Internal(err)
	}
	month, year := expiryAfter(s.cfg.Now(), s.cfg.ExpiryYears)
	return &secretRecord{PAN: pan, CVV: cvv, ExpiryMonth: month, ExpiryYear: year, Name: []byte(name)}, nil
}

func (s *Service) issueOnce(ctx context.Context, c Caller, ownerID string, key *ClientKey, idem *IdemKey) (*RSAReveal, error) {
	rec, err := s.newRecord("")
	if err != nil {
		return nil, err
	}
	defer rec.clear()
	card, err := s.sealNew(ctx, ownerID, TypeVirtual, StatusOpen, rec)
	if err != nil {
		return nil, err
	}
	// Without a client key (IssueUnseen) the card is revealed to no one.
	reveal := &RSAReveal{CardID: card.ID}
	var w Write
	if key != nil {
		if reveal, err = encryptToClient(key, card.ID, rec); err != nil {
			return nil, err
		}
		w.UsedKey = key.Fingerprint
	}
	w.Audit = s.audit(c, "card.issue", card.ID, ownerID, "ok", map[string]string{"type": string(TypeVirtual), "key_version": fmt.Sprint(card.KeyVersion)})
	if w.Idempotent, err = s.idempotent(ctx, idem, card.ID, reveal); err != nil {
		return nil, err
	}
	if err := s.store.CreateCard(ctx, card, w); err != nil {
		return nil, err
	}
	return reveal, nil
}
