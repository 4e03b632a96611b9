package httpapi

import (
	"net/http"

	"github.com/cardvault/cardvault/api"
	"github.com/labstack/echo/v4"
)

// openAPI answers GET /openapi.yaml: the contract the tests hold the
// server to (api/openapi.yaml), without authentication.
func (s *Server) openAPI(c echo.Context) error {
	return c.Blob(http.StatusOK, "application/yaml", api.OpenAPI)
}
