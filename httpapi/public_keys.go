package httpapi

import (
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"fmt"
	"math/big"
	"net/http"

	"github.com/cardvault/cardvault/vault"
	"github.com/labstack/echo/v4"
)

// publicKeys registers the published set_pin key, on both surfaces and
// without authentication: a public key is public, and the Jiko guide
// fetches it with plain curl. Jiko's guide spells the route public_keys/,
// its OpenAPI file public-keys.
func (s *Server) publicKeys(e *echo.Echo) {
	e.GET("/api/v1/public_keys", s.jikoGetPublicKeys)
	e.GET("/api/v1/public-keys", s.jikoGetPublicKeys)
	e.GET("/v1/cards/pin_keys/latest", s.latestPINKey)
}

// publishedKey is the active set_pin key, or, when the client already
// holds it (If-None-Match on its version's ETag), nil after answering 304.
// The key may be cached for as long as servers trust their view of the
// key versions, so a rotation reaches clients within that time.
func (s *Server) publishedKey(c echo.Context) (*vault.PublicSetPINKey, error) {
	k, err := s.svc.SetPINKey(c.Request().Context())
	if err != nil {
		return nil, err
	}
	etag := `"` + k.KeyID + `"`
	h := c.Response().Header()
	h.Set("ETag", etag)
	h.Set("Cache-Control", fmt.Sprintf("public, max-age=%d", int(s.keyMaxAge.Seconds())))
	if c.Request().Header.Get("If-None-Match") == etag {
		return nil, c.NoContent(http.StatusNotModified)
	}
	return k, nil
}

// jikoGetPublicKeys answers {"set_pin": SPKI PEM} of the active key.
func (s *Server) jikoGetPublicKeys(c echo.Context) error {
	k, err := s.publishedKey(c)
	if k == nil {
		return err
	}
	der, err := x509.MarshalPKIXPublicKey(k.Key)
	if err != nil {
		return vault.Internal(err)
	}
	return c.JSON(http.StatusOK, map[string]string{"set_pin": string(pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der}))})
}

// latestPINKey handles GET /v1/cards/pin_keys/latest: the active set_pin
// key as a JWK whose kid names its version.
func (s *Server) latestPINKey(c echo.Context) error {
	k, err := s.publishedKey(c)
	if k == nil {
		return err
	}
	return c.JSON(http.StatusOK, map[string]string{
		"kid": k.KeyID, "kty": "RSA", "use": "enc", "alg": "RS256",
		"n": base64.RawURLEncoding.EncodeToString(k.Key.N.Bytes()),
		"e": base64.RawURLEncoding.EncodeToString(big.NewInt(int64(k.Key.E)).Bytes()),
	})
}
