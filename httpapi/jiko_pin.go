package httpapi

import (
	"net/http"

	"github.com/labstack/echo/v4"
)

// jikoPIN registers PIN setting under /api/v1/jiko-accounts/:account_id.
func (s *Server) jikoPIN(g *echo.Group) {
	g.POST("/cards/:card_id/pin", s.jikoSetPIN, require(ScopePINWrite))
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
	if err := s.svc.SetPINJiko(c.Request().Context(), caller(c), c.Param("account_id"), c.Param("card_id"), *req.EncryptedPIN); err != nil {
		return err
	}
	return c.JSON(http.StatusOK, map[string]bool{"success": true})
}
