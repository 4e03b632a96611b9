package bench

import (
	"context"
	"fmt"
	"io"
	"sync"
	"sync/atomic"
	"time"
)

// Seeding is what `bench --cards N` measured while it filled the vault:
// cards issued through the token and the store (not HTTP), their rate, and
// the database's size per card once they are in.
type Seeding struct {
	Cards          int64   `json:"seeded_cards"`
	Rate           float64 `json:"seed_rate"`
	DBBytes        int64   `json:"db_bytes"`
	DBBytesPerCard float64 `json:"db_bytes_per_card"`
	// AuditEntries were verified, chains and checkpoints, at
	// AuditVerifyRate entries a second, once the cards were in.
	AuditEntries    int     `json:"audit_entries"`
	AuditVerifyRate float64 `json:"audit_verify_rate"`
}

// SeedOwner names the owner of seeded card i: two cards an owner, as a
// platform's cardholders hold a virtual and a physical card.
func (e *Env) SeedOwner(i int) string { return e.owner("seed", i/2) }

// Seed issues n cards with workers goroutines, each by issue(ctx, i),
// reporting progress every tenth, then measures the database with size.
func Seed(ctx context.Context, n, workers int, issue func(ctx context.Context, i int) error, size func(ctx context.Context) (int64, error), progress io.Writer) (Seeding, error) {
	start := time.Now()
	var next, done atomic.Int64
	var firstErr error
	var once sync.Once
	// Workers report progress from their goroutines; the writer is the
	// caller's and need not be safe for concurrent use.
	var progressMu sync.Mutex
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var wg sync.WaitGroup
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := next.Add(1) - 1
				if i >= int64(n) || ctx.Err() != nil {
					return
				}
				if err := issue(ctx, int(i)); err != nil {
					once.Do(func() { firstErr = fmt.Errorf("seeding card %d: %w", i, err); cancel() })
					return
				}
				if d := done.Add(1); n >= 10 && d%int64(n/10) == 0 {
					progressMu.Lock()
					say(progress, "seeded %d of %d cards (%.0f/s)", d, n, float64(d)/time.Since(start).Seconds())
					progressMu.Unlock()
				}
			}
		}()
	}
	wg.Wait()
	if firstErr != nil {
		return Seeding{}, firstErr
	}
	s := Seeding{Cards: int64(n), Rate: float64(n) / time.Since(start).Seconds()}
	var err error
	if s.DBBytes, err = size(ctx); err != nil {
		return s, err
	}
	if n > 0 {
		s.DBBytesPerCard = float64(s.DBBytes) / float64(n)
	}
	return s, nil
}
