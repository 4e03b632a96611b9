package sqlstore

import (
	"context"
	"path/filepath"
	"testing"
	"time"

	"github.com/cardvault/cardvault/vault"
	"github.com/google/uuid"
)

// A caller that hangs up while its piece's statement runs costs only its
// own request (issue 28). SQLite rolls back the whole transaction when a
// write statement inside it is interrupted, which its driver does when
// the statement's context ends: the group's other pieces then failed with
// "no such savepoint: piece". Statements run under the group's context;
// a caller's is checked between pieces.
func TestGroupSurvivesACancelledPiece(t *testing.T) {
	s, err := OpenSQLite(context.Background(), filepath.Join(t.TempDir(), "vault.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	ctx := context.Background()
	// Hold the writer slot so both pieces queue, then let one leader take
	// them as one group: the good one first.
	s.writer <- struct{}{}
	good := newTestCard()
	goodErr := make(chan error, 1)
	go func() {
		goodErr <- s.CreateCard(ctx, good, vault.Write{Audit: vault.AuditEntry{At: time.Now(), Actor: "a", Action: "card.import", CardID: good.ID, Outcome: "ok"}})
	}()
	waitQueued(t, s, 1)
	hungUp, cancel := context.WithCancel(ctx)
	slowErr := make(chan error, 1)
	go func() {
		slowErr <- s.inTx(hungUp, func(tx *txn) error {
			time.AfterFunc(5*time.Millisecond, cancel) // the client hangs up mid-statement
			// A write whose subquery runs long enough to be interrupted.
			_, err := tx.ExecContext(hungUp, `DELETE FROM budget_events WHERE id IN (
				WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < 60000) SELECT 'id-' || x FROM c)`)
			return err
		})
	}()
	waitQueued(t, s, 2)
	<-s.writer
	if err := <-goodErr; err != nil {
		t.Fatalf("the other caller's write failed with the hung-up one: %v", err)
	}
	<-slowErr // its own outcome, whatever it is
	if _, err := s.CardByID(ctx, good.ID); err != nil {
		t.Fatalf("the other caller's acknowledged card is not there: %v", err)
	}
}

// waitQueued waits until n pieces wait in the group queue.
func waitQueued(t *testing.T, s *Store, n int) {
	t.Helper()
	for range 500 {
		s.group.mu.Lock()
		queued := len(s.group.waiting)
		s.group.mu.Unlock()
		if queued >= n {
			return
		}
		time.Sleep(2 * time.Millisecond)
	}
	t.Fatalf("%d pieces never queued", n)
}

func newTestCard() *vault.Card {
	now := time.Now().UTC()
	id := uuid.Must(uuid.NewV7()).String()
	return &vault.Card{ID: id, OwnerID: "acct-1", Type: vault.TypeVirtual, Status: vault.StatusOpen, Last4: "1111",
		ExpiryMonth: 12, ExpiryYear: 2030, Fingerprint: []byte(id), FPVersion: 1, Sealed: []byte("sealed"), KeyVersion: 1,
		CreatedAt: now, UpdatedAt: now}
}
