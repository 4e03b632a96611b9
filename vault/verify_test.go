package vault_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/cardvault/cardvault/vault"
)

// Issue 32: the authorization host learns match or no match for the CVV
// and the expiry it holds, and nothing else; every answer costs a slot of
// the card's budget, and a closed card or a spent budget is refused.
func TestVerifyCard(t *testing.T) {
	ctx := context.Background()
	m, store, _ := newKeyedStore(t, make([]byte, 32))
	svc, err := vault.NewService(m, store, vault.Config{BIN: "400000", ExpiryYears: 3,
		Verifications: vault.Budget{Window: time.Hour, PerCard: 6, PerCaller: 100}})
	if err != nil {
		t.Fatal(err)
	}
	host := vault.Caller{Name: "auth-host", RequestID: "r-1"}
	card, err := svc.Import(ctx, vault.Caller{Name: "processor"}, vault.ImportRequest{OwnerID: "acct-1", PAN: []byte("4111111111111111"),
		CVV: []byte("123"), ExpiryMonth: 12, ExpiryYear: 2035}, nil)
	if err != nil {
		t.Fatal(err)
	}
	for name, c := range map[string]struct {
		in   vault.VerifyRequest
		want vault.Verification
	}{
		"both match":        {vault.VerifyRequest{CVV: []byte("123"), ExpiryMonth: 12, ExpiryYear: 2035}, vault.Verification{CVV: vault.Match, Expiry: vault.Match}},
		"cvv wrong":         {vault.VerifyRequest{CVV: []byte("124"), ExpiryMonth: 12, ExpiryYear: 2035}, vault.Verification{CVV: vault.NoMatch, Expiry: vault.Match}},
		"four digits":       {vault.VerifyRequest{CVV: []byte("1230")}, vault.Verification{CVV: vault.NoMatch}},
		"expiry only, past": {vault.VerifyRequest{ExpiryMonth: 11, ExpiryYear: 2035}, vault.Verification{Expiry: vault.NoMatch}},
		"cvv only":          {vault.VerifyRequest{CVV: []byte("123")}, vault.Verification{CVV: vault.Match}},
	} {
		c.in.CardID = card.ID
		got, err := svc.VerifyCard(ctx, host, c.in)
		if err != nil || *got != c.want {
			t.Errorf("%s: %v %+v, want %+v", name, err, got, c.want)
		}
	}
	for name, c := range map[string]struct {
		in    vault.VerifyRequest
		field string
	}{
		"nothing asked":   {vault.VerifyRequest{CardID: card.ID}, "cvv"},
		"letters":         {vault.VerifyRequest{CardID: card.ID, CVV: []byte("12a")}, "cvv"},
		"two digits":      {vault.VerifyRequest{CardID: card.ID, CVV: []byte("12")}, "cvv"},
		"month 13":        {vault.VerifyRequest{CardID: card.ID, ExpiryMonth: 13, ExpiryYear: 2035}, "expiry"},
		"unknown card id": {vault.VerifyRequest{CardID: "nope", CVV: []byte("123")}, ""},
	} {
		_, err := svc.VerifyCard(ctx, host, c.in)
		if err == nil || (c.field != "" && !strings.Contains(err.Error(), c.field)) {
			t.Errorf("%s: %v, want a refusal naming %q", name, err, c.field)
		}
	}
	// Five answers so far; the sixth is the last of the card's budget.
	if _, err := svc.VerifyCard(ctx, host, vault.VerifyRequest{CardID: card.ID, CVV: []byte("999")}); err != nil {
		t.Fatalf("the sixth verification: %v", err)
	}
	_, err = svc.VerifyCard(ctx, host, vault.VerifyRequest{CardID: card.ID, CVV: []byte("123")})
	if vault.KindOf(err) != vault.KindRateLimited || !strings.Contains(err.Error(), "verification budget is spent") {
		t.Fatalf("past the card's budget, even the right CVV: %v", err)
	}
	trail, err := store.AuditTrail(ctx, card.ID)
	if err != nil {
		t.Fatal(err)
	}
	verified := 0
	for _, e := range trail {
		if e.Action != "card.verify" {
			continue
		}
		verified++
		for _, v := range e.Detail {
			if strings.Contains(v, "123") || strings.Contains(v, "2035") {
				t.Errorf("an audit entry holds a value: %+v", e)
			}
		}
	}
	if verified != 7 { // six answers and the refusal
		t.Errorf("%d card.verify entries, want 7", verified)
	}
	closedCard, err := svc.Import(ctx, vault.Caller{Name: "processor"}, vault.ImportRequest{OwnerID: "acct-1", PAN: []byte("5500000000000004"), CVV: []byte("321"), ExpiryMonth: 1, ExpiryYear: 2036}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := svc.Close(ctx, host, "acct-1", closedCard.ID, "CANCELED", ""); err != nil {
		t.Fatal(err)
	}
	if _, err := svc.VerifyCard(ctx, host, vault.VerifyRequest{CardID: closedCard.ID, CVV: []byte("321")}); vault.KindOf(err) != vault.KindConflict {
		t.Errorf("a closed card: %v, want a conflict", err)
	}
}
