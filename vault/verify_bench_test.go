package vault_test

import (
	"context"
	"testing"
	"time"

	"github.com/cardvault/cardvault/vault"
)

// BenchmarkVerifyCard times a match and a no match on the same card,
// interleaved in one run: the two must not be told apart by time (the
// record is opened and both fields compared either way). Run with
// -bench VerifyCard -count 5 and compare the sub-benchmarks' ns/op.
func BenchmarkVerifyCard(b *testing.B) {
	ctx := context.Background()
	m, store, _ := newKeyedStore(b, make([]byte, 32))
	unlimited := vault.Budget{Window: time.Second, PerCard: 1 << 30, PerCaller: 1 << 30}
	svc, err := vault.NewService(m, store, vault.Config{BIN: "400000", ExpiryYears: 3, Verifications: unlimited})
	if err != nil {
		b.Fatal(err)
	}
	card, err := svc.Import(ctx, vault.Caller{Name: "processor"}, vault.ImportRequest{OwnerID: "acct-1", PAN: []byte("4111111111111111"),
		CVV: []byte("123"), ExpiryMonth: 12, ExpiryYear: 2035}, nil)
	if err != nil {
		b.Fatal(err)
	}
	host := vault.Caller{Name: "auth-host"}
	for _, c := range []struct {
		name, cvv, want string
	}{{"match", "123", vault.Match}, {"no_match", "124", vault.NoMatch}, {"match_again", "123", vault.Match}, {"no_match_again", "923", vault.NoMatch}} {
		b.Run(c.name, func(b *testing.B) {
			for b.Loop() {
				v, err := svc.VerifyCard(ctx, host, vault.VerifyRequest{CardID: card.ID, CVV: []byte(c.cvv), ExpiryMonth: 12, ExpiryYear: 2035})
				if err != nil || v.CVV != c.want {
					b.Fatalf("%v %+v", err, v)
				}
			}
		})
	}
}
