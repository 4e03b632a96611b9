package sqlstore

import (
	"context"
	"sync"
	"time"
)

// pruneInterval is how often rows that have left their window are
// deleted. Nothing reads them meanwhile: every budget count and every
// idempotency look-up is bounded by its window, and an idempotency key
// whose old answer has expired is taken over in place. Deleting on the
// request path instead cost every reveal and every idempotent write two
// or three extra statements (issue 29).
const pruneInterval = time.Second

// pruner remembers the windows the store has been told of, by the writes
// that carry them, and deletes what has left them.
type pruner struct {
	mu      sync.Mutex
	budgets map[string]time.Duration // per budget kind, the longest window seen
	idem    time.Duration            // the idempotency window
	stop    chan struct{}
	done    chan struct{}
	started bool // guarded by mu
	closed  sync.Once
}

// PruneInBackground starts deleting, every second, the rows that have left
// their windows, as of the wall clock. Servers start it; a store whose
// writes carry other clocks' times (the conformance suite's fixed "now")
// must not, or it would delete their rows as long expired.
func (s *Store) PruneInBackground() {
	s.prune.mu.Lock()
	defer s.prune.mu.Unlock()
	if s.prune.started {
		return
	}
	s.prune.started = true
	tick := time.NewTicker(pruneInterval)
	go func() {
		defer tick.Stop()
		s.pruneOnTime(tick.C)
	}()
}

// close stops the pruner, if it runs, and waits for a prune in progress.
func (p *pruner) close() {
	p.mu.Lock()
	started := p.started
	p.mu.Unlock()
	if !started {
		return
	}
	p.closed.Do(func() { close(p.stop) })
	<-p.done
}

func newPruner() *pruner {
	return &pruner{budgets: map[string]time.Duration{}, stop: make(chan struct{}), done: make(chan struct{})}
}

func (p *pruner) budget(kind string, window time.Duration) {
	p.mu.Lock()
	p.budgets[kind] = max(p.budgets[kind], window)
	p.mu.Unlock()
}

func (p *pruner) idempotency(window time.Duration) {
	p.mu.Lock()
	p.idem = max(p.idem, window)
	p.mu.Unlock()
}

// pruneOnTime prunes at every tick until the store closes.
func (s *Store) pruneOnTime(tick <-chan time.Time) {
	defer close(s.prune.done)
	for {
		select {
		case <-s.prune.stop:
			return
		case <-tick:
		}
		// A prune that fails is counted with the commits (the observer's
		// Commit), costs only space, and is tried again at the next tick.
		ctx, cancel := context.WithTimeout(context.Background(), 10*pruneInterval)
		_ = s.pruneNow(ctx, time.Now())
		cancel()
	}
}

// pruneNow deletes, as of now, the budget rows and idempotent answers
// that have left their windows, in one write transaction.
func (s *Store) pruneNow(ctx context.Context, now time.Time) error {
	s.prune.mu.Lock()
	budgets := make(map[string]time.Duration, len(s.prune.budgets))
	for k, w := range s.prune.budgets {
		budgets[k] = w
	}
	idem := s.prune.idem
	s.prune.mu.Unlock()
	if len(budgets) == 0 && idem == 0 {
		return nil
	}
	return s.inTx(ctx, func(tx *txn) error {
		for kind, window := range budgets {
			since := micros(now.Add(-window))
			if _, err := tx.ExecContext(ctx, s.q(`DELETE FROM budget_events WHERE kind = ? AND at <= ?`), kind, since); err != nil {
				return err
			}
			for _, table := range []string{"budget_caller_cards", "budget_caller_buckets"} {
				if _, err := tx.ExecContext(ctx, s.q(`DELETE FROM `+table+` WHERE kind = ? AND bucket_end <= ?`), kind, since); err != nil {
					return err
				}
			}
		}
		if idem > 0 {
			if _, err := tx.ExecContext(ctx, s.q(`DELETE FROM idempotency WHERE created_at < ?`), micros(now.Add(-idem))); err != nil {
				return err
			}
		}
		return nil
	})
}
