package httpapi

import (
	"encoding/hex"
	"net/http"
	"strconv"

	"github.com/cardvault/cardvault/vault"
	"github.com/labstack/echo/v4"
)

// nativeVerify registers the authorization host's route: card data it
// holds checked against a card, answered match or no match.
func (s *Server) nativeVerify(g *echo.Group) {
	g.POST("/cards/:id/verification", s.verifyCard, require(ScopeCardsVerify))
	g.POST("/cards/verify_pin", s.verifyPIN, require(ScopeCardsVerify))
}

// verifyPIN handles POST /v1/cards/verify_pin {"card_id", "pin_block",
// "zone_key_version"}: a terminal's PIN block, ISO 9564 format 4 under a
// zone PIN key (hex), checked against the card's PIN.
func (s *Server) verifyPIN(c echo.Context) error {
	var req struct {
		CardID         *string `json:"card_id"`
		PINBlock       *string `json:"pin_block"`
		ZoneKeyVersion uint32  `json:"zone_key_version"`
	}
	if err := bindJSON(c, &req); err != nil {
		return err
	}
	if err := requireFields(reqField{"card_id", req.CardID == nil}, reqField{"pin_block", req.PINBlock == nil}); err != nil {
		return err
	}
	block, err := hex.DecodeString(*req.PINBlock)
	if err != nil || len(block) != 16 {
		return vault.Invalid("pin_block", "must be 32 hexadecimal digits: an ISO 9564 format 4 PIN block")
	}
	v, err := s.svc.VerifyPIN(c.Request().Context(), caller(c), vault.VerifyPINRequest{CardID: *req.CardID, PINBlock: block, ZoneKeyVersion: req.ZoneKeyVersion})
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, v)
}

// verifyCard handles POST /v1/cards/:id/verification {"cvv", "expiry"}:
// a card-not-present transaction's CVV2 and expiry (MM/YY, as printed),
// either or both. The body's buffers are cleared.
func (s *Server) verifyCard(c echo.Context) error {
	body, err := readBody(c)
	if err != nil {
		return err
	}
	defer clear(body)
	var req struct {
		CVV    secretDigits `json:"cvv"`
		Expiry secretDigits `json:"expiry"`
	}
	defer func() { clear(req.CVV); clear(req.Expiry) }()
	if err := decodeJSON(body, &req); err != nil {
		return err
	}
	in := vault.VerifyRequest{CardID: c.Param("id"), CVV: req.CVV}
	if req.Expiry != nil {
		month, year, ok := parseExpiry(req.Expiry)
		if !ok {
			return vault.Invalid("expiry", "must be MM/YY")
		}
		in.ExpiryMonth, in.ExpiryYear = month, year
	}
	v, err := s.svc.VerifyCard(c.Request().Context(), caller(c), in)
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, v)
}

// parseExpiry reads MM/YY as a month and a four-digit year.
func parseExpiry(b []byte) (month, year int, ok bool) {
	if len(b) != 5 || b[2] != '/' {
		return 0, 0, false
	}
	m, errM := strconv.Atoi(string(b[:2]))
	y, errY := strconv.Atoi(string(b[3:]))
	if errM != nil || errY != nil || m < 1 || m > 12 || y < 0 {
		return 0, 0, false
	}
	return m, 2000 + y, true
}
