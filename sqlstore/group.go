package sqlstore

import (
	"context"
	"database/sql"
	"errors"
	"sync"
	"sync/atomic"
	"time"
)

// Group commit, for a database with a single writer (SQLite).
//
// Each write transaction would otherwise pay for its own commit, and a
// durable commit is an fsync: with every writer queued behind one lock,
// the fsync rate caps the whole service. Instead, a write queues its work;
// whoever holds the writer slot runs everything queued in one database
// transaction, each piece of work inside its own savepoint, and commits
// once. Every statement runs under the group's context, not its caller's:
// a caller who hangs up is checked for before its piece starts, and never
// interrupts a statement, which in SQLite would roll back the whole group. A piece that fails is rolled back to its savepoint alone, so it
// answers exactly as it would have on its own; a commit that fails fails
// every piece in it. The pieces run one after another in queue order, so
// each sees the database as a serial execution would have left it.

// maxGroup caps the pieces one commit carries.
const maxGroup = 64

// groupTimeout bounds one group's database transaction. The pieces'
// own contexts bound their statements; the group's must outlive any one
// caller who gives up.
const groupTimeout = 30 * time.Second

// Piece states: queued, taken by a leader, or abandoned by its caller.
const (
	pieceQueued int32 = iota
	pieceTaken
	pieceAbandoned
)

type piece struct {
	ctx   context.Context
	t     *txn
	fn    func(*txn) error
	state atomic.Int32
	done  chan error // buffered: the leader never waits on a caller
}

type groupQueue struct {
	mu      sync.Mutex
	waiting []*piece
}

func (q *groupQueue) push(p *piece) {
	q.mu.Lock()
	q.waiting = append(q.waiting, p)
	q.mu.Unlock()
}

// take removes up to maxGroup pieces that their callers still want.
func (q *groupQueue) take() []*piece {
	q.mu.Lock()
	defer q.mu.Unlock()
	var batch []*piece
	for len(q.waiting) > 0 && len(batch) < maxGroup {
		p := q.waiting[0]
		q.waiting = q.waiting[1:]
		if p.state.CompareAndSwap(pieceQueued, pieceTaken) {
			batch = append(batch, p)
		}
	}
	return batch
}

// runGrouped queues fn and waits for its outcome, leading the commit of
// what is queued (up to maxGroup) whenever the writer slot is free.
func (s *Store) runGrouped(ctx context.Context, t *txn, fn func(*txn) error) error {
	p := &piece{ctx: ctx, t: t, fn: fn, done: make(chan error, 1)}
	s.group.push(p)
	for {
		select {
		case err := <-p.done:
			return err
		case s.writer <- struct{}{}:
			// One group per turn: a leader that went on draining the queue
			// under steady load would hold its own caller's answer back.
			if batch := s.group.take(); len(batch) > 0 {
				s.commitGroup(batch)
			}
			<-s.writer
		case <-ctx.Done():
			// A caller may leave only while its work is still queued: once
			// a leader has taken it, it may commit, and the caller must
			// hear how it ended.
			if p.state.CompareAndSwap(pieceQueued, pieceAbandoned) {
				return s.fail(ctx.Err())
			}
			return <-p.done
		}
	}
}

// commitGroup runs a batch in one transaction and tells each piece how it
// ended.
func (s *Store) commitGroup(batch []*piece) {
	ctx, cancel := context.WithTimeout(context.Background(), groupTimeout)
	defer cancel()
	failAll := func(err error) {
		for _, p := range batch {
			p.done <- err
		}
	}
	start := time.Now()
	tx, err := s.db.BeginTx(ctx, s.d.txOpts())
	if err != nil {
		s.observer().Commit(len(batch), time.Since(start), err)
		failAll(s.fail(err))
		return
	}
	results := make([]error, len(batch))
	for i, p := range batch {
		if results[i] = s.runPiece(ctx, tx, p); errors.Is(results[i], errGroupBroken) {
			_ = tx.Rollback()
			s.observer().Commit(len(batch), time.Since(start), results[i])
			failAll(s.fail(results[i]))
			return
		}
	}
	err = tx.Commit()
	s.observer().Commit(len(batch), time.Since(start), err)
	if err != nil {
		failAll(s.fail(err))
		return
	}
	for i, p := range batch {
		p.done <- results[i]
	}
}

// errGroupBroken reports that a piece's failure could not be undone to its
// savepoint, so the whole group must roll back.
var errGroupBroken = errors.New("sqlstore: group transaction could not be rolled back to a savepoint")

// runPiece runs one piece inside a savepoint of the group's transaction.
func (s *Store) runPiece(ctx context.Context, tx *sql.Tx, p *piece) error {
	if err := p.ctx.Err(); err != nil {
		return s.fail(err)
	}
	if _, err := tx.ExecContext(ctx, "SAVEPOINT piece"); err != nil {
		return errors.Join(errGroupBroken, err)
	}
	p.t.Tx, p.t.group = tx, ctx
	if err := p.fn(p.t); err != nil {
		if _, rerr := tx.ExecContext(ctx, "ROLLBACK TO piece"); rerr != nil {
			return errors.Join(errGroupBroken, rerr)
		}
		if _, rerr := tx.ExecContext(ctx, "RELEASE piece"); rerr != nil {
			return errors.Join(errGroupBroken, rerr)
		}
		return s.fail(err)
	}
	if _, err := tx.ExecContext(ctx, "RELEASE piece"); err != nil {
		return errors.Join(errGroupBroken, err)
	}
	return nil
}
