package sqlstore

import (
	"context"
	"database/sql"
	"time"

	"github.com/cardvault/cardvault/vault"
)

// A caller's budget bounds the distinct cards one API token touches in a
// window. Each card the caller touched is a row (budget_caller_cards)
// naming the bucket of its last event; each bucket, a sixtieth of the
// window, counts the cards whose last event fell in it
// (budget_caller_buckets). The caller's use is the sum of the buckets
// that end inside the window: at most callerBuckets+1 rows, whatever the
// caller's traffic.
//
// Exactness: a card counts from its last event until its bucket's end
// has left the window, that is for the window plus at most one bucket
// (an hour's window: one minute more). The bound is never exceeded; a
// slot comes back up to a sixtieth of the window late.

// callerBuckets is how many buckets a window is cut into.
const callerBuckets = 60

// bucketEnd is the exclusive end, in Unix microseconds, of the bucket of
// a window of the given length that holds the instant at.
func bucketEnd(at time.Time, window time.Duration) int64 {
	width := max(window.Microseconds()/callerBuckets, 1)
	return (micros(at)/width + 1) * width
}

// callerUse reads what the caller's window holds into u, and returns the
// bucket that counts this card (0 when no bucket does).
func (s *Store) callerUse(ctx context.Context, q querier, r *vault.Slot, u *vault.BudgetUse) (held int64, err error) {
	if r.Caller == "" {
		return 0, nil
	}
	var oldest, card sql.NullInt64
	err = q.QueryRowContext(ctx, s.q(`SELECT COALESCE(SUM(n), 0), MIN(CASE WHEN n > 0 THEN bucket_end END),
		(SELECT bucket_end FROM budget_caller_cards WHERE kind = ? AND caller = ? AND card_id = ?)
		FROM budget_caller_buckets WHERE kind = ? AND caller = ? AND bucket_end > ?`),
		r.Kind, r.Caller, r.CardID, r.Kind, r.Caller, micros(r.Since())).Scan(&u.Caller, &oldest, &card)
	if err != nil {
		return 0, err
	}
	if oldest.Valid {
		// A bucket's cards stop counting when its end leaves the window.
		u.CallerOldest = fromMicros(oldest.Int64)
	}
	if card.Valid && card.Int64 > micros(r.Since()) {
		u.CallerHasCard, held = true, card.Int64
	}
	return held, nil
}

// countCaller checks an event against its caller's budget of distinct
// cards and records the card in the bucket of now, inside the write's
// transaction. Where the dialect charges callers apart (PostgreSQL) and
// has done so for this transaction, there is nothing left to do.
func (s *Store) countCaller(ctx context.Context, tx *txn, r *vault.Slot) error {
	if r.Caller == "" || tx.callerCharged {
		return nil
	}
	if err := s.serialize(ctx, tx, "budget:"+r.Kind+":caller:"+r.Caller); err != nil {
		return err
	}
	var use vault.BudgetUse
	held, err := s.callerUse(ctx, tx, r, &use)
	if err != nil {
		return err
	}
	if err := r.Check(use); err != nil {
		return err
	}
	end := bucketEnd(r.At, r.Budget.Window)
	if held >= end {
		return nil // counted in this bucket already (or a later one, by a clock ahead)
	}
	if held != 0 {
		// The card moves to the bucket of its latest event.
		if _, err := tx.ExecContext(ctx, s.q(`UPDATE budget_caller_buckets SET n = n - 1 WHERE kind = ? AND caller = ? AND bucket_end = ?`),
			r.Kind, r.Caller, held); err != nil {
			return err
		}
	}
	if _, err := tx.ExecContext(ctx, s.q(`INSERT INTO budget_caller_buckets (kind, caller, bucket_end, n) VALUES (?, ?, ?, 1)
		ON CONFLICT (kind, caller, bucket_end) DO UPDATE SET n = budget_caller_buckets.n + 1`),
		r.Kind, r.Caller, end); err != nil {
		return err
	}
	_, err = tx.ExecContext(ctx, s.q(`INSERT INTO budget_caller_cards (kind, caller, card_id, last_at, bucket_end) VALUES (?, ?, ?, ?, ?)
		ON CONFLICT (kind, caller, card_id) DO UPDATE SET last_at = excluded.last_at, bucket_end = excluded.bucket_end`),
		r.Kind, r.Caller, r.CardID, micros(r.At), end)
	return err
}

// chargeCallerApart counts a write's slot against its caller's budget
// before the write's transaction begins, where the dialect can do so in
// one short statement of its own (PostgreSQL): the lock every request of
// an API token shares is then held for that statement, not for the
// write's round trips and durable commit. It reports whether it charged,
// so the transaction skips its own count.
//
// The charge stands if the write then fails (a card budget spent, a key
// used before, a card closed meanwhile): the caller paid for a card it
// tried. Undoing it instead would let a request that fails on purpose
// uncount a concurrent one's card. Its commit is asynchronous, yet never
// lost under a write that succeeded: the write's durable commit flushes
// the log up to and past the charge.
func (s *Store) chargeCallerApart(ctx context.Context, r *vault.Slot) (bool, error) {
	if r == nil || r.Caller == "" || s.d.chargeCaller == nil {
		return false, nil
	}
	use, err := s.d.chargeCaller(ctx, s.db, r, bucketEnd(r.At, r.Budget.Window))
	if err != nil {
		return false, s.fail(err)
	}
	if use != nil {
		return false, r.Check(*use)
	}
	return true, nil
}
