package httpapi

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"net/url"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/cardvault/cardvault/sqlstore"
)

// fuzzRoutes is every authenticated route a client reaches, as
// method and template; each :param takes the fuzzed path parameter.
var fuzzRoutes = []struct{ method, path string }{
	{http.MethodPost, "/api/v1/jiko-accounts/:a/virtual-cards"},
	{http.MethodPost, "/api/v1/jiko-accounts/:a/virtual-cards/:c"},
	{http.MethodDelete, "/api/v1/jiko-accounts/:a/virtual-cards/:c"},
	{http.MethodGet, "/api/v1/jiko-accounts/:a/cards"},
	{http.MethodGet, "/api/v1/jiko-accounts/:a/cards/:c/status"},
	{http.MethodPatch, "/api/v1/jiko-accounts/:a/cards/:c/status"},
	{http.MethodPost, "/api/v1/jiko-accounts/:a/cards/:c/close"},
	{http.MethodPost, "/api/v1/jiko-accounts/:a/card-orders"},
	{http.MethodGet, "/api/v1/jiko-accounts/:a/card-orders/:o"},
	{http.MethodPost, "/api/v1/jiko-accounts/:a/cards/:c/pin"},
	{http.MethodPost, "/api/v1/jiko-accounts/:a/cards/:c/pin/view"},
	{http.MethodPost, "/api/v1/sandbox/generate-card"},
	{http.MethodPost, "/v1/cards"},
	{http.MethodPost, "/v1/cards/lookup"},
	{http.MethodGet, "/v1/cards/:id"},
	{http.MethodPost, "/v1/cards/:id/virtual_card_requests"},
	{http.MethodPost, "/v1/cards/:id/pin_update_requests"},
	{http.MethodPost, "/v1/cards/:id/pin_view_requests"},
	{http.MethodPost, "/v1/cards/:id/verification"},
	{http.MethodPost, "/v1/cards/verify_pin"},
	{http.MethodPost, "/v1/mfa/devices"},
	{http.MethodGet, "/v1/mfa/devices/:id"},
	{http.MethodDelete, "/v1/mfa/devices/:id"},
	{http.MethodPost, "/v1/mfa/devices/:id/keys"},
	{http.MethodPut, "/v1/mfa/challenges/signatures/:id"},
}

var paramPattern = regexp.MustCompile(`:[a-z]+`)

// longDigits finds digit runs long enough to be card data.
var longDigits = regexp.MustCompile(`[0-9]{12,}`)

// FuzzRoutes sends fuzzed JSON bodies and path parameters to every route
// of a real server (a SoftHSM2 token with every key, SQLite), with a token
// holding every scope. Whatever the input: no panic, no 5xx, an answer
// that is JSON, and an error answer that never echoes a digit run of
// card-data length from the body.
func FuzzRoutes(f *testing.F) {
	store, err := sqlstore.OpenSQLite(context.Background(), filepath.Join(f.TempDir(), "vault.db"))
	if err != nil {
		f.Fatal(err)
	}
	f.Cleanup(func() { store.Close() })
	s := newBenchStackOn(f, store)
	pinCT := base64.StdEncoding.EncodeToString(make([]byte, 512))
	seeds := []string{
		`{"public_key":"-----BEGIN PUBLIC KEY-----\nMIIBIjANBgkqhkiG9w0BAQEFAAOCAQ8AMIIBCgKCAQEA\n-----END PUBLIC KEY-----\n"}`,
		`{"owner_id":"person-1","pan":"4000001234567899","cvv":"123","expiry_month":12,"expiry_year":2030,"name":"A B"}`,
		`{"pan":"4000001234567899"}`,
		`{"encrypted_pin":"` + pinCT + `"}`,
		`{"encrypted_pin":"not base64!"}`,
		`{"status":"ACTIVE"}`,
		`{"reason":"LOST"}`,
		`{"person_id":"person-1","key_type":"ecdsa-p256","key":"04ab","key_purpose":"unrestricted"}`,
		`{"signature":"3045"}`,
		`{"device_id":"d","signature":"30","jwk":{"kty":"RSA","n":"AQAB","e":"AQAB"},"jwe":{"alg":"RSA_OAEP_256","enc":"A256GCM"}}`,
		`{"card_id":"x","pin_block":"000102030405060708090a0b0c0d0e0f","zone_key_version":1}`,
		`{"cvv":"123","expiry":"12/30"}`,
		`{"card_type":"PHYSICAL","shipping_address":{"line_1":"1 Main St"}}`,
		`[]`, `null`, `{"pan":4000001234567899}`, `{"a":`, "",
	}
	for i := range fuzzRoutes {
		for _, param := range []string{"acct-1", "../../etc", "%00", strings.Repeat("x", 70)} {
			f.Add(uint8(i), param, []byte(seeds[i%len(seeds)]))
		}
	}
	for i, seed := range seeds {
		f.Add(uint8(i), "acct-1", []byte(seed))
	}
	f.Fuzz(func(t *testing.T, route uint8, param string, body []byte) {
		r := fuzzRoutes[int(route)%len(fuzzRoutes)]
		path := paramPattern.ReplaceAllString(r.path, url.PathEscape(param))
		req := httptest.NewRequest(r.method, "http://vault"+path, bytes.NewReader(body))
		req.Header.Set("Authorization", "Bearer "+s.token)
		req.Header.Set("Content-Type", "application/json")
		rec := httptest.NewRecorder()
		s.handler.ServeHTTP(rec, req)
		if rec.Code >= 500 {
			t.Fatalf("%s %s: %d %s", r.method, r.path, rec.Code, rec.Body)
		}
		if rec.Body.Len() > 0 && !json.Valid(rec.Body.Bytes()) {
			t.Fatalf("%s %s: %d answer is not JSON: %.200q", r.method, r.path, rec.Code, rec.Body)
		}
		if rec.Code >= 400 {
			for _, run := range longDigits.FindAll(body, -1) {
				if bytes.Contains(rec.Body.Bytes(), run) {
					t.Fatalf("%s %s: error answer echoes a digit run from the body", r.method, r.path)
				}
			}
		}
	})
}
