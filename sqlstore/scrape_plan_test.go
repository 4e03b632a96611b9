package sqlstore

import (
	"context"
	"path/filepath"
	"strings"
	"testing"

	"github.com/cardvault/cardvault/internal/testsupport/testenv"
)

// The ceremony count runs on every metrics scrape, while the audit table
// grows by an entry per reveal: it must read an index of the ceremony
// entries, never scan the table.
func TestCeremonyRunsReadAnIndexOnSQLite(t *testing.T) {
	ctx := context.Background()
	s, err := OpenSQLite(ctx, filepath.Join(t.TempDir(), "vault.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	rows, err := s.db.QueryContext(ctx, "EXPLAIN QUERY PLAN "+ceremonyRunsQuery)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var plan []string
	for rows.Next() {
		var id, parent, notUsed int
		var detail string
		if err := rows.Scan(&id, &parent, &notUsed, &detail); err != nil {
			t.Fatal(err)
		}
		plan = append(plan, detail)
	}
	if got := strings.Join(plan, "; "); !strings.Contains(got, "INDEX audit_ceremony") {
		t.Fatalf("the ceremony count's plan is %q: a scan of the audit table on every scrape", got)
	}
}

func TestCeremonyRunsReadAnIndexOnPostgres(t *testing.T) {
	ctx := context.Background()
	s, err := OpenPostgres(ctx, testenv.PostgresDatabase(t), "")
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	conn, err := s.db.Conn(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	// An empty table is cheapest to scan; forbid that, and the plan shows
	// whether an index can serve the query at all.
	if _, err := conn.ExecContext(ctx, "SET enable_seqscan = off"); err != nil {
		t.Fatal(err)
	}
	rows, err := conn.QueryContext(ctx, "EXPLAIN "+ceremonyRunsQuery)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var plan []string
	for rows.Next() {
		var line string
		if err := rows.Scan(&line); err != nil {
			t.Fatal(err)
		}
		plan = append(plan, strings.TrimSpace(line))
	}
	if got := strings.Join(plan, "; "); !strings.Contains(got, "audit_ceremony") {
		t.Fatalf("the ceremony count's plan is %q: a scan of the audit table on every scrape", got)
	}
}
