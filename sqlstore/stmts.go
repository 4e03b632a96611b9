package sqlstore

import (
	"context"
	"database/sql"
	"sync"
)

// stmtCache holds the write path's statements and the hot reads', prepared
// once and reused by every transaction and request: database/sql prepares each on a connection the
// first time it runs there. With SQLite's single writer every statement a
// write transaction runs sits on the commit's critical path, where parsing
// it anew cost about a sixth of the service's CPU (pprof, secure view).
type stmtCache struct {
	db *sql.DB
	mu sync.Mutex
	m  map[string]*sql.Stmt
}

// maxCachedStmts bounds the cache; the write path has a few dozen
// distinct statements.
const maxCachedStmts = 256

func (c *stmtCache) get(ctx context.Context, query string) *sql.Stmt {
	if c == nil {
		return nil
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if st, ok := c.m[query]; ok {
		return st
	}
	if len(c.m) >= maxCachedStmts {
		return nil
	}
	st, err := c.db.PrepareContext(ctx, query)
	if err != nil {
		return nil // the query runs unprepared and reports its own error
	}
	if c.m == nil {
		c.m = map[string]*sql.Stmt{}
	}
	c.m[query] = st
	return st
}

func (c *stmtCache) close() {
	if c == nil {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, st := range c.m {
		st.Close()
	}
	c.m = nil
}

// ExecContext runs a write transaction's statement, prepared once.
func (t *txn) ExecContext(ctx context.Context, query string, args ...any) (sql.Result, error) {
	ctx = t.stmtContext(ctx)
	if st := t.stmts.get(ctx, query); st != nil {
		return t.Tx.StmtContext(ctx, st).ExecContext(ctx, args...)
	}
	return t.Tx.ExecContext(ctx, query, args...)
}

// QueryRowContext runs a write transaction's query, prepared once.
func (t *txn) QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row {
	ctx = t.stmtContext(ctx)
	if st := t.stmts.get(ctx, query); st != nil {
		return t.Tx.StmtContext(ctx, st).QueryRowContext(ctx, args...)
	}
	return t.Tx.QueryRowContext(ctx, query, args...)
}

// QueryContext runs a write transaction's query, prepared once.
func (t *txn) QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error) {
	ctx = t.stmtContext(ctx)
	if st := t.stmts.get(ctx, query); st != nil {
		return t.Tx.StmtContext(ctx, st).QueryContext(ctx, args...)
	}
	return t.Tx.QueryContext(ctx, query, args...)
}

// queryRow runs a read outside a transaction, prepared once where the
// store caches statements: a secure view reads its card, device and
// idempotency record, and parsing each anew cost about a fifth of the
// service's CPU on SQLite (issue 18's profile).
func (s *Store) queryRow(ctx context.Context, query string, args ...any) *sql.Row {
	if st := s.stmts.get(ctx, query); st != nil {
		return st.QueryRowContext(ctx, args...)
	}
	return s.db.QueryRowContext(ctx, query, args...)
}

// query is queryRow for reads of many rows.
func (s *Store) query(ctx context.Context, query string, args ...any) (*sql.Rows, error) {
	if st := s.stmts.get(ctx, query); st != nil {
		return st.QueryContext(ctx, args...)
	}
	return s.db.QueryContext(ctx, query, args...)
}

// preparedReads is the store's prepared reads as a querier, for code that
// runs both inside a write transaction and outside one (budget counts).
type preparedReads struct{ s *Store }

func (p preparedReads) QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row {
	return p.s.queryRow(ctx, query, args...)
}
