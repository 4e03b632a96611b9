package bench

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"
)

func TestSeedIssuesEachCardOnce(t *testing.T) {
	var mu sync.Mutex
	seen := map[int]int{}
	issue := func(_ context.Context, i int) error {
		mu.Lock()
		seen[i]++
		mu.Unlock()
		return nil
	}
	size := func(context.Context) (int64, error) { return 1000 * 500, nil }
	var progress strings.Builder
	s, err := Seed(context.Background(), 1000, 8, issue, size, &progress)
	if err != nil {
		t.Fatal(err)
	}
	if len(seen) != 1000 {
		t.Fatalf("%d distinct cards issued, want 1000", len(seen))
	}
	for i, n := range seen {
		if i < 0 || i >= 1000 || n != 1 {
			t.Fatalf("card %d issued %d times", i, n)
		}
	}
	if s.Cards != 1000 || s.Rate <= 0 || s.DBBytesPerCard != 500 {
		t.Fatalf("seeding %+v", s)
	}
	if got := strings.Count(progress.String(), "seeded "); got != 10 {
		t.Fatalf("%d progress lines, want one a tenth:\n%s", got, progress.String())
	}
}

func TestSeedStopsAtTheFirstFailure(t *testing.T) {
	boom := errors.New("token gone")
	var mu sync.Mutex
	calls := 0
	// Cards after the tenth wait for the seeding to be called off, so
	// that none can finish before card 10 fails.
	issue := func(ctx context.Context, i int) error {
		mu.Lock()
		calls++
		mu.Unlock()
		switch {
		case i == 10:
			return boom
		case i > 10:
			select {
			case <-ctx.Done():
				return ctx.Err()
			case <-time.After(10 * time.Second):
				return errors.New("the seeding was not called off")
			}
		}
		return nil
	}
	_, err := Seed(context.Background(), 100000, 4, issue, func(context.Context) (int64, error) { return 0, nil }, nil)
	if !errors.Is(err, boom) || !strings.Contains(err.Error(), "card 10") {
		t.Fatalf("Seed = %v, want the failure of card 10", err)
	}
	if calls > 11+4 {
		t.Fatalf("%d cards begun; the seeding must stop at the first failure", calls)
	}
}
