package main

import (
	"context"
	"crypto/tls"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"time"

	"github.com/cardvault/cardvault/hsm"
	"github.com/cardvault/cardvault/httpapi"
	"github.com/cardvault/cardvault/vault"
)

// shutdownDrain is how long a stopping server waits for requests in
// flight; the HTTP write timeout bounds any one of them anyway.
const shutdownDrain = 10 * time.Second

// serveCmd runs the HTTP service until ctx ends, then drains in-flight
// requests and closes the HSM once.
func serveCmd(ctx context.Context, args []string, log *slog.Logger) error {
	fs := flag.NewFlagSet("serve", flag.ContinueOnError)
	listen := fs.String("listen", getenv(envListen, "127.0.0.1:8080"), "listen address ($"+envListen+")")
	if err := fs.Parse(args); err != nil {
		return err
	}
	tokensPath := os.Getenv(envTokensFile)
	if tokensPath == "" {
		return errors.New(envTokensFile + " is not set; make a token with `cardvault token create`")
	}
	tokens, err := httpapi.LoadTokens(tokensPath, log)
	if err != nil {
		return err
	}
	vcfg, err := vaultConfig()
	if err != nil {
		return err
	}
	tlsCfg, subjects, err := serverTLS()
	if err != nil {
		return err
	}
	m, store, err := openVault(ctx, log)
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
	svc, err := vault.NewService(m, store, vcfg)
	if err != nil {
		return err
	}

	hs := newHTTPServer(log, m, store, svc, tokens, subjects)
	ln, err := net.Listen("tcp", *listen)
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

// newHTTPServer is the HTTP service over the vault, with the timeouts
// every listener gets; bench serves the same one.
func newHTTPServer(log *slog.Logger, m *hsm.Module, store vault.Store, svc *vault.Service, tokens *httpapi.Tokens, subjects map[string][]string) *http.Server {
	return &http.Server{
		Handler: httpapi.New(httpapi.Config{
			Logger:  log,
			Service: svc,
			Tokens:  tokens,
			// Only with a client CA are there verified subjects to map.
			CertSubjects: subjects,
			Ready: []httpapi.Check{
				{Name: "hsm", Check: m.Probe},
				{Name: "database", Check: store.Ping},
				{Name: "keys", Check: m.RequireKeys},
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
