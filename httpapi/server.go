// Package httpapi is cardvault's HTTP surface on echo/v4: the health and
// metrics endpoints, and (in files of their own) the Solaris-shaped,
// Jiko-shaped and native route groups.
package httpapi

import (
	"context"
	"log/slog"
	"net/http"
	"time"

	"github.com/cardvault/cardvault/internal/clienttext"
	"github.com/google/uuid"
	"github.com/labstack/echo/v4"
	"github.com/labstack/echo/v4/middleware"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// Check is one readiness dependency: the HSM, the database.
type Check struct {
	Name  string
	Check func(ctx context.Context) error
}

// Config is what the server is built from.
type Config struct {
	Logger  *slog.Logger
	Ready   []Check
	Service Vault
	Tokens  *Tokens
	// CertSubjects maps a verified client certificate's subject (RFC 2253,
	// as crypto/x509 prints it) to the scopes it grants without a bearer
	// token. Empty when the server does not verify client certificates.
	CertSubjects map[string][]string
	// MaxBody caps request bodies; 0 means 64 KiB.
	MaxBody string
	// Notices, if set, lists what an operator must look into that does not
	// stop the vault serving: key objects the pinned catalog rejects. They
	// are shown by /readyz and counted in /metrics.
	Notices func() []string
	// KeyRefresh is how long servers trust their view of the key
	// versions: published keys may be cached no longer; 0 means 5s.
	KeyRefresh time.Duration
	// Metrics is the registry the server's HTTP families join (nil: one
	// of its own, with Go's collectors). /metrics serves it unless
	// MetricsElsewhere says another listener does.
	Metrics          *prometheus.Registry
	MetricsElsewhere bool
}

// Server is the HTTP handler with its metrics.
type Server struct {
	echo    *echo.Echo
	log     *slog.Logger
	ready   []Check
	metrics *metrics
	svc     Vault
	tokens  *Tokens
	notices func() []string
	// keyMaxAge is how long a published key may be cached.
	keyMaxAge time.Duration
	// subjects maps client certificate subjects to scopes.
	subjects map[string][]string
}

type metrics struct {
	registry *prometheus.Registry
	requests *prometheus.CounterVec
	duration *prometheus.HistogramVec
}

func newMetrics(reg *prometheus.Registry) *metrics {
	if reg == nil {
		reg = prometheus.NewRegistry()
		reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	}
	m := &metrics{
		registry: reg,
		// Labels are the route template, never the path: a path carries
		// card and account ids.
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "cardvault_http_requests_total",
			Help: "HTTP requests by route template, method and status.",
		}, []string{"route", "method", "status"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "cardvault_http_request_duration_seconds",
			Help:    "HTTP request latency by route template.",
			Buckets: prometheus.ExponentialBuckets(0.0005, 2, 16),
		}, []string{"route", "method"}),
	}
	reg.MustRegister(m.requests, m.duration)
	return m
}

// New builds the server.
func New(cfg Config) *Server {
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.MaxBody == "" {
		cfg.MaxBody = "64K"
	}
	e := echo.New()
	e.HideBanner = true
	e.HidePort = true
	s := &Server{echo: e, log: cfg.Logger, ready: cfg.Ready, metrics: newMetrics(cfg.Metrics), svc: cfg.Service, tokens: cfg.Tokens, subjects: cfg.CertSubjects, notices: cfg.Notices, keyMaxAge: cfg.KeyRefresh}
	if s.keyMaxAge <= 0 {
		s.keyMaxAge = 5 * time.Second
	}
	if cfg.Notices != nil {
		s.metrics.registry.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "cardvault_hsm_rejected_key_objects",
			Help: "Key objects in the token that the pinned key catalog rejects (unrecorded or altered); each is logged and shown by /readyz.",
		}, func() float64 { return float64(len(cfg.Notices())) }))
	}
	e.HTTPErrorHandler = s.handleError
	e.Pre(middleware.RemoveTrailingSlash())
	e.Use(requestID)
	e.Use(s.observe)
	e.Use(middleware.BodyLimit(cfg.MaxBody))
	e.GET("/healthz", s.healthz)
	e.GET("/readyz", s.readyz)
	e.GET("/openapi.yaml", s.openAPI)
	if !cfg.MetricsElsewhere {
		e.GET("/metrics", echo.WrapHandler(MetricsHandler(s.metrics.registry)))
	}
	if s.svc != nil && s.tokens != nil {
		accounts := e.Group("/api/v1/jiko-accounts/:account_id", s.authenticate)
		s.jikoCards(accounts)
		s.jikoOrders(accounts)
		s.jikoPIN(accounts)
		s.jikoSandbox(e.Group("/api/v1/sandbox", s.authenticate))
		s.publicKeys(e)
		v1 := e.Group("/v1", s.authenticate)
		s.nativeCards(v1)
		s.nativeVerify(v1)
		s.solarisCards(v1)
		s.solarisDevices(v1)
	}
	return s
}

// MetricsHandler serves a registry in Prometheus's text format.
func MetricsHandler(reg *prometheus.Registry) http.Handler {
	return promhttp.HandlerFor(reg, promhttp.HandlerOpts{})
}

// requestID gives every request an id: the caller's, if it passes the
// client-text rule (short, plain and no PAN: it goes to logs, the audit
// trail and headers), or else one the server makes.
func requestID(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		id := c.Request().Header.Get(echo.HeaderXRequestID)
		if !clienttext.IsID(id) {
			id = uuid.NewString()
		}
		c.Response().Header().Set(echo.HeaderXRequestID, id)
		return next(c)
	}
}

// ServeHTTP makes the server an http.Handler.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) { s.echo.ServeHTTP(w, r) }

// observe records metrics and one structured log line per request. The line
// names the route template and the request id, never bodies or paths.
func (s *Server) observe(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		start := time.Now()
		err := next(c)
		if err != nil {
			c.Error(err)
		}
		route := c.Path()
		if route == "" {
			route = "unmatched"
		}
		status := c.Response().Status
		elapsed := time.Since(start)
		// Every label value comes from a closed set: a client's made-up
		// method would otherwise make a series (and carry its text).
		method := clienttext.Method(c.Request().Method)
		s.metrics.requests.WithLabelValues(route, method, clienttext.Status(status)).Inc()
		s.metrics.duration.WithLabelValues(route, method).Observe(elapsed.Seconds())
		if route != "/healthz" && route != "/metrics" {
			tok, _ := c.Get(callerKey).(apiToken)
			s.log.Info("request", "request_id", c.Response().Header().Get(echo.HeaderXRequestID),
				"method", method, "route", route, "status", status, "caller", tok.name,
				"duration_ms", float64(elapsed.Microseconds())/1000)
		}
		return nil
	}
}
