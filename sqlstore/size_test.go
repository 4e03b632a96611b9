package sqlstore

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"path/filepath"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/cardvault/cardvault/internal/testsupport/testenv"
	"github.com/cardvault/cardvault/vault"
)

// TestBytesGrowsWithCards: the size the bench divides by its cards is
// the database's, and grows as cards are written, on both engines.
func TestBytesGrowsWithCards(t *testing.T) {
	open := map[string]func(t *testing.T) *Store{
		"sqlite": func(t *testing.T) *Store {
			s, err := OpenSQLite(context.Background(), filepath.Join(t.TempDir(), "vault.db"))
			if err != nil {
				t.Fatal(err)
			}
			return s
		},
		"postgres": func(t *testing.T) *Store {
			s, err := OpenPostgres(context.Background(), testenv.PostgresDatabase(t), "")
			if err != nil {
				t.Fatal(err)
			}
			return s
		},
	}
	for name, open := range open {
		t.Run(name, func(t *testing.T) {
			ctx := context.Background()
			s := open(t)
			defer s.Close()
			before, err := s.Bytes(ctx)
			if err != nil || before <= 0 {
				t.Fatalf("Bytes = %d, %v", before, err)
			}
			now := time.Now().UTC()
			for range 500 {
				id := uuid.Must(uuid.NewV7()).String()
				fp := sha256.Sum256([]byte(id))
				sealed := make([]byte, 200)
				rand.Read(sealed)
				c := &vault.Card{ID: id, OwnerID: "acct-1", Type: vault.TypeVirtual, Status: vault.StatusOpen,
					Last4: "1234", ExpiryMonth: 11, ExpiryYear: 2029, Fingerprint: fp[:], FPVersion: 1,
					Sealed: sealed, KeyVersion: 1, CreatedAt: now, UpdatedAt: now}
				w := vault.Write{Audit: vault.AuditEntry{At: now, Actor: "test", Action: "card.issue", CardID: id, OwnerID: "acct-1", Outcome: "ok"}}
				if err := s.CreateCard(ctx, c, w); err != nil {
					t.Fatal(err)
				}
			}
			after, err := s.Bytes(ctx)
			if err != nil {
				t.Fatal(err)
			}
			// 500 cards of at least their 200 sealed bytes each.
			if after-before < 500*200 {
				t.Fatalf("the database grew by %d bytes over 500 cards (from %d to %d)", after-before, before, after)
			}
			t.Logf("%s: %d bytes, then %d after 500 cards (%d per card)", name, before, after, (after-before)/500)
		})
	}
}
