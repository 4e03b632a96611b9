package vault

// The PIN view: a card's PIN re-encrypted at once to the cardholder's
// single-use RSA key (Jiko's style), so the app shows it instead of a
// PIN letter. The clear PIN exists only between the second PEK
// decryption and the RSA encryption, in cleared buffers.

import (
	"context"
	"fmt"
)

// PINReveal is a card's PIN digits encrypted to a client's single-use RSA
// key with RSAES-PKCS1-v1_5; encoding/json writes the ciphertext as
// standard padded base64.
type PINReveal struct {
	CardID       string `json:"card_id"`
	EncryptedPIN []byte `json:"encrypted_pin"`
}

// ViewPINRSA reveals the PIN of a card of ownerID with a PIN set, to a
// single-use RSA key. It takes the reveal path's checks: the card open or
// not yet activated, the device gate, the card's and the caller's reveal
// budgets, the key burned, the audit.
func (s *Service) ViewPINRSA(ctx context.Context, c Caller, ownerID, cardID, publicKeyPEM string) (*PINReveal, error) {
	key, err := parseRSARequest(ownerID, publicKeyPEM)
	if err != nil {
		return nil, err
	}
	card, err := s.store.Card(ctx, ownerID, cardID)
	if err != nil {
		return nil, err
	}
	if card.PINBlock == nil {
		return nil, s.refuse(ctx, c, "card.pin_view", card.ID, ownerID, Conflict("card_id", "the card has no PIN set"))
	}
	return revealToClientKey(ctx, s, c, "card.pin_view", card, key, nil, func() (*PINReveal, error) {
		return s.pinViewOnce(ctx, card, key)
	})
}

// pinViewOnce deciphers the card's PIN block (the PAN comes from its
// sealed record) and encrypts the digits to the client key.
func (s *Service) pinViewOnce(ctx context.Context, card *Card, key *ClientKey) (*PINReveal, error) {
	rec, err := s.openRecord(ctx, card)
	if err != nil {
		return nil, err
	}
	defer rec.clear()
	pin, err := s.keys.PINDigits(ctx, card.PINKeyVersion, card.PINBlock, rec.PAN)
	if err != nil {
		return nil, Internal(fmt.Errorf("card %s: PIN block does not decode: %w", card.ID, err))
	}
	defer clear(pin)
	ct, err := key.EncryptPKCS1v15(pin)
	if err != nil {
		return nil, Internal(fmt.Errorf("encrypt to client key: %w", err))
	}
	return &PINReveal{CardID: card.ID, EncryptedPIN: ct[0]}, nil
}
