package httpapi

import (
	"crypto/x509"
	"encoding/pem"
	"net/http"

	"github.com/cardvault/cardvault/vault"
	"github.com/labstack/echo/v4"
)

// jikoPublicKeys registers the published set_pin key under /api/v1. The
// guide spells it public_keys/, the OpenAPI file public-keys; any valid
// token may read it.
func (s *Server) jikoPublicKeys(g *echo.Group) {
	g.GET("/public_keys", s.jikoGetPublicKeys)
	g.GET("/public-keys", s.jikoGetPublicKeys)
}

// jikoPIN registers PIN setting under /api/v1/jiko-accounts/:account_id.
func (s *Server) jikoPIN(g *echo.Group) {
	g.POST("/cards/:card_id/pin", s.jikoSetPIN, require(ScopePINWrite))
}

// jikoGetPublicKeys answers {"set_pin": SPKI PEM} of the active key.
func (s *Server) jikoGetPublicKeys(c echo.Context) error {
	k, err := s.svc.SetPINKey(c.Request().Context())
	if err != nil {
		return err
	}
	der, err := x509.MarshalPKIXPublicKey(k.Key)
	if err != nil {
		return vault.Internal(err)
	}
	return c.JSON(http.StatusOK, map[string]string{"set_pin": string(pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der}))})
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
