package httpapi

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/cardvault/cardvault/vault"
)

// fakeVault is the domain as the edge sees it: each method the tests use
// records what reached it and answers err, or a canned success. A route
// the test did not expect to reach the domain calls the nil embedded
// interface and panics.
type fakeVault struct {
	Vault
	err     error
	calls   int
	pinCT   []byte
	request vault.SecureViewRequest
}

func (f *fakeVault) IssueVirtual(_ context.Context, _ vault.Caller, _, _ string, _ *vault.IdemKey) (*vault.RSAReveal, error) {
	f.calls++
	if f.err != nil {
		return nil, f.err
	}
	return &vault.RSAReveal{CardID: "card-1", EncryptedPAN: []byte{1}, EncryptedCVV: []byte{2}, EncryptedExpiration: []byte{3}}, nil
}

func (f *fakeVault) SetPINJiko(_ context.Context, _ vault.Caller, _, _ string, ct []byte) error {
	f.calls++
	f.pinCT = append([]byte(nil), ct...)
	return f.err
}

func (f *fakeVault) SecureView(_ context.Context, _ vault.Caller, in vault.SecureViewRequest, _ *vault.IdemKey) (string, error) {
	f.calls++
	f.request = in
	return "a.b.c.d.e", f.err
}

// edge is the HTTP surface over a fake domain, with a token of every scope
// and one that may only read.
type edge struct {
	fake            *fakeVault
	handler         http.Handler
	full, read      string
	log             *bytes.Buffer
	jikoCreate, sv  string
	jikoPIN, cardID string
}

func newEdge(t *testing.T) *edge {
	t.Helper()
	full, fullLine, _ := NewToken("full", []string{ScopeCardsWrite, ScopeCardsRead, ScopeCardsReveal, ScopePINWrite, ScopeDevicesWrite})
	read, readLine, _ := NewToken("reader", []string{ScopeCardsRead})
	path := filepath.Join(t.TempDir(), "tokens")
	if err := os.WriteFile(path, []byte(fullLine+"\n"+readLine+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	tokens, err := LoadTokens(path, nil)
	if err != nil {
		t.Fatal(err)
	}
	fake := &fakeVault{}
	var log bytes.Buffer
	h := New(Config{Service: fake, Tokens: tokens, Logger: slog.New(slog.NewJSONHandler(&log, nil))})
	return &edge{fake: fake, handler: h, full: full, read: read, log: &log,
		jikoCreate: "/api/v1/jiko-accounts/acct-1/virtual-cards",
		jikoPIN:    "/api/v1/jiko-accounts/acct-1/cards/card-1/pin",
		sv:         "/v1/cards/card-1/virtual_card_requests"}
}

func (e *edge) do(method, path, token, body string, header ...string) *httptest.ResponseRecorder {
	req := httptest.NewRequest(method, "http://vault"+path, strings.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	rec := httptest.NewRecorder()
	e.handler.ServeHTTP(rec, req)
	return rec
}

// jikoDetail is FastAPI's validation shape: the first item's location and
// message.
func jikoDetail(t *testing.T, rec *httptest.ResponseRecorder) ([]string, string) {
	t.Helper()
	var body struct {
		Detail []struct {
			Loc []string `json:"loc"`
			Msg string   `json:"msg"`
		} `json:"detail"`
	}
	if err := json.Unmarshal(rec.Body.Bytes(), &body); err != nil || len(body.Detail) != 1 {
		t.Fatalf("not one FastAPI validation item: %v %s", err, rec.Body)
	}
	return body.Detail[0].Loc, body.Detail[0].Msg
}

type solarisItem struct {
	ID     string `json:"id"`
	Status int    `json:"status"`
	Code   string `json:"code"`
	Detail string `json:"detail"`
	Source *struct {
		Field string `json:"field"`
	} `json:"source"`
}

func solarisErrors(t *testing.T, rec *httptest.ResponseRecorder) solarisItem {
	t.Helper()
	var body struct {
		Errors []solarisItem `json:"errors"`
	}
	if err := json.Unmarshal(rec.Body.Bytes(), &body); err != nil || len(body.Errors) != 1 {
		t.Fatalf("not one Solaris error: %v %s", err, rec.Body)
	}
	return body.Errors[0]
}

func TestAuthenticationAndScopes(t *testing.T) {
	e := newEdge(t)
	pem := `{"public_key":"x"}`
	for _, tc := range []struct {
		name, token string
	}{{"no token", ""}, {"unknown token", "cvt_wrong"}, {"a token with one character dropped", e.full[:len(e.full)-1]}} {
		rec := e.do("POST", e.jikoCreate, tc.token, pem)
		if rec.Code != 401 || rec.Header().Get("WWW-Authenticate") != `Bearer realm="cardvault"` {
			t.Errorf("%s: %d, WWW-Authenticate %q", tc.name, rec.Code, rec.Header().Get("WWW-Authenticate"))
		}
	}
	rec := e.do("POST", e.jikoCreate, e.read, pem)
	if rec.Code != 403 || !strings.Contains(rec.Body.String(), "token lacks scope cards:write") {
		t.Errorf("read-only token issuing a card: %d %s", rec.Code, rec.Body)
	}
	rec = e.do("POST", e.sv, "", `{}`)
	if item := solarisErrors(t, rec); rec.Code != 401 || item.Code != "unauthorized" || item.Status != 401 {
		t.Errorf("Solaris route without a token: %d %s", rec.Code, rec.Body)
	}
	if e.fake.calls != 0 {
		t.Fatalf("an unauthenticated or unscoped request reached the domain %d times", e.fake.calls)
	}
	if rec := e.do("POST", e.jikoCreate, e.full, pem); rec.Code != 201 || e.fake.calls != 1 {
		t.Fatalf("a token with the scope: %d %s, %d calls", rec.Code, rec.Body, e.fake.calls)
	}
	if strings.Contains(e.log.String(), e.full) || strings.Contains(e.log.String(), e.read) {
		t.Fatal("a bearer token was logged")
	}
}

func TestTheEdgeRefusesMalformedRequestsBeforeTheDomain(t *testing.T) {
	e := newEdge(t)
	for _, tc := range []struct {
		name, method, path, body string
		status                   int
		loc, msg                 string
	}{
		{"no body", "POST", e.jikoCreate, "", 422, "body", "is required"},
		{"malformed JSON", "POST", e.jikoCreate, `{"public_key":`, 422, "body", "must be valid JSON"},
		{"array body", "POST", e.jikoCreate, `[]`, 422, "body", "must be a JSON object"},
		{"missing field", "POST", e.jikoCreate, `{}`, 422, "body,public_key", "is required"},
		{"wrong type", "POST", e.jikoCreate, `{"public_key":42}`, 422, "body,public_key", "must be a string"},
		{"unknown field", "POST", e.jikoCreate, `{"public_key":"x","colour":"red"}`, 422, "body,colour", ""},
		{"bad account id", "POST", "/api/v1/jiko-accounts/a%20b/virtual-cards", `{"public_key":"x"}`, 422, "path,account_id", "must be 1 to 64 letters"},
		{"bad idempotency key", "POST", e.jikoCreate, `{"public_key":"x"}`, 422, "header,Idempotency-Key", "printable"},
		{"PIN field missing", "POST", e.jikoPIN, `{}`, 422, "body,encrypted_pin", "is required"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var rec *httptest.ResponseRecorder
			if tc.name == "bad idempotency key" {
				rec = e.do(tc.method, tc.path, e.full, tc.body, "Idempotency-Key", "a key with spaces")
			} else {
				rec = e.do(tc.method, tc.path, e.full, tc.body)
			}
			if rec.Code != tc.status {
				t.Fatalf("status %d, want %d: %s", rec.Code, tc.status, rec.Body)
			}
			loc, msg := jikoDetail(t, rec)
			if strings.Join(loc, ",") != tc.loc || !strings.Contains(msg, tc.msg) {
				t.Fatalf("loc %v msg %q; want %s, %q", loc, msg, tc.loc, tc.msg)
			}
		})
	}
	rec := e.do("POST", e.jikoCreate, e.full, `{"public_key":"`+strings.Repeat("A", 70000)+`"}`)
	if rec.Code != 413 || rec.Header().Get("Connection") != "close" || !strings.Contains(rec.Body.String(), "request body is too large") {
		t.Errorf("oversized body: %d %q %s", rec.Code, rec.Header().Get("Connection"), rec.Body)
	}
	rec = e.do("POST", "/api/v1/jiko-accounts/acct-1/nothing", e.full, `{}`)
	if rec.Code != 404 || strings.TrimSpace(rec.Body.String()) != `{"detail":"not found"}` {
		t.Errorf("unknown route: %d %s", rec.Code, rec.Body)
	}
	// Echo's groups answer a method a path lacks as an unknown route,
	// since their middleware (authentication) must run for it too.
	rec = e.do("PUT", e.jikoCreate, e.full, `{}`)
	if rec.Code != 404 || strings.TrimSpace(rec.Body.String()) != `{"detail":"not found"}` {
		t.Errorf("wrong method: %d %s", rec.Code, rec.Body)
	}
	rec = e.do("POST", e.sv, e.full, `{"device_id":"d","signature":"30","jwk":{"kty":"RSA"}}`)
	if item := solarisErrors(t, rec); rec.Code != 400 || item.Code != "validation_error" || item.Source == nil || item.Source.Field != "jwe" {
		t.Errorf("Solaris request without jwe: %d %s", rec.Code, rec.Body)
	}
	if e.fake.calls != 0 {
		t.Fatalf("malformed requests reached the domain %d times", e.fake.calls)
	}
}

// Issue 30, item 11: the API takes JSON only (api/openapi.yaml); a form or
// text/plain body, which a cross-site form can send without a preflight,
// is refused with 415 before it is read, on every surface.
func TestBodiesMustBeJSON(t *testing.T) {
	e := newEdge(t)
	body := `{"public_key":"x"}`
	for _, ct := range []string{"application/x-www-form-urlencoded", "text/plain", "multipart/form-data; boundary=x", "", "application/jsonx"} {
		for _, path := range []string{e.jikoCreate, e.sv} {
			rec := e.do("POST", path, e.full, body, "Content-Type", ct)
			if ct == "" {
				req := httptest.NewRequest("POST", "http://vault"+path, strings.NewReader(body))
				req.Header.Set("Authorization", "Bearer "+e.full)
				rec = httptest.NewRecorder()
				e.handler.ServeHTTP(rec, req)
			}
			if rec.Code != http.StatusUnsupportedMediaType || !strings.Contains(rec.Body.String(), "application/json") {
				t.Errorf("POST %s with Content-Type %q: %d %s, want 415 naming application/json", path, ct, rec.Code, rec.Body)
			}
		}
	}
	for _, ct := range []string{"application/json", "application/json; charset=utf-8", "Application/JSON"} {
		rec := e.do("POST", e.jikoCreate, e.full, `{}`, "Content-Type", ct)
		if rec.Code != 422 {
			t.Errorf("Content-Type %q: %d %s, want the JSON body decoded (422: public_key is required)", ct, rec.Code, rec.Body)
		}
	}
	req := httptest.NewRequest("POST", "http://vault"+e.jikoCreate, nil)
	req.Header.Set("Authorization", "Bearer "+e.full)
	rec := httptest.NewRecorder()
	e.handler.ServeHTTP(rec, req)
	if loc, msg := jikoDetail(t, rec); rec.Code != 422 || strings.Join(loc, ",") != "body" || msg != "is required" {
		t.Errorf("no body and no Content-Type: %d %s, want 422 body is required", rec.Code, rec.Body)
	}
	if e.fake.calls != 0 {
		t.Fatalf("refused bodies reached the domain %d times", e.fake.calls)
	}
}

func TestDomainErrorsTakeEachSurfacesShape(t *testing.T) {
	const secretCause = "cause 4000001234567899 from deep inside"
	for _, tc := range []struct {
		name        string
		err         error
		jiko, sol   int
		solarisCode string
		text        string
		retryAfter  string
	}{
		{"invalid", vault.Invalid("public_key", "must be a PEM-encoded RSA public key"), 422, 400, "validation_error", "must be a PEM-encoded RSA public key", ""},
		{"not found", vault.ErrNotFound, 404, 404, "not_found", "not found", ""},
		{"conflict", vault.Conflict("jwk", "key has received card data before"), 409, 409, "conflict", "key has received card data before", ""},
		{"crypto", vault.ErrCrypto, 400, 400, "invalid_encryption", "cryptographic operation failed", ""},
		{"unavailable", vault.ErrUnavailable, 503, 503, "service_unavailable", "service temporarily unavailable", "1"},
		{"rate limited", &vault.Error{Kind: vault.KindRateLimited, Field: "card", Msg: "reveal budget spent", RetryAfter: 1500 * time.Millisecond}, 429, 429, "rate_limited", "reveal budget spent", "2"},
		{"internal", vault.Internal(errors.New(secretCause)), 500, 500, "generic_error", "internal error", ""},
		{"a bare error", errors.New(secretCause), 500, 500, "generic_error", "internal error", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newEdge(t)
			e.fake.err = tc.err
			rec := e.do("POST", e.jikoCreate, e.full, `{"public_key":"x"}`, "X-Request-Id", "req-42")
			if rec.Code != tc.jiko || !strings.Contains(rec.Body.String(), tc.text) || rec.Header().Get("Retry-After") != tc.retryAfter {
				t.Errorf("Jiko: %d %s Retry-After %q", rec.Code, rec.Body, rec.Header().Get("Retry-After"))
			}
			if tc.jiko == 422 {
				if loc, _ := jikoDetail(t, rec); strings.Join(loc, ",") != "body,public_key" {
					t.Errorf("Jiko loc %v", loc)
				}
			}
			rec = e.do("POST", e.sv, e.full, `{"device_id":"d","signature":"30","jwk":{"kty":"RSA"},"jwe":{"alg":"RSA_OAEP_256","enc":"A256GCM"}}`, "X-Request-Id", "req-43")
			item := solarisErrors(t, rec)
			if rec.Code != tc.sol || item.Status != tc.sol || item.Code != tc.solarisCode || item.ID != "req-43" || !strings.Contains(item.Detail, tc.text) {
				t.Errorf("Solaris: %d %s", rec.Code, rec.Body)
			}
			// Issue 30, item 9: the field is set apart from the message
			// ("expiry_year card has expired" read as one phrase).
			var ve *vault.Error
			if errors.As(tc.err, &ve) && ve.Field != "" && item.Detail != ve.Field+": "+tc.text {
				t.Errorf("Solaris detail %q, want %q", item.Detail, ve.Field+": "+tc.text)
			}
			if strings.Contains(rec.Body.String(), "4000001234567899") {
				t.Errorf("the cause reached the client: %s", rec.Body)
			}
			if tc.jiko == 500 && !strings.Contains(e.log.String(), `"request_id":"req-43"`) {
				t.Errorf("a 500's cause is not logged with its request id: %s", e.log)
			}
		})
	}
}

func TestRequestIDs(t *testing.T) {
	e := newEdge(t)
	if got := e.do("GET", "/healthz", "", "", "X-Request-Id", "abc-123").Header().Get("X-Request-Id"); got != "abc-123" {
		t.Errorf("a well-formed id is not kept: %q", got)
	}
	for _, bad := range []string{"has spaces", strings.Repeat("a", 65), "semi;colon"} {
		got := e.do("GET", "/healthz", "", "", "X-Request-Id", bad).Header().Get("X-Request-Id")
		if got == bad || len(got) != 36 {
			t.Errorf("id %q: answered %q, want one the server made", bad, got)
		}
	}
}

func TestJikoPINCiphertextIsDecodedAtTheEdge(t *testing.T) {
	e := newEdge(t)
	ct := bytes.Repeat([]byte{0xa5}, 512)
	text := base64.StdEncoding.EncodeToString(ct)
	wrapped := text[:76] + "\n" + text[76:]
	if rec := e.do("POST", e.jikoPIN, e.full, `{"encrypted_pin":"`+strings.ReplaceAll(wrapped, "\n", `\n`)+`"}`); rec.Code != 200 || !bytes.Equal(e.fake.pinCT, ct) {
		t.Fatalf("wrapped base64: %d %s, domain got %d bytes", rec.Code, rec.Body, len(e.fake.pinCT))
	}
	e.fake.err = vault.ErrCrypto
	if rec := e.do("POST", e.jikoPIN, e.full, `{"encrypted_pin":"not base64!"}`); rec.Code != 400 || len(e.fake.pinCT) != 0 || e.fake.calls != 2 {
		t.Fatalf("text that is not base64 must reach the domain as an empty ciphertext (audited as an unusable PIN): %d, %d bytes, %d calls",
			rec.Code, len(e.fake.pinCT), e.fake.calls)
	}
}
