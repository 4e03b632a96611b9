// Package sqlstore implements vault.Store on database/sql, with one set of
// embedded goose migrations for SQLite (the embedded default) and
// PostgreSQL. Every change and its audit entry commit in one transaction.
package sqlstore

import (
	"bytes"
	"context"
	"database/sql"
	"embed"
	"errors"
	"fmt"
	"io/fs"
	"strings"
	"sync/atomic"
	"time"

	"github.com/cardvault/cardvault/vault"
	"github.com/google/uuid"
	"github.com/pressly/goose/v3"
)

//go:embed migrations/*.sql
var migrations embed.FS

// dialect holds what differs between the databases.
type dialect struct {
	name     goose.Dialect
	rebind   func(string) string   // ? placeholders to the driver's
	isUnique func(err error) bool  // a unique-constraint violation
	txOpts   func() *sql.TxOptions // isolation for writes
	prepare  func(*sql.DB) error   // per-open settings
	// serialize, where set, makes the rest of the transaction exclusive
	// for each named subject across every connection and replica, for
	// rules checked by counting before inserting (budgets, the device
	// limit). SQLite needs none: BEGIN IMMEDIATE serialises all writers.
	serialize func(ctx context.Context, tx *sql.Tx, subjects ...string) error
	// rowLock is appended to a SELECT whose row must not change before
	// the transaction commits (" FOR SHARE"); SQLite's writer runs alone.
	rowLock string
	// singleWriter says the database takes one write transaction at a
	// time (SQLite). The store then queues its writers itself and commits
	// them in groups (group.go): SQLite's busy handler polls with sleeps
	// of up to 100 ms, which under load turns a queue of a few
	// milliseconds into a tail of hundreds.
	singleWriter bool
	// chargeCaller, where set, charges a slot to its caller's budget in
	// a statement of its own before the write's transaction
	// (chargeCallerApart); end is the bucket of now. It returns the
	// caller's use when the budget refuses the slot.
	chargeCaller func(ctx context.Context, db *sql.DB, r *vault.Slot, end int64) (*vault.BudgetUse, error)
	// migrations are the dialect's own options to the migration provider.
	migrations []goose.ProviderOption
	// sizeQuery answers the database's size in bytes.
	sizeQuery string
}

// serialize takes the dialect's locks on subjects, in the order given.
func (s *Store) serialize(ctx context.Context, tx *txn, subjects ...string) error {
	if s.d.serialize == nil {
		return nil
	}
	return s.d.serialize(ctx, tx.Tx, subjects...)
}

// Store is a vault.Store on a SQL database.
type Store struct {
	db     *sql.DB
	d      dialect
	chains *chains
	// writer is held for a write transaction's life when the dialect
	// has a single writer; nil otherwise.
	writer chan struct{}
	group  groupQueue // write transactions waiting for the writer slot
	stmts  *stmtCache // prepared statements of the write path and hot reads (SQLite)
	obs    atomic.Pointer[Observer]
	prune  *pruner
}

var _ vault.Store = (*Store)(nil)

func open(ctx context.Context, db *sql.DB, d dialect) (*Store, error) {
	if d.prepare != nil {
		if err := d.prepare(db); err != nil {
			db.Close()
			return nil, err
		}
	}
	sub, err := fs.Sub(migrations, "migrations")
	if err != nil {
		return nil, err
	}
	p, err := goose.NewProvider(d.name, db, sub, d.migrations...)
	if err != nil {
		db.Close()
		return nil, fmt.Errorf("migrations: %w", err)
	}
	if _, err := p.Up(ctx); err != nil {
		db.Close()
		return nil, fmt.Errorf("migrations: %w", err)
	}
	chains, err := newChains(auditChains)
	if err != nil {
		db.Close()
		return nil, err
	}
	st := &Store{db: db, d: d, chains: chains, prune: newPruner()}
	if d.singleWriter {
		// PostgreSQL's driver (pgx) caches prepared statements itself.
		st.writer = make(chan struct{}, 1)
		st.stmts = &stmtCache{db: db}
	}
	return st, nil
}

// Close checkpoints every audit chain this store extended since its last
// checkpoint, then closes the database.
func (s *Store) Close() error {
	s.chains.mu.Lock()
	if s.chains.timer != nil {
		s.chains.timer.Stop()
		close(s.chains.stop)
		s.chains.timer = nil
	}
	s.chains.mu.Unlock()
	s.prune.close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	s.checkpointAll(ctx)
	s.stmts.close()
	return s.db.Close()
}

// Ping checks the database is usable.
func (s *Store) Ping(ctx context.Context) error {
	var one int
	if err := s.db.QueryRowContext(ctx, "SELECT 1").Scan(&one); err != nil {
		return s.fail(err)
	}
	return nil
}

// Bytes is the database's size on disk, as its engine counts it (the
// bench states the size per card with it).
func (s *Store) Bytes(ctx context.Context) (int64, error) {
	var n int64
	if err := s.db.QueryRowContext(ctx, s.d.sizeQuery).Scan(&n); err != nil {
		return 0, s.fail(err)
	}
	return n, nil
}

// fail maps an unexpected database error: the client gets 503, the log
// gets the cause.
func (s *Store) fail(err error) error {
	if err == nil {
		return nil
	}
	var e *vault.Error
	if errors.As(err, &e) {
		return err
	}
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return &vault.Error{Kind: vault.KindUnavailable, Msg: vault.ErrUnavailable.Msg, Err: err}
	}
	return &vault.Error{Kind: vault.KindUnavailable, Msg: vault.ErrUnavailable.Msg, Err: fmt.Errorf("database: %w", err)}
}

func (s *Store) q(query string) string { return s.d.rebind(query) }

func micros(t time.Time) int64 { return t.UTC().UnixMicro() }

func fromMicros(us int64) time.Time { return time.UnixMicro(us).UTC() }

// applyWrite inserts a change's companions: the burnt key, the idempotent
// result and the audit entry.
func (s *Store) applyWrite(ctx context.Context, tx *txn, cardID string, w vault.Write) error {
	if w.PINTry != nil {
		// First: its UPDATE takes the card row's write lock before the
		// recheck share-locks that row. Taken the other way round, two
		// verifications on one card each hold a share lock, and each
		// waits for the other to upgrade (PostgreSQL: deadlock detected,
		// a 503; TestVerifyPINAcrossReplicasOnPostgres).
		if err := s.countPINTry(ctx, tx, w.PINTry); err != nil {
			return err
		}
	}
	if w.Reveal != nil {
		if err := s.recheckReveal(ctx, tx, w.Reveal); err != nil {
			return err
		}
	}
	if w.UsedKey != nil {
		_, err := tx.ExecContext(ctx, s.q(`INSERT INTO used_client_keys (fingerprint, card_id, used_at) VALUES (?, ?, ?)`),
			w.UsedKey, cardID, micros(w.Audit.At))
		if s.d.isUnique(err) {
			return vault.Conflict("public_key", "key has been used before; send a fresh single-use key")
		}
		if err != nil {
			return err
		}
	}
	if r := w.Idempotent; r != nil {
		// Answers leave with their window, so a key may be used again
		// after it and nothing about a request outlives it: an expired
		// answer is taken over in place (the pruner deletes the rest).
		s.prune.idempotency(r.CreatedAt.Sub(r.PruneBefore))
		res, err := tx.ExecContext(ctx, s.q(`INSERT INTO idempotency (scope, idem_key, request_hash, result, card_id, created_at) VALUES (?, ?, ?, ?, ?, ?)
			ON CONFLICT (scope, idem_key) DO UPDATE SET request_hash = excluded.request_hash, result = excluded.result, card_id = excluded.card_id, created_at = excluded.created_at
			WHERE idempotency.created_at < ?`),
			r.Scope, r.Key, r.RequestHash, r.Result, r.CardID, micros(r.CreatedAt), micros(r.PruneBefore))
		if err != nil {
			return err
		}
		if n, err := res.RowsAffected(); err != nil {
			return err
		} else if n == 0 {
			return vault.ErrDuplicateRequest // an answer within the window holds the key
		}
	}
	if w.Slot != nil {
		if err := s.countSubjects(ctx, tx, w.Slot); err != nil {
			return err
		}
	}
	if w.Order != nil {
		if err := s.moveOrder(ctx, tx, w.Order); err != nil {
			return err
		}
	}
	if err := s.insertAudit(ctx, tx, w.Audit); err != nil {
		return err
	}
	if w.Slot != nil {
		// Last, so that where the caller is counted in the transaction
		// (SQLite; PostgreSQL charges it apart, callerbudget.go) its
		// lock is held for the fewest statements before the commit.
		return s.countCaller(ctx, tx, w.Slot)
	}
	return nil
}

// countPINTry counts a PIN verification on its card. The UPDATE's guard
// decides under the row's write lock, so concurrent verifications on
// several replicas cannot spend more tries than the limit: a try on a
// card already at the limit changes nothing and is ErrPINBlocked.
func (s *Store) countPINTry(ctx context.Context, tx *txn, t *vault.PINTry) error {
	res, err := tx.ExecContext(ctx, s.q(`UPDATE cards SET pin_tries = CASE WHEN ? THEN 0 ELSE pin_tries + 1 END
		WHERE id = ? AND pin_block = ? AND pin_tries < ?`), t.Matched, t.CardID, t.PINBlock, t.Limit)
	if err != nil {
		return err
	}
	if n, _ := res.RowsAffected(); n == 1 {
		return nil
	}
	var tries int
	var block []byte
	if err := tx.QueryRowContext(ctx, s.q(`SELECT pin_tries, pin_block FROM cards WHERE id = ?`), t.CardID).Scan(&tries, &block); err != nil {
		return err
	}
	if !bytes.Equal(block, t.PINBlock) {
		return vault.Conflict("card_id", "the card's PIN changed during the verification; verify again")
	}
	return vault.ErrPINBlocked
}

// recheckReveal reads the card and, for a gated route, its owner's
// verified devices, and applies the reveal's check to them. On PostgreSQL
// the card's row is share-locked until commit: a lock or close waits for
// the reveal to commit, or the reveal reads its result. SQLite's writer
// runs alone.
func (s *Store) recheckReveal(ctx context.Context, tx *txn, r *vault.RevealCheck) error {
	var status, owner string
	var sealed bool
	err := tx.QueryRowContext(ctx, s.q(`SELECT status, owner_id, sealed IS NOT NULL FROM cards WHERE id = ?`+s.d.rowLock), r.CardID).Scan(&status, &owner, &sealed)
	if errors.Is(err, sql.ErrNoRows) {
		return vault.ErrNotFound
	}
	if err != nil {
		return err
	}
	var devices int
	if r.Gated {
		if err := tx.QueryRowContext(ctx, s.q(`SELECT COUNT(*) FROM devices WHERE person_id = ? AND status = ?`), owner, string(vault.DeviceVerified)).Scan(&devices); err != nil {
			return err
		}
	}
	return r.Check(vault.Status(status), sealed, devices > 0)
}

// countSlot checks an event against its budget and records it, the
// caller's distinct cards included.
func (s *Store) countSlot(ctx context.Context, tx *txn, r *vault.Slot) error {
	if err := s.countSubjects(ctx, tx, r); err != nil {
		return err
	}
	return s.countCaller(ctx, tx, r)
}

// countSubjects checks an event against its card's and its device's
// budgets and records it. Concurrent events are serialised (SQLite takes
// its write lock at BEGIN IMMEDIATE; PostgreSQL locks the card, then the
// device, and last, in countCaller, the caller), so two cannot both take
// the last slot.
func (s *Store) countSubjects(ctx context.Context, tx *txn, r *vault.Slot) error {
	subjects := []string{"budget:" + r.Kind + ":card:" + r.CardID}
	if r.DeviceID != "" {
		subjects = append(subjects, "budget:"+r.Kind+":device:"+r.DeviceID)
	}
	if err := s.serialize(ctx, tx, subjects...); err != nil {
		return err
	}
	s.prune.budget(r.Kind, r.Budget.Window) // rows out of the window go in the background
	use, err := s.subjectUse(ctx, tx, r)
	if err != nil {
		return err
	}
	if err := r.Check(use); err != nil {
		return err
	}
	id, err := uuid.NewV7()
	if err != nil {
		return err
	}
	_, err = tx.ExecContext(ctx, s.q(`INSERT INTO budget_events (id, kind, at, card_id, device_id, caller) VALUES (?, ?, ?, ?, ?, ?)`),
		id.String(), r.Kind, micros(r.At), r.CardID, r.DeviceID, r.Caller)
	return err
}

type querier interface {
	QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row
}

func (s *Store) budgetUse(ctx context.Context, q querier, r *vault.Slot) (vault.BudgetUse, error) {
	u, err := s.subjectUse(ctx, q, r)
	if err != nil {
		return u, err
	}
	_, err = s.callerUse(ctx, q, r, &u)
	return u, err
}

// subjectUse reads what the card's and the device's windows hold.
func (s *Store) subjectUse(ctx context.Context, q querier, r *vault.Slot) (vault.BudgetUse, error) {
	var u vault.BudgetUse
	since := micros(r.Since())
	query, args := cardWindowQuery, []any{r.Kind, since, r.CardID}
	if r.DeviceID != "" {
		query, args = cardAndDeviceWindowQuery, append(args, r.Kind, since, r.DeviceID)
	}
	var cardFirst, deviceFirst sql.NullInt64
	if err := q.QueryRowContext(ctx, s.q(query), args...).Scan(&u.Card, &cardFirst, &u.Device, &deviceFirst); err != nil {
		return u, err
	}
	if cardFirst.Valid {
		u.CardOldest = fromMicros(cardFirst.Int64)
	}
	if deviceFirst.Valid {
		u.DeviceOldest = fromMicros(deviceFirst.Int64)
	}
	return u, nil
}

// The windows of a card, and of a card and a device in one statement: a
// round trip fewer to PostgreSQL on every device's reveal.
const (
	cardWindow               = `(SELECT COUNT(*) AS n, MIN(at) AS first FROM budget_events WHERE kind = ? AND at > ? AND card_id = ?) AS c`
	deviceWindow             = `(SELECT COUNT(*) AS n, MIN(at) AS first FROM budget_events WHERE kind = ? AND at > ? AND device_id = ?) AS d`
	cardWindowQuery          = `SELECT c.n, c.first, 0, NULL FROM ` + cardWindow
	cardAndDeviceWindowQuery = `SELECT c.n, c.first, d.n, d.first FROM ` + cardWindow + `, ` + deviceWindow
)

// BudgetUse reports what a slot's windows already hold.
func (s *Store) BudgetUse(ctx context.Context, r *vault.Slot) (vault.BudgetUse, error) {
	u, err := s.budgetUse(ctx, preparedReads{s}, r)
	return u, s.fail(err)
}

const (
	cardInsertColumns = `id, owner_id, type, status, last4, expiry_month, expiry_year, name, fingerprint, fp_version, sealed, key_version, created_at, updated_at, closed_at, closure_reason`
	cardColumns       = cardInsertColumns + `, pin_block, pin_key_version, pin_tries`
)

type scanner interface{ Scan(dest ...any) error }

func scanCard(r scanner) (*vault.Card, error) {
	var c vault.Card
	var created, updated int64
	var closed sql.NullInt64
	var typ, status, reason string
	var fpv, kv int64
	var pinVersion sql.NullInt64
	if err := r.Scan(&c.ID, &c.OwnerID, &typ, &status, &c.Last4, &c.ExpiryMonth, &c.ExpiryYear, &c.Name,
		&c.Fingerprint, &fpv, &c.Sealed, &kv, &created, &updated, &closed, &reason, &c.PINBlock, &pinVersion, &c.PINTries); err != nil {
		return nil, err
	}
	c.PINKeyVersion = uint32(pinVersion.Int64)
	c.Type, c.Status, c.Closure = vault.CardType(typ), vault.Status(status), vault.ClosureReason(reason)
	c.FPVersion, c.KeyVersion = uint32(fpv), uint32(kv)
	c.CreatedAt, c.UpdatedAt = fromMicros(created), fromMicros(updated)
	if closed.Valid {
		t := fromMicros(closed.Int64)
		c.ClosedAt = &t
	}
	return &c, nil
}

// CreateCard inserts a card with its Write. The Write's slot is counted
// before the insert: past a budget the answer is the budget's, whether or
// not the card's PAN is already in the vault.
func (s *Store) CreateCard(ctx context.Context, c *vault.Card, w vault.Write) error {
	charged, err := s.chargeCallerApart(ctx, w.Slot)
	if err != nil {
		return err
	}
	return s.inTx(ctx, func(tx *txn) error {
		tx.callerCharged = charged
		if w.Slot != nil {
			if err := s.countSlot(ctx, tx, w.Slot); err != nil {
				return err
			}
			w.Slot = nil
		}
		for _, fp := range c.PriorFingerprints {
			var one int
			err := tx.QueryRowContext(ctx, s.q(`SELECT 1 FROM cards WHERE fingerprint = ?`), fp).Scan(&one)
			if err == nil {
				return vault.Conflict("pan", "card already exists")
			}
			if !errors.Is(err, sql.ErrNoRows) {
				return err
			}
		}
		_, err := tx.ExecContext(ctx, s.q(`INSERT INTO cards (`+cardInsertColumns+`) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, NULL, '')`),
			c.ID, c.OwnerID, string(c.Type), string(c.Status), c.Last4, c.ExpiryMonth, c.ExpiryYear, c.Name,
			c.Fingerprint, int64(c.FPVersion), c.Sealed, int64(c.KeyVersion), micros(c.CreatedAt), micros(c.UpdatedAt))
		if s.d.isUnique(err) {
			return vault.Conflict("pan", "card already exists")
		}
		if err != nil {
			return err
		}
		return s.applyWrite(ctx, tx, c.ID, w)
	})
}

func (s *Store) oneCard(ctx context.Context, where string, args ...any) (*vault.Card, error) {
	c, err := scanCard(s.queryRow(ctx, s.q(`SELECT `+cardColumns+` FROM cards WHERE `+where), args...))
	if errors.Is(err, sql.ErrNoRows) {
		return nil, vault.ErrNotFound
	}
	return c, s.fail(err)
}

// Card returns an owner's card; another owner's card is ErrNotFound.
func (s *Store) Card(ctx context.Context, ownerID, id string) (*vault.Card, error) {
	return s.oneCard(ctx, `id = ? AND owner_id = ?`, id, ownerID)
}

// CardByID returns a card whoever owns it.
func (s *Store) CardByID(ctx context.Context, id string) (*vault.Card, error) {
	return s.oneCard(ctx, `id = ?`, id)
}

// CardByFingerprint returns the card with a PAN fingerprint.
func (s *Store) CardByFingerprint(ctx context.Context, fp []byte) (*vault.Card, error) {
	return s.oneCard(ctx, `fingerprint = ?`, fp)
}

// ListCards lists an owner's cards in id order after the cursor.
func (s *Store) ListCards(ctx context.Context, f vault.CardFilter) ([]*vault.Card, error) {
	where := []string{"owner_id = ?", "id > ?"}
	args := []any{f.OwnerID, f.After}
	if f.Status != "" {
		where = append(where, "status = ?")
		args = append(args, string(f.Status))
	}
	args = append(args, f.Limit)
	return s.queryCards(ctx, strings.Join(where, " AND ")+` ORDER BY id LIMIT ?`, args...)
}

// queryCards reads the cards a WHERE clause (and its ORDER and LIMIT)
// selects.
func (s *Store) queryCards(ctx context.Context, where string, args ...any) ([]*vault.Card, error) {
	rows, err := s.query(ctx, s.q(`SELECT `+cardColumns+` FROM cards WHERE `+where), args...)
	if err != nil {
		return nil, s.fail(err)
	}
	defer rows.Close()
	var out []*vault.Card
	for rows.Next() {
		c, err := scanCard(rows)
		if err != nil {
			return nil, s.fail(err)
		}
		out = append(out, c)
	}
	return out, s.fail(rows.Err())
}

// Commit commits a Write on its own.
func (s *Store) Commit(ctx context.Context, w vault.Write) error {
	charged, err := s.chargeCallerApart(ctx, w.Slot)
	if err != nil {
		return err
	}
	return s.inTx(ctx, func(tx *txn) error {
		tx.callerCharged = charged
		return s.applyWrite(ctx, tx, w.Audit.CardID, w)
	})
}

// SetStatus moves a card between statuses.
func (s *Store) SetStatus(ctx context.Context, ownerID, id string, from []vault.Status, to vault.Status, at time.Time, w vault.Write) (*vault.Card, error) {
	var out *vault.Card
	err := s.inTx(ctx, func(tx *txn) error {
		c, err := scanCard(tx.QueryRowContext(ctx, s.q(`SELECT `+cardColumns+` FROM cards WHERE id = ? AND owner_id = ?`), id, ownerID))
		if errors.Is(err, sql.ErrNoRows) {
			return vault.ErrNotFound
		}
		if err != nil {
			return err
		}
		allowed := false
		for _, st := range from {
			allowed = allowed || c.Status == st
		}
		if !allowed {
			return vault.Conflict("status", fmt.Sprintf("card is %s and cannot become %s", c.Status, to))
		}
		// The status guard in the WHERE makes a concurrent change lose
		// cleanly instead of overwriting.
		res, err := tx.ExecContext(ctx, s.q(`UPDATE cards SET status = ?, updated_at = ? WHERE id = ? AND status = ?`), string(to), micros(at), id, string(c.Status))
		if err != nil {
			return err
		}
		if n, _ := res.RowsAffected(); n != 1 {
			return vault.Conflict("status", "card changed concurrently")
		}
		c.Status, c.UpdatedAt = to, at
		out = c
		return s.applyWrite(ctx, tx, id, w)
	})
	return out, err
}

// CloseCard closes a card and deletes its sealed record.
func (s *Store) CloseCard(ctx context.Context, ownerID, id string, reason vault.ClosureReason, at time.Time, w vault.Write) error {
	return s.inTx(ctx, func(tx *txn) error {
		var status string
		err := tx.QueryRowContext(ctx, s.q(`SELECT status FROM cards WHERE id = ? AND owner_id = ?`), id, ownerID).Scan(&status)
		if errors.Is(err, sql.ErrNoRows) {
			return vault.ErrNotFound
		}
		if err != nil {
			return err
		}
		if vault.Status(status) == vault.StatusClosed {
			return vault.Conflict("status", "card is already closed")
		}
		// The PIN block goes with the record: nothing of a closed card
		// can be recovered, and no key version stays in use for it.
		res, err := tx.ExecContext(ctx, s.q(`UPDATE cards SET status = ?, sealed = NULL, pin_block = NULL, closed_at = ?, closure_reason = ?, updated_at = ? WHERE id = ? AND status = ?`),
			string(vault.StatusClosed), micros(at), string(reason), micros(at), id, status)
		if err != nil {
			return err
		}
		if n, _ := res.RowsAffected(); n != 1 {
			return vault.Conflict("status", "card changed concurrently")
		}
		// Stored first answers about the card hold its data encrypted to
		// client keys: they go with the record.
		if _, err := tx.ExecContext(ctx, s.q(`DELETE FROM idempotency WHERE card_id = ?`), id); err != nil {
			return err
		}
		return s.applyWrite(ctx, tx, id, w)
	})
}

// Idempotent returns a result stored since a time.
func (s *Store) Idempotent(ctx context.Context, scope, key string, since time.Time) (*vault.IdempotentResult, error) {
	r := vault.IdempotentResult{Scope: scope, Key: key}
	var created int64
	err := s.queryRow(ctx, s.q(`SELECT request_hash, result, card_id, created_at FROM idempotency WHERE scope = ? AND idem_key = ? AND created_at >= ?`), scope, key, micros(since)).
		Scan(&r.RequestHash, &r.Result, &r.CardID, &created)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, vault.ErrNotFound
	}
	if err != nil {
		return nil, s.fail(err)
	}
	r.CreatedAt = fromMicros(created)
	return &r, nil
}
