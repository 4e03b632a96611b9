// Command web-reveal is an example API tier for cardvault's browser reveal
// component: it stands in for a card issuer's backend.
//
// It serves two origins. The demo origin serves the issuer's page, which
// embeds the component in an iframe. The component origin serves the
// component and the four calls it makes, which this backend forwards to
// the vault with its own API token, as a real backend would. The browser
// never sees the vault token, and this backend never sees card data: the
// vault encrypts the details to a key that only the browser holds, and
// this backend passes the JWE on.
//
// The cardholder signs in on the demo origin (one cardholder, --person,
// with the password in WEB_REVEAL_PASSWORD_FILE): the sign-in form is
// guarded against cross-site posts by its Origin and a CSRF token, and
// the session is a cookie of the demo origin. The demo page hands the
// component a ticket for that session in the frame's URL fragment; the
// component sends it as a bearer credential on each call, which a page
// on another site can neither read nor send. Whose device is bound, and
// whose card is revealed, comes from the session, never from the
// browser.
//
// It holds two vault tokens, as the threat model advises: one with
// devices:write for binding, one with cards:reveal (and pin:view, for the
// PIN display) for reveals, so that neither alone binds a device and
// reveals through it.
//
//	CARDVAULT_URL=http://127.0.0.1:8080 \
//	CARDVAULT_DEVICES_TOKEN_FILE=devices.token CARDVAULT_REVEAL_TOKEN_FILE=reveal.token \
//	WEB_REVEAL_PASSWORD_FILE=password \
//	  go run ./examples/web-reveal --person person-1 --card CARD_ID
package main

import (
	"bytes"
	"context"
	"embed"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"html/template"
	"io"
	"io/fs"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/signal"
	"regexp"
	"strings"
	"syscall"
	"time"
)

//go:embed static
var static embed.FS

// deviceData is what the component's device reports to Solaris's device
// fields: a web device, by this component.
const deviceData = "Web;cardvault-reveal;1"

// idPattern is the form of device, challenge and card ids the backend
// puts in a vault path.
var idPattern = regexp.MustCompile(`^[A-Za-z0-9_-]{1,64}$`)

func main() {
	if err := run(os.Args[1:], os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "web-reveal:", err)
		os.Exit(1)
	}
}

// config is the backend's settings: flags for addresses and the demo's
// cardholder, the environment for the vault, its tokens and the
// cardholder's password.
type config struct {
	demoAddr, componentAddr   string
	person, card              string
	hideAfter                 int
	vault                     string
	devicesToken, revealToken string
	password                  string
}

func parseConfig(args []string) (*config, error) {
	fs := flag.NewFlagSet("web-reveal", flag.ContinueOnError)
	c := &config{}
	fs.StringVar(&c.demoAddr, "demo-listen", "127.0.0.1:8091", "address of the demo page's origin")
	fs.StringVar(&c.componentAddr, "component-listen", "127.0.0.1:8092", "address of the reveal component's origin (must differ from the demo's)")
	fs.StringVar(&c.person, "person", "person-1", "the signed-in cardholder (a real backend takes it from its session)")
	fs.StringVar(&c.card, "card", "", "the card the demo page shows")
	fs.IntVar(&c.hideAfter, "hide-after", 30, "seconds the details stay shown (1 to 300)")
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	switch {
	case !idPattern.MatchString(c.person):
		return nil, errors.New("--person: want 1 to 64 letters, digits, '-' or '_'")
	case c.card != "" && !idPattern.MatchString(c.card):
		return nil, errors.New("--card: want a card id")
	case c.hideAfter < 1 || c.hideAfter > 300:
		return nil, errors.New("--hide-after: want 1 to 300 seconds")
	}
	c.vault = strings.TrimRight(os.Getenv("CARDVAULT_URL"), "/")
	if c.vault == "" {
		return nil, errors.New("CARDVAULT_URL: name the vault, e.g. http://127.0.0.1:8080")
	}
	var err error
	if c.devicesToken, err = secret("CARDVAULT_DEVICES_TOKEN", "a vault token with devices:write"); err != nil {
		return nil, err
	}
	if c.revealToken, err = secret("CARDVAULT_REVEAL_TOKEN", "a vault token with cards:reveal (and pin:view, for the PIN display)"); err != nil {
		return nil, err
	}
	if c.devicesToken == c.revealToken {
		return nil, errors.New("CARDVAULT_DEVICES_TOKEN and CARDVAULT_REVEAL_TOKEN are one token: give binding and reveals a token each")
	}
	if c.password, err = secret("WEB_REVEAL_PASSWORD", "the demo cardholder's password"); err != nil {
		return nil, err
	}
	return c, nil
}

// secret reads NAME_FILE, or else NAME; never a flag, which other users
// can read.
func secret(name, what string) (string, error) {
	if path := os.Getenv(name + "_FILE"); path != "" {
		b, err := os.ReadFile(path)
		if err != nil {
			return "", fmt.Errorf("%s_FILE: %w", name, err)
		}
		if s := strings.TrimSpace(string(b)); s != "" {
			return s, nil
		}
		return "", fmt.Errorf("%s_FILE %s is empty", name, path)
	}
	if s := os.Getenv(name); s != "" {
		return s, nil
	}
	return "", fmt.Errorf("set %s_FILE (or %s) to %s", name, name, what)
}

func run(args []string, stdout io.Writer) error {
	c, err := parseConfig(args)
	if err != nil {
		return err
	}
	demoLn, err := net.Listen("tcp", c.demoAddr)
	if err != nil {
		return err
	}
	componentLn, err := net.Listen("tcp", c.componentAddr)
	if err != nil {
		return err
	}
	demoOrigin, componentOrigin := "http://"+demoLn.Addr().String(), "http://"+componentLn.Addr().String()
	b := newBackend(c, &http.Client{Timeout: 20 * time.Second}, slog.New(slog.NewJSONHandler(os.Stderr, nil)), demoOrigin, componentOrigin)
	servers := []*http.Server{
		{Handler: b.demoRoutes(), ReadHeaderTimeout: 5 * time.Second},
		{Handler: b.componentRoutes(), ReadHeaderTimeout: 5 * time.Second},
	}
	errs := make(chan error, 2)
	go func() { errs <- servers[0].Serve(demoLn) }()
	go func() { errs <- servers[1].Serve(componentLn) }()
	fmt.Fprintf(stdout, "demo: %s/\ncomponent: %s/\n", demoOrigin, componentOrigin)
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	select {
	case err = <-errs:
	case <-ctx.Done():
	}
	shutdown, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	for _, s := range servers {
		s.Shutdown(shutdown)
	}
	return err
}

// backend signs the cardholder in and forwards the component's calls to
// the vault.
type backend struct {
	cfg                         *config
	vault                       *http.Client
	log                         *slog.Logger
	demoOrigin, componentOrigin string
	sessions                    *sessions
}

func newBackend(c *config, vault *http.Client, log *slog.Logger, demoOrigin, componentOrigin string) *backend {
	return &backend{cfg: c, vault: vault, log: log, demoOrigin: demoOrigin, componentOrigin: componentOrigin, sessions: newSessions()}
}

var (
	demoPage   = template.Must(template.ParseFS(static, "static/demo.html"))
	signInPage = template.Must(template.ParseFS(static, "static/signin.html"))
)

// demoRoutes is the issuer's site: its sign-in, and its page, which
// embeds the component's origin and nothing of the card but its id.
func (b *backend) demoRoutes() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("POST /signin", b.signIn)
	mux.HandleFunc("POST /signout", b.signOut)
	mux.HandleFunc("GET /{$}", func(w http.ResponseWriter, r *http.Request) {
		s := b.sessions.fromCookie(r)
		if s == nil {
			b.showSignIn(w, http.StatusOK, "")
			return
		}
		card := r.URL.Query().Get("card")
		if card == "" {
			card = b.cfg.card
		}
		if !idPattern.MatchString(card) {
			http.Error(w, "name a card: ?card=ID or --card", http.StatusBadRequest)
			return
		}
		query := url.Values{"card": {card}, "hide": {fmt.Sprint(b.cfg.hideAfter)}, "host": {b.demoOrigin}}
		// The ticket rides in the fragment, which no request carries.
		src := b.componentOrigin + "/frame.html?" + query.Encode() + "#" + url.Values{"ticket": {s.ticket}}.Encode()
		w.Header().Set("Content-Security-Policy", "default-src 'none'; script-src 'self'; style-src 'self'; frame-src "+b.componentOrigin+"; base-uri 'none'; form-action 'self'")
		secureHeaders(w)
		formPage(w)
		csrf := randomToken() // for the sign-out form
		http.SetCookie(w, cookie("csrf", csrf, int(sessionTTL.Seconds())))
		demoPage.Execute(w, map[string]string{"Frame": src, "ComponentOrigin": b.componentOrigin, "Person": s.person, "CSRF": csrf})
	})
	mux.Handle("GET /demo.js", staticFile("static/demo.js"))
	mux.Handle("GET /demo.css", staticFile("static/demo.css"))
	return b.canonicalHost(mux)
}

// canonicalHost sends a request made to another name of the demo's address
// (http://localhost:8091 for 127.0.0.1:8091) to the demo's origin: the
// component lets that origin alone frame it, and a page under another name
// would show an empty frame with the reason only in DevTools. A Host the
// demo does not answer to (DNS rebinding) gets nothing else either.
func (b *backend) canonicalHost(next http.Handler) http.Handler {
	host := strings.TrimPrefix(b.demoOrigin, "http://")
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Host != host {
			http.Redirect(w, r, b.demoOrigin+r.URL.RequestURI(), http.StatusPermanentRedirect)
			return
		}
		next.ServeHTTP(w, r)
	})
}

// componentRoutes is the component's origin: its page and module, which
// only the demo origin may frame, and the calls it makes.
func (b *backend) componentRoutes() http.Handler {
	mux := http.NewServeMux()
	frame := staticFile("static/frame.html")
	mux.HandleFunc("GET /frame.html", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Security-Policy", "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors "+b.demoOrigin)
		frame.ServeHTTP(w, r)
	})
	mux.Handle("GET /cardvault-reveal.js", staticFile("static/cardvault-reveal.js"))
	mux.Handle("GET /frame.js", staticFile("static/frame.js"))
	mux.Handle("GET /frame.css", staticFile("static/frame.css"))
	mux.HandleFunc("POST /api/device", b.sameOrigin(b.signedIn(b.registerDevice)))
	mux.HandleFunc("POST /api/device/verify", b.sameOrigin(b.signedIn(b.verifyDevice)))
	mux.HandleFunc("POST /api/cards/{card}/reveal", b.sameOrigin(b.signedIn(b.viewOnDevice("reveal", "virtual_card_requests"))))
	mux.HandleFunc("POST /api/cards/{card}/pin", b.sameOrigin(b.signedIn(b.viewOnDevice("show PIN", "pin_view_requests"))))
	return mux
}

func secureHeaders(w http.ResponseWriter) {
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.Header().Set("Referrer-Policy", "no-referrer")
	w.Header().Set("Cache-Control", "no-store")
}

func staticFile(name string) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, err := fs.ReadFile(static, name)
		if err != nil {
			http.NotFound(w, r)
			return
		}
		secureHeaders(w)
		http.ServeContent(w, r, name, time.Time{}, bytes.NewReader(body))
	})
}

// sameOrigin admits only JSON posted by the component's own pages: a
// cross-site form cannot set the content type, and a script elsewhere
// sends its own Origin.
func (b *backend) sameOrigin(next http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Origin") != b.componentOrigin || r.Header.Get("Content-Type") != "application/json" {
			writeError(w, http.StatusForbidden, "not from the component")
			return
		}
		r.Body = http.MaxBytesReader(w, r.Body, 16<<10)
		next(w, r)
	}
}

// signedIn admits a call that carries a live session's ticket as its
// bearer credential, and hands the handler that session.
func (b *backend) signedIn(next func(http.ResponseWriter, *http.Request, *session)) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		ticket, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
		s := b.sessions.fromTicket(ticket)
		if !ok || s == nil {
			w.Header().Set("WWW-Authenticate", `Bearer realm="web-reveal"`)
			writeError(w, http.StatusUnauthorized, "sign in first")
			return
		}
		next(w, r, s)
	}
}

// registerDevice binds the browser's public key to the signed-in
// cardholder and returns the challenge the browser signs.
func (b *backend) registerDevice(w http.ResponseWriter, r *http.Request, s *session) {
	var in struct {
		Key string `json:"key"`
	}
	if !decode(w, r, &in) {
		return
	}
	var reg struct {
		ID        string `json:"id"`
		Challenge struct {
			ID           string `json:"id"`
			StringToSign string `json:"string_to_sign"`
		} `json:"challenge"`
	}
	status, err := b.call(r.Context(), b.cfg.devicesToken, "POST", "/v1/mfa/devices", map[string]any{
		"person_id": s.person, "key_type": "ecdsa-p256", "key": in.Key, "key_purpose": "unrestricted",
		"challenge_type": "signature", "name": "Web browser", "device_data": deviceData,
	}, http.StatusAccepted, &reg)
	if err != nil {
		b.fail(w, "register device", status, err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]string{"device_id": reg.ID, "challenge_id": reg.Challenge.ID, "string_to_sign": reg.Challenge.StringToSign})
}

// verifyDevice passes the signed challenge on.
func (b *backend) verifyDevice(w http.ResponseWriter, r *http.Request, _ *session) {
	var in struct {
		ChallengeID string `json:"challenge_id"`
		Signature   string `json:"signature"`
	}
	if !decode(w, r, &in) {
		return
	}
	if !idPattern.MatchString(in.ChallengeID) {
		writeError(w, http.StatusBadRequest, "challenge_id: want a challenge id")
		return
	}
	status, err := b.call(r.Context(), b.cfg.devicesToken, "PUT", "/v1/mfa/challenges/signatures/"+in.ChallengeID,
		map[string]any{"signature": in.Signature, "device_data": deviceData}, http.StatusNoContent, nil)
	if err != nil {
		b.fail(w, "verify device", status, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

// viewOnDevice asks the vault for a card's secure view, or its PIN view,
// to the browser's fresh key, always as RSA-OAEP-256 with A256GCM
// (WebCrypto can do neither RSA1_5 nor the Android OAEP variant), and
// passes the JWE on unread.
func (b *backend) viewOnDevice(step, route string) func(http.ResponseWriter, *http.Request, *session) {
	return func(w http.ResponseWriter, r *http.Request, _ *session) {
		b.forwardView(w, r, step, route)
	}
}

func (b *backend) forwardView(w http.ResponseWriter, r *http.Request, step, route string) {
	card := r.PathValue("card")
	if !idPattern.MatchString(card) {
		writeError(w, http.StatusBadRequest, "card: want a card id")
		return
	}
	var in struct {
		DeviceID  string          `json:"device_id"`
		Signature string          `json:"signature"`
		JWK       json.RawMessage `json:"jwk"`
	}
	if !decode(w, r, &in) {
		return
	}
	var out struct {
		Data string `json:"data"`
	}
	status, err := b.call(r.Context(), b.cfg.revealToken, "POST", "/v1/cards/"+card+"/"+route, map[string]any{
		"device_id": in.DeviceID, "signature": in.Signature, "jwk": in.JWK,
		"jwe": map[string]string{"alg": "RSA_OAEP_256", "enc": "A256GCM"}, "device_data": deviceData,
	}, http.StatusOK, &out)
	if err != nil {
		b.fail(w, step, status, err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]string{"data": out.Data})
}

// call sends one request to the vault with one of the backend's tokens
// and decodes the answer; a status other than want is an error carrying
// it.
func (b *backend) call(ctx context.Context, token, method, path string, body any, want int, out any) (int, error) {
	payload, err := json.Marshal(body)
	if err != nil {
		return 0, err
	}
	req, err := http.NewRequestWithContext(ctx, method, b.cfg.vault+path, bytes.NewReader(payload))
	if err != nil {
		return 0, err
	}
	req.Header.Set("Authorization", "Bearer "+token)
	req.Header.Set("Content-Type", "application/json")
	resp, err := b.vault.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	answer, err := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	if err != nil {
		return 0, err
	}
	if resp.StatusCode != want {
		return resp.StatusCode, fmt.Errorf("vault answered %d", resp.StatusCode)
	}
	if out == nil {
		return resp.StatusCode, nil
	}
	return resp.StatusCode, json.Unmarshal(answer, out)
}

// fail answers with the vault's refusal status (or 502 when the vault was
// not reached) and a fixed message; the log gets the step and status,
// never a body.
func (b *backend) fail(w http.ResponseWriter, step string, status int, err error) {
	b.log.Warn("vault call failed", "step", step, "status", status, "error", err)
	if status < 400 || status > 599 {
		status = http.StatusBadGateway
	}
	writeError(w, status, step+" failed")
}

func decode(w http.ResponseWriter, r *http.Request, dst any) bool {
	dec := json.NewDecoder(r.Body)
	dec.DisallowUnknownFields()
	if err := dec.Decode(dst); err != nil {
		writeError(w, http.StatusBadRequest, "body: want the component's JSON")
		return false
	}
	return true
}

func writeJSON(w http.ResponseWriter, status int, body any) {
	secureHeaders(w)
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(body)
}

func writeError(w http.ResponseWriter, status int, msg string) {
	writeJSON(w, status, map[string]string{"error": msg})
}
