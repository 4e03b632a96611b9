package sqlstore

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/cardvault/cardvault/vault"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/stdlib"
	"github.com/pressly/goose/v3"
	"github.com/pressly/goose/v3/lock"
)

// OpenPostgres connects to PostgreSQL (or a PostgreSQL-compatible
// database) with pgx and migrates it. Several replicas may share one
// database: every rule that must hold across them (single-use keys,
// idempotency keys, order moves, budgets) is enforced by the database.
// A non-empty password overrides the DSN's, so it can come from a file.
func OpenPostgres(ctx context.Context, dsn, password string) (*Store, error) {
	cfg, err := pgx.ParseConfig(dsn)
	if err != nil {
		// pgx's message can quote the DSN, password included.
		return nil, errors.New("postgres: cannot parse the connection string")
	}
	if password != "" {
		cfg.Password = password
	}
	if cfg.ConnectTimeout == 0 {
		// An unreachable database must fail a request fast (503), not
		// hold it for the kernel's TCP timeout.
		cfg.ConnectTimeout = 3 * time.Second
	}
	// Replicas started together migrate one at a time.
	locker, err := lock.NewPostgresSessionLocker()
	if err != nil {
		return nil, err
	}
	db := sql.OpenDB(stdlib.GetConnector(*cfg))
	db.SetMaxOpenConns(32)
	db.SetMaxIdleConns(32)
	db.SetConnMaxIdleTime(5 * time.Minute)
	return open(ctx, db, dialect{
		name:         goose.DialectPostgres,
		rebind:       dollarPlaceholders,
		isUnique:     postgresUnique,
		txOpts:       func() *sql.TxOptions { return nil }, // READ COMMITTED, with serialize where counts decide
		serialize:    postgresSerialize,
		rowLock:      " FOR SHARE",
		chargeCaller: postgresChargeCaller,
		sizeQuery:    "SELECT pg_database_size(current_database())",
		migrations:   []goose.ProviderOption{goose.WithGoMigrations(postgresFunctions), goose.WithSessionLocker(locker)},
	})
}

// dollarPlaceholders rewrites the store's ? placeholders as $1, $2, …
// The store's queries hold no ? inside string literals.
func dollarPlaceholders(q string) string {
	if !strings.Contains(q, "?") {
		return q
	}
	var b strings.Builder
	n := 0
	for _, r := range q {
		if r == '?' {
			n++
			b.WriteString("$" + strconv.Itoa(n))
			continue
		}
		b.WriteRune(r)
	}
	return b.String()
}

func postgresUnique(err error) bool {
	var e *pgconn.PgError
	return errors.As(err, &e) && e.Code == "23505" // unique_violation
}

// postgresSerialize takes a transaction-scoped advisory lock per subject:
// under READ COMMITTED two transactions could otherwise both count before
// either inserts. Callers name subjects in a fixed order (card before
// device), so two transactions never wait on each other.
func postgresSerialize(ctx context.Context, tx *sql.Tx, subjects ...string) error {
	// One statement takes every lock, a round trip for all: a select
	// list is evaluated left to right, so the locks are taken in the
	// order given, and every caller gives its subjects in one order.
	locks := make([]string, len(subjects))
	args := make([]any, len(subjects))
	for i, subject := range subjects {
		locks[i] = fmt.Sprintf("pg_advisory_xact_lock(hashtextextended($%d, 0))", i+1)
		args[i] = subject
	}
	if _, err := tx.ExecContext(ctx, "SELECT "+strings.Join(locks, ", "), args...); err != nil {
		return fmt.Errorf("lock: %w", err)
	}
	return nil
}

// postgresFunctions is migration 11: the server-side charge of a caller's
// budget (callerbudget.go), in PL/pgSQL so that it runs as one statement
// of its own. Each statement of a PL/pgSQL function takes a fresh snapshot
// under READ COMMITTED, so the count read after the lock sees every
// charge committed before it; one SQL statement would read a snapshot
// taken before it waited. The steps are countCaller's.
var postgresFunctions = goose.NewGoMigration(11,
	&goose.GoFunc{RunTx: func(ctx context.Context, tx *sql.Tx) error {
		_, err := tx.ExecContext(ctx, chargeCallerFunction)
		return err
	}},
	&goose.GoFunc{RunTx: func(ctx context.Context, tx *sql.Tx) error {
		_, err := tx.ExecContext(ctx, `DROP FUNCTION cardvault_charge_caller`)
		return err
	}})

const chargeCallerFunction = `
CREATE FUNCTION cardvault_charge_caller(p_kind text, p_caller text, p_card text, p_at bigint, p_since bigint, p_end bigint, p_budget int,
	OUT allowed boolean, OUT used bigint, OUT oldest bigint)
LANGUAGE plpgsql AS $$
DECLARE
	held bigint;
BEGIN
	-- The charge's own commit need not wait for the disk: a write that
	-- succeeds after it flushes the log past it.
	PERFORM set_config('synchronous_commit', 'off', true);
	PERFORM pg_advisory_xact_lock(hashtextextended('budget:' || p_kind || ':caller:' || p_caller, 0));
	SELECT c.bucket_end INTO held FROM budget_caller_cards c WHERE c.kind = p_kind AND c.caller = p_caller AND c.card_id = p_card;
	IF held IS NOT NULL AND held <= p_since THEN
		held := NULL;
	END IF;
	IF held IS NULL THEN
		SELECT COALESCE(SUM(b.n), 0), MIN(CASE WHEN b.n > 0 THEN b.bucket_end END) INTO used, oldest
			FROM budget_caller_buckets b WHERE b.kind = p_kind AND b.caller = p_caller AND b.bucket_end > p_since;
		IF p_budget > 0 AND used >= p_budget THEN
			allowed := false;
			RETURN;
		END IF;
	ELSIF held >= p_end THEN
		allowed := true;
		RETURN;
	ELSE
		UPDATE budget_caller_buckets SET n = n - 1 WHERE kind = p_kind AND caller = p_caller AND bucket_end = held;
	END IF;
	INSERT INTO budget_caller_buckets AS b (kind, caller, bucket_end, n) VALUES (p_kind, p_caller, p_end, 1)
		ON CONFLICT (kind, caller, bucket_end) DO UPDATE SET n = b.n + 1;
	INSERT INTO budget_caller_cards AS c (kind, caller, card_id, last_at, bucket_end) VALUES (p_kind, p_caller, p_card, p_at, p_end)
		ON CONFLICT (kind, caller, card_id) DO UPDATE SET last_at = excluded.last_at, bucket_end = excluded.bucket_end;
	allowed := true;
END
$$`

// postgresChargeCaller charges a slot to its caller in one autocommitted
// statement. It returns nil when the slot is charged (or its card already
// counts), and the caller's use when the budget refuses it.
func postgresChargeCaller(ctx context.Context, db *sql.DB, r *vault.Slot, end int64) (*vault.BudgetUse, error) {
	var allowed bool
	var used int
	var oldest sql.NullInt64
	err := db.QueryRowContext(ctx, `SELECT allowed, COALESCE(used, 0), oldest FROM cardvault_charge_caller($1, $2, $3, $4, $5, $6, $7)`,
		r.Kind, r.Caller, r.CardID, micros(r.At), micros(r.Since()), end, r.Budget.PerCaller).Scan(&allowed, &used, &oldest)
	if err != nil {
		return nil, fmt.Errorf("caller budget: %w", err)
	}
	if allowed {
		return nil, nil
	}
	u := &vault.BudgetUse{Caller: used}
	if oldest.Valid {
		u.CallerOldest = fromMicros(oldest.Int64)
	}
	return u, nil
}
