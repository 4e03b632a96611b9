package sqlstore

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/stdlib"
	"github.com/pressly/goose/v3"
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
	db := sql.OpenDB(stdlib.GetConnector(*cfg))
	db.SetMaxOpenConns(32)
	db.SetMaxIdleConns(32)
	db.SetConnMaxIdleTime(5 * time.Minute)
	return open(ctx, db, dialect{
		name:      goose.DialectPostgres,
		rebind:    dollarPlaceholders,
		isUnique:  postgresUnique,
		txOpts:    func() *sql.TxOptions { return nil }, // READ COMMITTED, with serialize where counts decide
		serialize: postgresSerialize,
		rowLock:   " FOR SHARE",
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
	for _, subject := range subjects {
		if _, err := tx.ExecContext(ctx, `SELECT pg_advisory_xact_lock(hashtextextended($1, 0))`, subject); err != nil {
			return fmt.Errorf("lock: %w", err)
		}
	}
	return nil
}
