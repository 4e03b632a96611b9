package vault_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/cardvault/cardvault/hsm"
	"github.com/cardvault/cardvault/sqlstore"
	"github.com/cardvault/cardvault/vault"
)

// BenchmarkRewrap measures, in one run on one token, the raw HSM rate of
// what a rewrap does per record (open under the old card KEK, seal under
// the new one) and the rewrap's own rate over b.N stored cards, batches of
// 100, on SQLite; it reports both and their ratio.
func BenchmarkRewrap(b *testing.B) {
	ctx := context.Background()
	// The imports are the fixture, not what is measured: their budget is
	// lifted, so b.N may reach a platform's size.
	unlimited := vault.Budget{Window: time.Second, PerCard: 1 << 30, PerCaller: 1 << 30}
	m, svc, dbPath := newPINService(b, make([]byte, 32), vault.Config{BIN: "400000", ExpiryYears: 3, Imports: unlimited})
	caller := vault.Caller{Name: "bench", RequestID: "r"}
	store, err := sqlstore.OpenSQLite(ctx, dbPath)
	if err != nil {
		b.Fatal(err)
	}
	defer store.Close()
	var sealed [][]byte
	for i := range b.N {
		pan := []byte(fmt.Sprintf("400000%09d", i))
		pan = append(pan, luhnDigit(pan))
		c, err := svc.Import(ctx, caller, vault.ImportRequest{OwnerID: "acct-1", PAN: pan, CVV: []byte("123"), ExpiryMonth: 12, ExpiryYear: 2035}, nil)
		if err != nil {
			b.Fatal(err)
		}
		stored, err := store.CardByID(ctx, c.ID)
		if err != nil {
			b.Fatal(err)
		}
		sealed = append(sealed, stored.Sealed, []byte(stored.ID))
	}
	if err := m.Generate(ctx, hsm.CardKEK, 2); err != nil {
		b.Fatal(err)
	}

	b.ResetTimer()
	start := time.Now()
	for i := 0; i < len(sealed); i += 2 {
		plain, err := m.Open(ctx, sealed[i+1], sealed[i])
		if err != nil {
			b.Fatal(err)
		}
		if _, _, err := m.Seal(ctx, sealed[i+1], plain); err != nil {
			b.Fatal(err)
		}
		clear(plain)
	}
	raw := time.Since(start)
	p, err := vault.NewRewrapper(m, store).Run(ctx, vault.RewrapOptions{Batch: 100, Operator: "bench"})
	if err != nil {
		b.Fatal(err)
	}
	b.StopTimer()
	if p.Done != b.N {
		b.Fatalf("rewrapped %d of %d", p.Done, b.N)
	}
	rawRate := float64(b.N) / raw.Seconds()
	b.ReportMetric(rawRate, "hsm-open+seal/s")
	b.ReportMetric(p.Rate(), "rewrap-records/s")
	b.ReportMetric(p.Rate()/rawRate, "ratio")
}

func luhnDigit(payload []byte) byte {
	sum := 0
	for i := len(payload) - 1; i >= 0; i-- {
		d := int(payload[i] - '0')
		if (len(payload)-1-i)%2 == 0 {
			if d *= 2; d > 9 {
				d -= 9
			}
		}
		sum += d
	}
	return byte('0' + (10-sum%10)%10)
}
