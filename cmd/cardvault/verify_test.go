package main

import (
	"fmt"
	"strings"
	"testing"
	"time"
)

// Issue 32: the authorization host's card verification over HTTP, on the
// real binary and token: match, no match, bad input naming the field, a
// token without the scope, a closed card, and the card's budget spent
// (even the right CVV is refused then). Every exchange is held to the
// OpenAPI document.
func TestCardVerification(t *testing.T) {
	jv := newServedVault(t, []string{"cards:write", "cards:read", "cards:verify"}, "CARDVAULT_VERIFICATIONS_PER_CARD=5")
	card := jv.importCard(t, "person-1", "4000001234567899")
	closed := jv.importCard(t, "person-1", "4000001234567006")
	expiry := fmt.Sprintf("12/%02d", (time.Now().Year()+2)%100)
	url := func(id string) string { return jv.base + "/v1/cards/" + id + "/verification" }
	for name, c := range map[string]struct {
		body   map[string]string
		status int
		want   string
	}{
		"both match":       {map[string]string{"cvv": "123", "expiry": expiry}, 200, `{"cvv":"match","expiry":"match"}`},
		"cvv wrong":        {map[string]string{"cvv": "321"}, 200, `{"cvv":"no_match"}`},
		"expiry wrong":     {map[string]string{"expiry": "11/" + expiry[3:]}, 200, `{"expiry":"no_match"}`},
		"expiry not MM/YY": {map[string]string{"expiry": "2030-12"}, 400, "expiry"},
		"cvv not digits":   {map[string]string{"cvv": "12x"}, 400, "cvv"},
		"nothing asked":    {map[string]string{}, 400, "cvv"},
	} {
		r := jv.post(t, url(card), c.body, nil)
		if r.status != c.status || !strings.Contains(r.body, c.want) {
			t.Errorf("%s: %d %s, want %d with %s", name, r.status, r.body, c.status, c.want)
		}
	}
	if r := jv.as(t, "reader", "cards:read").post(t, url(card), map[string]string{"cvv": "123"}, nil); r.status != 403 {
		t.Errorf("a token without cards:verify: %d %s", r.status, r.body)
	}
	if r := jv.post(t, url("01a24016-0000-7000-8000-000000000000"), map[string]string{"cvv": "123"}, nil); r.status != 404 {
		t.Errorf("an unknown card: %d %s", r.status, r.body)
	}
	// Three answers so far; two more spend the card's five.
	for range 2 {
		if r := jv.post(t, url(card), map[string]string{"cvv": "999"}, nil); r.status != 200 {
			t.Fatalf("a verification within the budget: %d %s", r.status, r.body)
		}
	}
	r := jv.post(t, url(card), map[string]string{"cvv": "123"}, nil)
	if r.status != 429 || r.header.Get("Retry-After") == "" || !strings.Contains(r.body, "verification budget is spent") {
		t.Errorf("past the card's budget, the right CVV: %d %s", r.status, r.body)
	}
	if r := jv.post(t, jv.base+"/api/v1/jiko-accounts/person-1/cards/"+closed+"/close", map[string]string{"closure_reason": "CANCELED"}, nil); r.status != 204 {
		t.Fatalf("close: %d %s", r.status, r.body)
	}
	if r := jv.post(t, url(closed), map[string]string{"cvv": "123"}, nil); r.status != 409 || !strings.Contains(r.body, "card is closed") {
		t.Errorf("a closed card: %d %s", r.status, r.body)
	}
}
