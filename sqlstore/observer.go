package sqlstore

import (
	"context"
	"sync/atomic"
	"time"
)

// Observer is told of the store's commits and audit writes, for metrics.
// Its methods must be cheap and must not block.
type Observer interface {
	// Commit is one database commit carrying size write transactions (a
	// SQLite group, or one PostgreSQL transaction), its time from begin to
	// durable commit, and its error.
	Commit(size int, took time.Duration, err error)
	// AuditWritten is n audit entries committed.
	AuditWritten(n int)
	// Checkpoint is an audit chain checkpoint MACed and stored, or not.
	Checkpoint(err error)
}

type nopObserver struct{}

func (nopObserver) Commit(int, time.Duration, error) {}
func (nopObserver) AuditWritten(int)                 {}
func (nopObserver) Checkpoint(error)                 {}

// SetObserver sends the store's reports to o from now on.
func (s *Store) SetObserver(o Observer) {
	if o == nil {
		o = nopObserver{}
	}
	s.obs.Store(&o)
}

func (s *Store) observer() Observer {
	if o := s.obs.Load(); o != nil {
		return *o
	}
	return nopObserver{}
}

// Kind is "sqlite" or "postgres".
func (s *Store) Kind() string {
	if s.writer != nil {
		return "sqlite"
	}
	return "postgres"
}

// CheckpointLag is, for each of this store's audit chains, how many
// committed entries no checkpoint covers yet. A chain checkpoints every
// 100 entries and when the store closes, so a lag that stays past that
// says checkpoints are failing.
func (s *Store) CheckpointLag() []int64 {
	out := make([]int64, len(s.chains.committed))
	for i := range out {
		out[i] = max(0, s.chains.committed[i].Load()-s.chains.sealed[i].Load())
	}
	return out
}

// ceremonyRunsQuery counts ceremonies in the trail. Every scrape runs it,
// so it reads the partial index of ceremony entries (audit_ceremony),
// never the whole table.
const ceremonyRunsQuery = `SELECT action, outcome, COUNT(*) FROM audit WHERE action LIKE 'ceremony.%' GROUP BY action, outcome`

// CeremonyRuns counts the ceremony entries in the audit trail by ceremony
// and result, for every writer: ceremonies run as their own processes, so
// the trail is where a server learns of them.
func (s *Store) CeremonyRuns(ctx context.Context) (map[[2]string]int64, error) {
	rows, err := s.query(ctx, s.q(ceremonyRunsQuery))
	if err != nil {
		return nil, s.fail(err)
	}
	defer rows.Close()
	out := map[[2]string]int64{}
	for rows.Next() {
		var action, outcome string
		var n int64
		if err := rows.Scan(&action, &outcome, &n); err != nil {
			return nil, s.fail(err)
		}
		result := "ok"
		if outcome != "ok" {
			result = "failed"
		}
		out[[2]string{action[len("ceremony."):], result}] += n
	}
	return out, s.fail(rows.Err())
}

// record notes chain idx's committed end.
func (c *chains) record(idx int, committed int64) { c.committed[idx].Store(committed) }

// sealedUpTo records a checkpoint stored at seq on chain idx.
func (c *chains) sealedUpTo(idx int, seq int64) {
	for {
		old := c.sealed[idx].Load()
		if seq <= old || c.sealed[idx].CompareAndSwap(old, seq) {
			return
		}
	}
}

// progress is what CheckpointLag reads without a lease: each chain's
// committed end and its last stored checkpoint.
type progress struct {
	committed []atomic.Int64
	sealed    []atomic.Int64
}
