package sqlstore

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"net/url"
	"os"
	"path/filepath"

	"github.com/pressly/goose/v3"
	"modernc.org/sqlite"
	sqlite3 "modernc.org/sqlite/lib"
)

// OpenSQLite opens (creating if needed) a SQLite database at path and
// migrates it. The file is created with mode 0600.
func OpenSQLite(ctx context.Context, path string) (*Store, error) {
	if dir := filepath.Dir(path); dir != "" {
		if err := os.MkdirAll(dir, 0o700); err != nil {
			return nil, err
		}
	}
	if f, err := os.OpenFile(path, os.O_CREATE|os.O_RDWR, 0o600); err == nil {
		f.Close()
	}
	q := url.Values{}
	q.Add("_pragma", "busy_timeout(10000)")
	q.Add("_pragma", "journal_mode(WAL)")
	q.Add("_pragma", "synchronous(FULL)")
	q.Add("_pragma", "foreign_keys(1)")
	// BEGIN IMMEDIATE takes the write lock up front, so concurrent writers
	// queue on busy_timeout instead of failing at commit.
	q.Add("_txlock", "immediate")
	db, err := sql.Open("sqlite", "file:"+path+"?"+q.Encode())
	if err != nil {
		return nil, fmt.Errorf("sqlite: %w", err)
	}
	// database/sql keeps two idle connections by default: under load the
	// rest were closed on release and opened again on the next request,
	// each open running the pragmas and every prepared statement being
	// parsed again on it (measured: 15% of a reveal's CPU in opening, 20%
	// in parsing). Readers in WAL mode run side by side, so the pool keeps
	// as many idle as it may open.
	db.SetMaxOpenConns(sqliteConns)
	db.SetMaxIdleConns(sqliteConns)
	return open(ctx, db, dialect{
		name:     goose.DialectSQLite3,
		rebind:   func(q string) string { return q },
		isUnique: sqliteUnique,
		txOpts:   func() *sql.TxOptions { return nil },
		// Pages in use and free alike: the file's size, the WAL aside.
		sizeQuery: "SELECT page_count * page_size FROM pragma_page_count(), pragma_page_size()",
		// Other processes (a ceremony) still meet busy_timeout.
		singleWriter: true,
	})
}

// sqliteConns bounds the SQLite pool: enough for a reader per busy client
// at the load the bench drives, few enough that file handles stay bounded.
const sqliteConns = 16

func sqliteUnique(err error) bool {
	var e *sqlite.Error
	if !errors.As(err, &e) {
		return false
	}
	return e.Code() == sqlite3.SQLITE_CONSTRAINT_UNIQUE || e.Code() == sqlite3.SQLITE_CONSTRAINT_PRIMARYKEY
}
