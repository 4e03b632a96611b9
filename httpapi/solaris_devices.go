package httpapi

import (
	"net/http"
	"time"

	"github.com/cardvault/cardvault/vault"
	"github.com/labstack/echo/v4"
)

// solarisDevices registers Solaris-shaped device binding under /v1/mfa.
func (s *Server) solarisDevices(g *echo.Group) {
	scope := require(ScopeDevicesWrite)
	g.POST("/mfa/devices", s.registerDevice, scope)
	g.GET("/mfa/devices", s.listDevices, scope)
	g.GET("/mfa/devices/:id", s.getDevice, scope)
	g.DELETE("/mfa/devices/:id", s.deleteDevice, scope)
	g.POST("/mfa/devices/:id/keys", s.addDeviceKey, scope)
	g.PUT("/mfa/challenges/signatures/:id", s.answerChallenge, scope)
}

// deviceView is what the API shows of a device: never more than its
// public state.
type deviceView struct {
	ID          string     `json:"id"`
	PersonID    string     `json:"person_id"`
	Name        string     `json:"name"`
	Status      string     `json:"status"`
	KeyPurposes []string   `json:"key_purposes"`
	CreatedAt   time.Time  `json:"created_at"`
	VerifiedAt  *time.Time `json:"verified_at,omitempty"`
}

func viewOf(d *vault.Device) deviceView {
	v := deviceView{ID: d.ID, PersonID: d.PersonID, Name: d.Name, Status: string(d.Status), KeyPurposes: []string{},
		CreatedAt: d.CreatedAt, VerifiedAt: d.VerifiedAt}
	for _, p := range []vault.KeyPurpose{vault.KeyUnrestricted, vault.KeyRestricted} {
		if d.Key(p) != nil {
			v.KeyPurposes = append(v.KeyPurposes, string(p))
		}
	}
	return v
}

// registerDevice handles POST /v1/mfa/devices: 202 with the challenge the
// device must sign.
func (s *Server) registerDevice(c echo.Context) error {
	var req struct {
		PersonID      string `json:"person_id"`
		KeyType       string `json:"key_type"`
		Key           string `json:"key"`
		KeyPurpose    string `json:"key_purpose"`
		ChallengeType string `json:"challenge_type"`
		Name          string `json:"name"`
		DeviceData    string `json:"device_data"`
	}
	if err := bindJSON(c, &req); err != nil {
		return err
	}
	if err := requireFields(reqField{"person_id", req.PersonID == ""}, reqField{"key_type", req.KeyType == ""},
		reqField{"key", req.Key == ""}, reqField{"key_purpose", req.KeyPurpose == ""}); err != nil {
		return err
	}
	d, ch, err := s.svc.RegisterDevice(c.Request().Context(), caller(c), vault.RegisterDeviceRequest{
		PersonID: req.PersonID, KeyType: req.KeyType, Key: req.Key, KeyPurpose: req.KeyPurpose,
		ChallengeType: req.ChallengeType, Name: req.Name, DeviceData: req.DeviceData,
	})
	if err != nil {
		return err
	}
	return c.JSON(http.StatusAccepted, map[string]any{
		"id": d.ID,
		"challenge": map[string]any{
			"id": ch.ID, "type": "signature", "created_at": ch.CreatedAt, "expires_at": ch.ExpiresAt,
			"string_to_sign": ch.StringToSign,
		},
	})
}

// answerChallenge handles PUT /v1/mfa/challenges/signatures/:id: 204 once
// the device's signature verifies.
func (s *Server) answerChallenge(c echo.Context) error {
	var req struct {
		Signature  string `json:"signature"`
		DeviceData string `json:"device_data"`
	}
	if err := bindJSON(c, &req); err != nil {
		return err
	}
	if err := s.svc.AnswerChallenge(c.Request().Context(), caller(c), c.Param("id"), req.Signature, req.DeviceData); err != nil {
		return err
	}
	return c.NoContent(http.StatusNoContent)
}

// addDeviceKey handles POST /v1/mfa/devices/:id/keys: the restricted key,
// signed by the unrestricted one.
func (s *Server) addDeviceKey(c echo.Context) error {
	var req struct {
		KeyType    string `json:"key_type"`
		Key        string `json:"key"`
		KeyPurpose string `json:"key_purpose"`
		Signature  string `json:"signature"`
		DeviceData string `json:"device_data"`
	}
	if err := bindJSON(c, &req); err != nil {
		return err
	}
	if err := requireFields(reqField{"key_type", req.KeyType == ""}, reqField{"key", req.Key == ""},
		reqField{"key_purpose", req.KeyPurpose == ""}, reqField{"signature", req.Signature == ""}); err != nil {
		return err
	}
	d, err := s.svc.AddDeviceKey(c.Request().Context(), caller(c), vault.AddDeviceKeyRequest{
		DeviceID: c.Param("id"), KeyType: req.KeyType, Key: req.Key, KeyPurpose: req.KeyPurpose,
		Signature: req.Signature, DeviceData: req.DeviceData,
	})
	if err != nil {
		return err
	}
	return c.JSON(http.StatusCreated, viewOf(d))
}

// listDevices handles GET /v1/mfa/devices?person_id=.
func (s *Server) listDevices(c echo.Context) error {
	devices, err := s.svc.ListDevices(c.Request().Context(), c.QueryParam("person_id"))
	if err != nil {
		return err
	}
	out := make([]deviceView, len(devices))
	for i, d := range devices {
		out[i] = viewOf(d)
	}
	return c.JSON(http.StatusOK, out)
}

// getDevice handles GET /v1/mfa/devices/:id.
func (s *Server) getDevice(c echo.Context) error {
	d, err := s.svc.Device(c.Request().Context(), c.Param("id"))
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, viewOf(d))
}

// deleteDevice handles DELETE /v1/mfa/devices/:id.
func (s *Server) deleteDevice(c echo.Context) error {
	if err := s.svc.DeleteDevice(c.Request().Context(), caller(c), c.Param("id")); err != nil {
		return err
	}
	return c.NoContent(http.StatusNoContent)
}
