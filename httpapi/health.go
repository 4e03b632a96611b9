package httpapi

import (
	"context"
	"net/http"
	"time"

	"github.com/labstack/echo/v4"
)

// healthz answers GET /healthz: the process is alive. It checks nothing
// else, so that an orchestrator does not restart a vault whose HSM is
// briefly away.
func (s *Server) healthz(c echo.Context) error {
	return c.JSON(http.StatusOK, map[string]string{"status": "ok"})
}

// readyz answers GET /readyz: every dependency (the HSM, the database) is
// usable now. The body names failing checks but not their errors, which
// stay in the log.
func (s *Server) readyz(c echo.Context) error {
	ctx, cancel := context.WithTimeout(c.Request().Context(), 2*time.Second)
	defer cancel()
	checks := map[string]string{}
	ready := true
	for _, chk := range s.ready {
		if err := chk.Check(ctx); err != nil {
			s.log.Warn("readiness check failed", "check", chk.Name, "error", err)
			checks[chk.Name] = "unavailable"
			ready = false
			continue
		}
		checks[chk.Name] = "ok"
	}
	status := http.StatusOK
	if !ready {
		status = http.StatusServiceUnavailable
	}
	body := map[string]any{"ready": ready, "checks": checks}
	if s.notices != nil {
		if n := s.notices(); len(n) > 0 {
			body["notices"] = n
		}
	}
	return c.JSON(status, body)
}
