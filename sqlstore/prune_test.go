package sqlstore

import (
	"context"
	"path/filepath"
	"testing"
	"time"

	"github.com/cardvault/cardvault/vault"
)

// Rows that have left their windows are deleted in the background, not
// on the request path (issue 29), and an idempotency key whose answer has
// expired can be used again although its row is still there.
func TestPruneLeavesTheRequestPath(t *testing.T) {
	ctx := context.Background()
	s, err := OpenSQLite(ctx, filepath.Join(t.TempDir(), "vault.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	count := func(table string) int {
		var n int
		if err := s.db.QueryRowContext(ctx, "SELECT COUNT(*) FROM "+table).Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n
	}
	long := time.Now().Add(-2 * time.Hour)
	write := func(c *vault.Card, at time.Time, key string) error {
		return s.CreateCard(ctx, c, vault.Write{
			Audit:      vault.AuditEntry{At: at, Actor: "a", Action: "card.import", CardID: c.ID, Outcome: "ok"},
			Idempotent: &vault.IdempotentResult{Scope: "s", Key: key, RequestHash: []byte("h"), Result: []byte("r"), CardID: c.ID, CreatedAt: at, PruneBefore: at.Add(-time.Hour)},
			Slot:       &vault.Slot{Kind: "import", At: at, CardID: c.ID, Caller: "c", Budget: vault.Budget{PerCard: 100, PerCaller: 100, Window: time.Hour}},
		})
	}
	if err := write(newTestCard(), long, "k"); err != nil {
		t.Fatal(err)
	}
	// Two hours later the key is free again: the old answer is out of
	// its window, though no request deleted it.
	if err := write(newTestCard(), time.Now(), "k"); err != nil {
		t.Fatalf("a key whose answer expired: %v", err)
	}
	if err := write(newTestCard(), time.Now(), "k"); err != vault.ErrDuplicateRequest {
		t.Fatalf("a key whose answer is within its window: %v, want ErrDuplicateRequest", err)
	}
	if err := write(newTestCard(), long, "old"); err != nil {
		t.Fatal(err)
	}
	if n := count("budget_events"); n != 3 {
		t.Fatalf("%d budget events before the prune: the request path deleted some", n)
	}
	if err := s.pruneNow(ctx, time.Now()); err != nil {
		t.Fatal(err)
	}
	if e, i, c := count("budget_events"), count("idempotency"), count("budget_caller_cards"); e != 1 || i != 1 || c != 1 {
		t.Fatalf("after the prune: %d budget events, %d idempotent answers, %d caller cards; want 1, 1, 1", e, i, c)
	}
}
