package vault

// The PIN view: a card's PIN re-encrypted at once to a key the
// cardholder's app made for it, so the app shows the PIN instead of a PIN
// letter: a single-use RSA key (Jiko's style) or a bound device's signed
// JWK (Solaris's). The clear PIN exists only between the second PEK
// decryption and the encryption to the client, in cleared buffers.

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
	if err := hasPIN(card, "card_id"); err != nil {
		return nil, s.refuse(ctx, c, "card.pin_view", card.ID, ownerID, err)
	}
	return revealToClientKey(ctx, s, c, "card.pin_view", card, key, nil, func() (*PINReveal, error) {
		pin, err := s.cardPIN(ctx, card)
		if err != nil {
			return nil, err
		}
		defer clear(pin)
		ct, err := key.EncryptPKCS1v15(pin)
		if err != nil {
			return nil, Internal(fmt.Errorf("encrypt to client key: %w", err))
		}
		return &PINReveal{CardID: card.ID, EncryptedPIN: ct[0]}, nil
	})
}

// ViewPINOnDevice is the PIN view, Solaris style: a bound device's
// signature over a fresh RSA JWK, answered with a compact JWE of
// {"pin":"1234"} to that JWK. It takes the secure view's checks and
// budgets, and burns the JWK as the secure view does.
func (s *Service) ViewPINOnDevice(ctx context.Context, c Caller, in SecureViewRequest) (string, error) {
	return s.viewOnDevice(ctx, c, in, nil, deviceView{
		action: "card.pin_view",
		ready:  func(card *Card) error { return hasPIN(card, "id") },
		payload: func(ctx context.Context, card *Card) ([]byte, error) {
			pin, err := s.cardPIN(ctx, card)
			if err != nil {
				return nil, err
			}
			defer clear(pin)
			out := make([]byte, 0, len(`{"pin":""}`)+len(pin))
			out = append(out, `{"pin":"`...)
			out = append(out, pin...)
			return append(out, `"}`...), nil
		},
	})
}

// hasPIN refuses a card without a PIN set, naming the request's field
// for the card.
func hasPIN(card *Card, field string) error {
	if card.PINBlock == nil {
		return Conflict(field, "the card has no PIN set")
	}
	return nil
}

// cardPIN deciphers the card's PIN block (the PAN comes from its sealed
// record) into the PIN's digits, which the caller clears.
func (s *Service) cardPIN(ctx context.Context, card *Card) ([]byte, error) {
	rec, err := s.openRecord(ctx, card)
	if err != nil {
		return nil, err
	}
	defer rec.clear()
	pin, err := s.keys.PINDigits(ctx, card.PINKeyVersion, card.PINBlock, rec.PAN)
	if err != nil {
		return nil, Internal(fmt.Errorf("card %s: PIN block does not decode: %w", card.ID, err))
	}
	return pin, nil
}
