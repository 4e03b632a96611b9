package httpapi

import (
	"encoding/base64"
	"net/http"
	"strings"

	"github.com/labstack/echo/v4"
)

// jikoPIN registers PIN setting under /api/v1/jiko-accounts/:account_id.
func (s *Server) jikoPIN(g *echo.Group) {
	g.POST("/cards/:card_id/pin", s.jikoSetPIN, require(ScopePINWrite))
	g.POST("/cards/:card_id/pin/view", s.jikoViewPIN, require(ScopePINView))
}

// jikoViewPIN handles POST .../cards/:card_id/pin/view {public_key}: the
// card's PIN encrypted to the cardholder's single-use RSA-4096 key, as
// the read route encrypts card details.
func (s *Server) jikoViewPIN(c echo.Context) error {
	var req struct {
		PublicKey *string `json:"public_key"`
	}
	if err := bindJSON(c, &req); err != nil {
		return err
	}
	if err := requireFields(reqField{"public_key", req.PublicKey == nil}); err != nil {
		return err
	}
	out, err := s.svc.ViewPINRSA(c.Request().Context(), caller(c), c.Param("account_id"), c.Param("card_id"), *req.PublicKey)
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, out)
}

// jikoSetPIN handles POST .../cards/:card_id/pin {encrypted_pin}: 200
// {"success": true}, or one fixed refusal for every unusable PIN.
func (s *Server) jikoSetPIN(c echo.Context) error {
	var req struct {
		EncryptedPIN *string `json:"encrypted_pin"`
	}
	if err := bindJSON(c, &req); err != nil {
		return err
	}
	if err := requireFields(reqField{"encrypted_pin", req.EncryptedPIN == nil}); err != nil {
		return err
	}
	ct := decodePINCiphertext(*req.EncryptedPIN)
	defer clear(ct)
	if err := s.svc.SetPINJiko(c.Request().Context(), caller(c), c.Param("account_id"), c.Param("card_id"), ct); err != nil {
		return err
	}
	return c.JSON(http.StatusOK, map[string]bool{"success": true})
}

// decodePINCiphertext reads Jiko's base64 ciphertext; line wraps and
// spaces from `base64` are allowed. Text that is not base64 becomes an
// empty ciphertext, which the vault refuses at its modulus length check
// like any other wrong length: a malformed ciphertext is one more
// unusable PIN, audited and counted as one, and answered alike.
func decodePINCiphertext(text string) []byte {
	ct, err := base64.StdEncoding.DecodeString(strings.Join(strings.Fields(text), ""))
	if err != nil {
		return nil
	}
	return ct
}
