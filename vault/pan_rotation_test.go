package vault_test

import (
	"context"
	"testing"
	"time"

	"github.com/cardvault/cardvault/hsm"
	"github.com/cardvault/cardvault/vault"
)

// Between a pan-hmac rotation and the end of its rewrap, cards are
// fingerprinted under the old version: a look-up by PAN must still find
// them, and an import of the same PAN must still be refused, or the PAN
// gets a second owner and the rewrap never finishes (issue 27, finding 8).
func TestPANFoundAcrossHMACVersions(t *testing.T) {
	ctx := context.Background()
	m, store, _ := newKeyedStore(t, make([]byte, 32))
	svc, err := vault.NewService(m, store, vault.Config{BIN: "400000", ExpiryYears: 3})
	if err != nil {
		t.Fatal(err)
	}
	caller := vault.Caller{Name: "test", RequestID: "r"}
	pan := "4111111111111111"
	imp := func(owner string) (*vault.Card, error) {
		return svc.Import(ctx, caller, vault.ImportRequest{OwnerID: owner, PAN: []byte(pan), CVV: []byte("123"), ExpiryMonth: 12, ExpiryYear: time.Now().Year() + 2}, nil)
	}
	card, err := imp("acct-1")
	if err != nil {
		t.Fatal(err)
	}
	if err := m.Generate(ctx, hsm.PANHMAC, 2); err != nil {
		t.Fatal(err)
	}
	if v, _ := m.ActiveVersion(ctx, hsm.PANHMAC); v != 2 {
		t.Fatalf("pan-hmac active v%d after the rotation, want v2", v)
	}
	if id, err := svc.LookupPAN(ctx, caller, []byte(pan)); err != nil || id != card.ID {
		t.Fatalf("look-up after the rotation: %q, %v; want the card under pan-hmac/v1", id, err)
	}
	if _, err := imp("acct-2"); vault.KindOf(err) != vault.KindConflict {
		t.Fatalf("a second import of the PAN after the rotation: %v, want the conflict", err)
	}
}
