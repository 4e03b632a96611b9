package vault_test

import (
	"context"
	"crypto/rand"
	"testing"
	"time"

	"github.com/cardvault/cardvault/hsm"
	"github.com/cardvault/cardvault/internal/testsupport/openssltest"
	"github.com/cardvault/cardvault/internal/testsupport/testenv"
	"github.com/cardvault/cardvault/vault"
)

// BenchmarkVerifyCard times a match and a no match on the same card,
// interleaved in one run: the two must not be told apart by time (the
// record is opened and both fields compared either way). Run with
// -bench VerifyCard -count 5 and compare the sub-benchmarks' ns/op.
func BenchmarkVerifyCard(b *testing.B) {
	ctx := context.Background()
	_, svc, card := newVerifyBench(b)
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

// BenchmarkVerifyPIN times the three kinds of PIN block interleaved in
// each iteration, so the machine's noise falls on all of them alike: the
// right PIN, a wrong PIN, and a block under another zone key (which
// deciphers to no format 4 PIN at all). Each iteration starts one kind
// later than the one before, so no kind always follows the same other;
// the right PIN clears the try counter at most four tries apart, under a
// limit of 15. It reports each kind's mean as match-ns/op, no_match-ns/op
// and garbage-ns/op; they must not be told apart (every block takes the
// same HSM calls and comparison).
func BenchmarkVerifyPIN(b *testing.B) {
	testenv.RequireCommand(b, "openssl")
	ctx := context.Background()
	m, svc, card := newVerifyBench(b)
	setJikoPIN(b, svc, card, "1357")
	zpk, other := make([]byte, 32), make([]byte, 32)
	rand.Read(zpk)
	rand.Read(other)
	if err := m.ImportSecret(ctx, hsm.ZonePIN, 1, zpk); err != nil {
		b.Fatal(err)
	}
	kinds := []struct {
		name, want string
		block      []byte
		total      time.Duration
	}{
		{"no_match", vault.NoMatch, openssltest.Format4PINBlock(b, zpk, "1358", benchPAN), 0},
		{"garbage", vault.NoMatch, openssltest.Format4PINBlock(b, other, "1357", benchPAN), 0},
		{"match", vault.Match, openssltest.Format4PINBlock(b, zpk, "1357", benchPAN), 0},
	}
	host := vault.Caller{Name: "auth-host"}
	n := 0
	for b.Loop() {
		for j := range kinds {
			i := (j + n) % len(kinds)
			start := time.Now()
			v, err := svc.VerifyPIN(ctx, host, vault.VerifyPINRequest{CardID: card.ID, PINBlock: kinds[i].block})
			kinds[i].total += time.Since(start)
			if err != nil || v.PIN != kinds[i].want {
				b.Fatalf("%s: %v %+v", kinds[i].name, err, v)
			}
		}
		n++
	}
	for _, k := range kinds {
		b.ReportMetric(float64(k.total.Nanoseconds())/float64(n), k.name+"-ns/op")
	}
}

// benchPAN is the verification benchmarks' card's PAN.
const benchPAN = "4111111111111111"

// newVerifyBench is a token with every key but the zone key, a service
// whose verification budget never runs out, and one imported card.
func newVerifyBench(b *testing.B) (*hsm.Module, *vault.Service, *vault.Card) {
	b.Helper()
	m, store, _ := newKeyedStore(b, make([]byte, 32))
	unlimited := vault.Budget{Window: time.Second, PerCard: 1 << 30, PerCaller: 1 << 30}
	svc, err := vault.NewService(m, store, vault.Config{BIN: "400000", ExpiryYears: 3, Verifications: unlimited, PINTryLimit: 15})
	if err != nil {
		b.Fatal(err)
	}
	card, err := svc.Import(context.Background(), vault.Caller{Name: "processor"}, vault.ImportRequest{OwnerID: "acct-1", PAN: []byte(benchPAN),
		CVV: []byte("123"), ExpiryMonth: 12, ExpiryYear: 2035}, nil)
	if err != nil {
		b.Fatal(err)
	}
	return m, svc, card
}
