package vault

// The RSA reveal: card data encrypted per field to a client's single-use
// RSA-4096 key (Jiko's read), and the checks its route makes.

import (
	"context"
	"errors"
	"fmt"
)

// RSAReveal is card data encrypted to a client's single-use RSA key with
// RSAES-PKCS1-v1_5: the PAN digits, the CVV digits and the expiry as MM/YY.
// encoding/json writes the ciphertexts as standard padded base64.
type RSAReveal struct {
	CardID              string `json:"card_id"`
	EncryptedPAN        []byte `json:"encrypted_pan"`
	EncryptedCVV        []byte `json:"encrypted_cvv"`
	EncryptedExpiration []byte `json:"encrypted_expiration"`
}

// parseRSARequest validates what both RSA paths take.
func parseRSARequest(ownerID, publicKeyPEM string) (*ClientKey, error) {
	if err := ValidateOwnerID("account_id", ownerID); err != nil {
		return nil, err
	}
	return ParseClientKeyPEM("public_key", publicKeyPEM)
}

// encryptToClient encrypts the PAN, CVV and MM/YY expiry to the client key.
func encryptToClient(key *ClientKey, cardID string, rec *secretRecord) (*RSAReveal, error) {
	exp := []byte(fmt.Sprintf("%02d/%02d", rec.ExpiryMonth, rec.ExpiryYear%100))
	defer clear(exp)
	ct, err := key.EncryptPKCS1v15(rec.PAN, rec.CVV, exp)
	if err != nil {
		return nil, Internal(fmt.Errorf("encrypt to client key: %w", err))
	}
	out := &RSAReveal{CardID: cardID, EncryptedPAN: ct[0], EncryptedCVV: ct[1], EncryptedExpiration: ct[2]}
	return out, nil
}

// RevealRSA is the Jiko read path: one HSM open of the card's record,
// re-encrypted at once to the client's single-use key.
func (s *Service) RevealRSA(ctx context.Context, c Caller, ownerID, cardID, publicKeyPEM string, idem *IdemKey) (*RSAReveal, error) {
	key, err := parseRSARequest(ownerID, publicKeyPEM)
	if err != nil {
		return nil, err
	}
	return idempotently(ctx, s, idem, func() (*RSAReveal, error) {
		card, err := s.store.Card(ctx, ownerID, cardID)
		if err != nil {
			return nil, err
		}
		if card.Type != TypeVirtual {
			// The route reads virtual cards; a physical card's details are
			// on the plastic, as if it were not here.
			return nil, ErrNotFound
		}
		return revealToClientKey(ctx, s, c, "card.reveal", card, key, idem, func() (*RSAReveal, error) {
			return s.revealOnce(ctx, card, key)
		})
	})
}

// revealToClientKey is what both reveals to a single-use RSA key do
// around their encryption: the card open or not yet activated, the device
// gate, the card's and the caller's reveal budgets, then one write that
// burns the key, counts the reveal and appends the audit entry. Each
// refusal is audited as action; a write the database failed is not (its
// entry could not be written either).
func revealToClientKey[T any](ctx context.Context, s *Service, c Caller, action string, card *Card, key *ClientKey, idem *IdemKey, encrypt func() (T, error)) (T, error) {
	var none T
	refuse := func(err error) (T, error) {
		return none, s.refuse(ctx, c, action, card.ID, card.OwnerID, err)
	}
	if err := revealable(card, "card_id"); err != nil {
		return refuse(err)
	}
	if err := s.deviceGate(ctx, card); err != nil {
		return refuse(err)
	}
	slot := s.slot(BudgetReveal, card.ID, "", c)
	if err := s.checkBudget(ctx, slot); err != nil {
		return refuse(err)
	}
	out, err := encrypt()
	if err != nil {
		return refuse(err)
	}
	w := Write{
		Audit:   s.audit(c, action, card.ID, card.OwnerID, "ok", map[string]string{"to": "rsa-client-key"}),
		UsedKey: key.Fingerprint,
		Slot:    slot,
		Reveal:  s.revealCheck(card, "card_id", true),
	}
	if w.Idempotent, err = s.idempotent(ctx, idem, card.ID, out); err != nil {
		return none, err
	}
	if err := s.store.Commit(ctx, w); err != nil {
		if refusedByRule(err) || errors.Is(err, errDeviceGate) {
			return refuse(err)
		}
		return none, err
	}
	return out, nil
}

func (s *Service) revealOnce(ctx context.Context, card *Card, key *ClientKey) (*RSAReveal, error) {
	rec, err := s.openRecord(ctx, card)
	if err != nil {
		return nil, err
	}
	defer rec.clear()
	return encryptToClient(key, card.ID, rec)
}
