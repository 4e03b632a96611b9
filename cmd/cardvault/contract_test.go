package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"github.com/cardvault/cardvault/internal/testsupport/testenv"
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
	if r := jv.do(t, "GET", jv.base+"/openapi.yaml", nil, map[string]string{"Authorization": ""}); r.status != 200 || !strings.HasPrefix(r.body, "openapi: 3.1") {
		t.Errorf("/openapi.yaml without credentials: %d %.40q", r.status, r.body)
	}
	for _, path := range []string{"/api/v1/jiko-accounts/acct-1/cards", "/v1/mfa/devices", "/v1/cards/card-1"} {
		if r := jv.do(t, "GET", jv.base+path, nil, map[string]string{"Authorization": ""}); r.status != 401 {
			t.Errorf("%s without credentials: %d, want 401", path, r.status)
		}
	}
}

// The Jiko guide's commands, as printed, through its own helper: a card
// created and read with openssl, the guide's order body, the sandbox, the
// set_pin key with plain curl and the PIN set (examples/jiko-guide-flow.sh).
func TestJikoGuideFlowVerbatim(t *testing.T) {
	for _, tool := range []string{"openssl", "curl", "jq", "base64"} {
		testenv.RequireCommand(t, tool)
	}
	jv := newServedVault(t, pinScopes)
	script, _ := filepath.Abs("../../examples/jiko-guide-flow.sh")
	cmd := exec.Command("bash", script)
	cmd.Env = append(os.Environ(), "BASE="+jv.base, "TOKEN="+jv.token, "ACCOUNT=guide-acct", "PIN=2580")
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("the guide's flow: %v\n%s", err, out)
	}
	text := string(out)
	pans := regexp.MustCompile(`(?m)^encrypted_pan = ([0-9]{16})$`).FindAllStringSubmatch(text, -1)
	switch {
	case len(pans) != 2 || pans[0][1] != pans[1][1] || !luhn(pans[0][1]):
		t.Fatalf("the card created and read again: %v\n%s", pans, text)
	case !regexp.MustCompile(`(?m)^encrypted_cvv = [0-9]{3}$`).MatchString(text),
		!regexp.MustCompile(`(?m)^encrypted_expiration = [0-9]{2}/[0-9]{2,4}$`).MatchString(text):
		t.Fatalf("cvv or expiration:\n%s", text)
	case !strings.Contains(text, `"status":"INITIAL","country":"USA"`),
		!strings.Contains(text, `"status":"ORDERED"`),
		!strings.Contains(text, `{"set_pin":"-----BEGIN PUBLIC KEY-----`),
		!strings.Contains(text, `{"success":true}`),
		!strings.Contains(text, `"status":"OPEN"`):
		t.Fatalf("the guide's flow answered:\n%s", text)
	}
	// The guide's collection also closes a card, as the OpenAPI file's does.
	virtual := regexp.MustCompile(`(?m)^card_id = (\S+)$`).FindStringSubmatch(text)
	if r := jv.do(t, "DELETE", jv.base+"/api/v1/jiko-accounts/guide-acct/cards/"+virtual[1], nil, nil); r.status != 204 {
		t.Fatalf("close the guide's virtual card: %d %s", r.status, r.body)
	}
	t.Logf("the guide's flow, PAN digits masked:\n%s", regexp.MustCompile(`[0-9]{12}([0-9]{4})`).ReplaceAllString(text, "************$1"))
}
