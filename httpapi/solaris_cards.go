package httpapi

import (
	"encoding/json"
	"net/http"

	"github.com/cardvault/cardvault/vault"
	"github.com/labstack/echo/v4"
)

// solarisCards registers the Solaris-shaped card routes under /v1/cards.
func (s *Server) solarisCards(g *echo.Group) {
	g.POST("/cards/:id/virtual_card_requests", s.virtualCardRequest, require(ScopeCardsReveal))
	g.POST("/cards/:id/pin_update_requests", s.pinUpdateRequest, require(ScopePINWrite))
	g.POST("/cards/:id/pin_view_requests", s.pinViewRequest, require(ScopePINView))
}

// pinUpdateRequest handles POST /v1/cards/:id/pin_update_requests: a PIN
// JWE signed by the device's restricted key. 204, or one fixed refusal for
// every unusable PIN.
func (s *Server) pinUpdateRequest(c echo.Context) error {
	var req struct {
		DeviceID     string `json:"device_id"`
		EncryptedPIN string `json:"encrypted_pin"`
		KeyID        string `json:"key_id"`
		Signature    string `json:"signature"`
	}
	if err := bindJSON(c, &req); err != nil {
		return err
	}
	if err := requireFields(reqField{"device_id", req.DeviceID == ""}, reqField{"encrypted_pin", req.EncryptedPIN == ""},
		reqField{"key_id", req.KeyID == ""}, reqField{"signature", req.Signature == ""}); err != nil {
		return err
	}
	err := s.svc.SetPINSolaris(c.Request().Context(), caller(c), vault.SetPINSolarisRequest{
		CardID: c.Param("id"), DeviceID: req.DeviceID, EncryptedPIN: req.EncryptedPIN, KeyID: req.KeyID, Signature: req.Signature,
	})
	if err != nil {
		return err
	}
	return c.NoContent(http.StatusNoContent)
}

// virtualCardRequest handles POST /v1/cards/:id/virtual_card_requests:
// the secure view, answered as {"data": compact JWE}.
func (s *Server) virtualCardRequest(c echo.Context) error {
	body, in, err := deviceViewRequest(c)
	if err != nil {
		return err
	}
	idem, err := idempotencyKey(c, c.Param("id"), body)
	if err != nil {
		return err
	}
	out, err := s.svc.SecureView(c.Request().Context(), caller(c), in, idem)
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, map[string]string{"data": out})
}

// pinViewRequest handles POST /v1/cards/:id/pin_view_requests: the PIN
// view on a bound device, the secure view's request answered as
// {"data": compact JWE of {"pin":"…"}}.
func (s *Server) pinViewRequest(c echo.Context) error {
	_, in, err := deviceViewRequest(c)
	if err != nil {
		return err
	}
	out, err := s.svc.ViewPINOnDevice(c.Request().Context(), caller(c), in)
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, map[string]string{"data": out})
}

// deviceViewRequest reads a device-signed view's body: the device, its
// signature over the JWK, the JWK and the JWE's algorithms.
func deviceViewRequest(c echo.Context) ([]byte, vault.SecureViewRequest, error) {
	body, err := readBody(c)
	if err != nil {
		return nil, vault.SecureViewRequest{}, err
	}
	var req struct {
		DeviceID  *string         `json:"device_id"`
		Signature *string         `json:"signature"`
		JWK       json.RawMessage `json:"jwk"`
		JWE       *struct {
			Alg *string `json:"alg"`
			Enc *string `json:"enc"`
		} `json:"jwe"`
		DeviceData string `json:"device_data"`
	}
	if err := decodeJSON(body, &req); err != nil {
		return nil, vault.SecureViewRequest{}, err
	}
	noJWK := len(req.JWK) == 0 || string(req.JWK) == "null"
	if err := requireFields(reqField{"device_id", req.DeviceID == nil}, reqField{"signature", req.Signature == nil},
		reqField{"jwk", noJWK}, reqField{"jwe", req.JWE == nil}); err != nil {
		return nil, vault.SecureViewRequest{}, err
	}
	if err := requireFields(reqField{"jwe[alg]", req.JWE.Alg == nil}, reqField{"jwe[enc]", req.JWE.Enc == nil}); err != nil {
		return nil, vault.SecureViewRequest{}, err
	}
	return body, vault.SecureViewRequest{
		CardID: c.Param("id"), DeviceID: *req.DeviceID, Signature: *req.Signature, JWK: req.JWK,
		Alg: *req.JWE.Alg, Enc: *req.JWE.Enc, DeviceData: req.DeviceData,
	}, nil
}
