package main

import (
	"regexp"
	"strconv"
	"strings"
	"testing"
)

// The Jiko guide's card order spells the country "USA": the vault takes
// ISO 3166-1 alpha-2 and alpha-3 for the supported country, answers with
// what the caller sent, and refuses anything else by the field's name.
func TestOrderCountryAsTheGuideSpellsIt(t *testing.T) {
	jv := newServedVault(t, pinScopes)
	order := func(country string) response {
		return jv.post(t, jv.base+"/api/v1/jiko-accounts/acct-1/card-orders/", map[string]any{"name_on_card": "Jiko Customer",
			"shipping_address": map[string]any{"street_address": "2000 Allston Way", "city": "Berkeley", "postal_code": "94701", "state": "CA", "country": country}}, nil)
	}
	for _, country := range []string{"USA", "US"} {
		if r := order(country); r.status != 201 || !strings.Contains(r.body, `"country":"`+country+`"`) {
			t.Errorf("country %q: %d %s", country, r.status, r.body)
		}
	}
	for _, country := range []string{"CA", "CAN", "usa", "United States", ""} {
		if r := order(country); r.status != 422 || !strings.Contains(r.body, `"loc":["body","shipping_address","country"]`) {
			t.Errorf("country %q: %d %s, want 422 naming shipping_address.country", country, r.status, r.body)
		}
	}
}

// A public key is public: the guide fetches the set_pin key with plain
// curl. Both surfaces' key routes answer without credentials, cacheable for
// no longer than servers trust their view of the keys, with an ETag per key
// version; nothing else becomes public.
func TestPublicKeysNeedNoCredentials(t *testing.T) {
	jv := newServedVault(t, pinScopes, envKeyRefresh+"=30s")
	for _, path := range []string{"/api/v1/public_keys/", "/api/v1/public-keys", "/v1/cards/pin_keys/latest"} {
		r := jv.do(t, "GET", jv.base+path, nil, map[string]string{"Authorization": ""})
		if r.status != 200 || !strings.Contains(r.body, "set_pin") && !strings.Contains(r.body, `"kid":"set-pin-v1"`) {
			t.Fatalf("%s without credentials: %d %s", path, r.status, r.body)
		}
		m := regexp.MustCompile(`max-age=(\d+)`).FindStringSubmatch(r.header.Get("Cache-Control"))
		if m == nil {
			t.Fatalf("%s: Cache-Control %q has no max-age", path, r.header.Get("Cache-Control"))
		}
		if age, _ := strconv.Atoi(m[1]); age > 30 || !strings.Contains(r.header.Get("Cache-Control"), "public") {
			t.Errorf("%s: Cache-Control %q, want public and max-age at most the key refresh (30s)", path, r.header.Get("Cache-Control"))
		}
		etag := r.header.Get("ETag")
		if !strings.Contains(etag, "set-pin-v1") {
			t.Errorf("%s: ETag %q does not name the key version", path, etag)
		}
		if again := jv.do(t, "GET", jv.base+path, nil, map[string]string{"Authorization": "", "If-None-Match": etag}); again.status != 304 || again.body != "" {
			t.Errorf("%s with If-None-Match: %d %q, want 304", path, again.status, again.body)
		}
	}
	for _, path := range []string{"/api/v1/jiko-accounts/acct-1/cards", "/v1/mfa/devices", "/v1/cards/card-1"} {
		if r := jv.do(t, "GET", jv.base+path, nil, map[string]string{"Authorization": ""}); r.status != 401 {
			t.Errorf("%s without credentials: %d, want 401", path, r.status)
		}
	}
}
