package main

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"time"

	"github.com/cardvault/cardvault/hsm"
	"github.com/cardvault/cardvault/httpapi"
	"github.com/cardvault/cardvault/metrics"
	"github.com/cardvault/cardvault/sqlstore"
	"github.com/cardvault/cardvault/vault"
	"github.com/prometheus/client_golang/prometheus"
)

// shutdownDrain is how long a stopping server waits for requests in
// flight; the HTTP write timeout bounds any one of them anyway.
const shutdownDrain = 10 * time.Second

// serveCmd is `cardvault serve`: it runs the HTTP service until the
// context ends, then drains in-flight requests and closes the HSM once.
type serveCmd struct {
	vaultRecords      `embed:""`
	vaultSettings     `embed:"" group:"issuing and budgets"`
	listenSettings    `embed:"" group:"listeners"`
	tokensFileSetting `embed:"" group:"listeners"`
}

func (c *serveCmd) Run(in *invocation) error {
	ctx, log := in.ctx, in.log
	if c.TokensFile == "" {
		return errors.New("CARDVAULT_API_TOKENS_FILE is not set: it names the file of API token hashes; make the first token with `cardvault token create --name NAME --scopes SCOPES`, which creates the file")
	}
	tokens, err := httpapi.LoadTokens(c.TokensFile, log)
	if errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("CARDVAULT_API_TOKENS_FILE=%s: no such file; make the first token with `cardvault token create --name NAME --scopes SCOPES`, which creates it", c.TokensFile)
	}
	if err != nil {
		return err
	}
	vcfg := c.vaultConfig()
	tlsCfg, subjects, err := c.serverTLS()
	if err != nil {
		return err
	}
	m, store, err := c.openServing(ctx, log)
	if err != nil {
		return err
	}
	// Closed once, the store first: closing it checkpoints the audit
	// chains with the HSM.
	defer func() {
		if err := store.Close(); err != nil {
			log.Error("database close failed", "error", err)
		} else {
			log.Info("database closed")
		}
		m.Close()
		log.Info("hsm closed")
	}()
	ms := instrument(m, store)
	vcfg.Log, vcfg.Observer = log, ms.Vault()
	svc, err := vault.NewService(m, store, vcfg)
	if err != nil {
		return err
	}

	metricsAddr := c.MetricsListen
	hs := newHTTPServer(log, m, store, svc, tokens, subjects, ms.Registry(), metricsAddr != "")
	if metricsAddr != "" {
		stop, err := serveMetrics(metricsAddr, ms, log)
		if err != nil {
			return err
		}
		defer stop()
	}
	ln, err := net.Listen("tcp", c.Listen)
	if err != nil {
		return err
	}
	if tlsCfg != nil {
		ln = tls.NewListener(ln, tlsCfg)
	}
	log.Info("cardvault serving", "addr", ln.Addr().String(), "token", m.Label(),
		"tls", tlsCfg != nil, "client_certificates", tlsCfg != nil && tlsCfg.ClientCAs != nil)
	errc := make(chan error, 1)
	go func() { errc <- hs.Serve(ln) }()
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
	}
	log.Info("shutting down: no new connections; draining requests in flight", "deadline", shutdownDrain)
	shutdownCtx, cancel := context.WithTimeout(context.Background(), shutdownDrain)
	defer cancel()
	if err := hs.Shutdown(shutdownCtx); err != nil {
		return fmt.Errorf("shutdown: requests still in flight after %s: %w", shutdownDrain, err)
	}
	log.Info("drained")
	if err := <-errc; err != nil && !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}

// instrument makes the metrics set and has the token and the store
// report to it.
func instrument(m *hsm.Serving, store *sqlstore.Store) *metrics.Set {
	ms := metrics.New()
	m.SetObserver(ms.HSM())
	store.SetObserver(ms.Store(store.Kind()))
	ms.WatchHSM(m)
	ms.WatchStore(store)
	return ms
}

// serveMetrics serves /metrics alone on addr ($CARDVAULT_METRICS_LISTEN):
// a scraper then needs no route to the API listener, and the API listener
// no longer tells anyone who asks how the vault is doing. It returns the
// function that stops it.
func serveMetrics(addr string, ms *metrics.Set, log *slog.Logger) (func(), error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("CARDVAULT_METRICS_LISTEN: %w", err)
	}
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", httpapi.MetricsHandler(ms.Registry()))
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second, WriteTimeout: 30 * time.Second}
	go func() {
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			log.Error("metrics listener failed", "error", err)
		}
	}()
	log.Info("metrics serving", "addr", ln.Addr().String())
	return func() { srv.Close() }, nil
}

// newHTTPServer is the HTTP service over the vault, with the timeouts
// every listener gets; bench serves the same one. With metricsElsewhere
// the API listener does not serve /metrics.
func newHTTPServer(log *slog.Logger, m *hsm.Serving, store vault.Store, svc *vault.Service, tokens *httpapi.Tokens, subjects map[string][]string, reg *prometheus.Registry, metricsElsewhere bool) *http.Server {
	return &http.Server{
		Handler: httpapi.New(httpapi.Config{
			Logger:           log,
			Service:          svc,
			Tokens:           tokens,
			Metrics:          reg,
			MetricsElsewhere: metricsElsewhere,
			// Only with a client CA are there verified subjects to map.
			CertSubjects: subjects,
			Ready: []httpapi.Check{
				{Name: "hsm", Check: m.Probe},
				{Name: "database", Check: store.Ping},
				{Name: "keys", Check: m.RequireKeys},
				{Name: "seal", Check: m.SealRoundTrip},
			},
			KeyRefresh: m.KeyRefresh(),
			Notices: func() []string {
				var out []string
				for _, r := range m.Rejections() {
					out = append(out, "key object rejected: "+r.String())
				}
				return append(out, m.Limitations()...)
			},
		}),
		ReadHeaderTimeout: 5 * time.Second,
		ReadTimeout:       15 * time.Second,
		WriteTimeout:      30 * time.Second,
		IdleTimeout:       120 * time.Second,
	}
}
