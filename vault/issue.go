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
		// A fresh PAN collides with an existing one about once in 10^9
		// for a six-digit BIN; try a few times before calling it a
		// conflict.
		var out *RSAReveal
		var err error
		for attempt := 0; attempt < 5; attempt++ {
			out, err = s.issueOnce(ctx, c, ownerID, key, idem)
			var e *Error
			if errors.As(err, &e) && e.Kind == KindConflict && e.Field == "pan" {
				continue
			}
			break
		}
		var e *Error
		if errors.As(err, &e) && e.Kind == KindConflict && e.Field == "public_key" {
			return nil, s.refuse(ctx, c, "card.issue", "", ownerID, err)
		}
		return out, err
	})
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
	reveal, err := encryptToClient(key, card.ID, rec)
	if err != nil {
		return nil, err
	}
	var w Write
	w.Audit = s.audit(c, "card.issue", card.ID, ownerID, "ok", map[string]string{"type": string(TypeVirtual), "key_version": fmt.Sprint(card.KeyVersion)})
	w.UsedKey = key.Fingerprint
	if w.Idempotent, err = s.idempotent(ctx, idem, card.ID, reveal); err != nil {
		return nil, err
	}
	if err := s.store.CreateCard(ctx, card, w); err != nil {
		return nil, err
	}
	return reveal, nil
}
