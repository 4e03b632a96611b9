package httpapi

import (
	"net/http"
	"strconv"

	"github.com/cardvault/cardvault/vault"
	"github.com/labstack/echo/v4"
)

// nativeVerify registers the authorization host's route: card data it
// holds checked against a card, answered match or no match.
func (s *Server) nativeVerify(g *echo.Group) {
	g.POST("/cards/:id/verification", s.verifyCard, require(ScopeCardsVerify))
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
