package sqlstore

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/cardvault/cardvault/auditchain"
	"github.com/cardvault/cardvault/vault"
	"github.com/google/uuid"
)

// A commit can land while its client sees an error (a request canceled at
// commit; PostgreSQL under the bench's load did this). The store's view of
// that chain's end is then behind the database's, and every later entry on
// the chain collided with the committed one (unique audit_chain: 503 for
// one write in eight, for good). The store must find the chain's real end
// and go on.
func TestAuditChainSurvivesAnUnacknowledgedCommit(t *testing.T) {
	for name, db := range auditDatabases() {
		t.Run(name, func(t *testing.T) {
			s := db(t)()
			ctx := context.Background()
			entry := func(i int) vault.AuditEntry {
				return vault.AuditEntry{At: time.Unix(1_800_000_000+int64(i), 0), Actor: "test", Action: "card.reveal",
					CardID: fmt.Sprintf("card-%03d", i), OwnerID: "owner", Outcome: "ok", RequestID: fmt.Sprint(i)}
			}
			if err := s.AppendAudit(ctx, entry(0)); err != nil {
				t.Fatal(err)
			}
			// The entry a lost acknowledgement left: committed, correctly
			// chained, unknown to the store.
			var chain string
			var seq int64
			var prev []byte
			if err := s.db.QueryRow(`SELECT chain, seq, hash FROM audit`).Scan(&chain, &seq, &prev); err != nil {
				t.Fatal(err)
			}
			id, _ := uuid.NewV7()
			r := auditchain.Row{ID: id.String(), At: micros(time.Unix(1_800_000_001, 0)), Actor: "test", Action: "card.reveal",
				CardID: "card-lost", OwnerID: "owner", Outcome: "ok", RequestID: "lost", Detail: "null"}
			if _, err := s.db.Exec(s.q(`INSERT INTO audit (id, at, actor, action, card_id, owner_id, outcome, request_id, detail, chain, seq, prev_hash, hash)
				VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`),
				r.ID, r.At, r.Actor, r.Action, r.CardID, r.OwnerID, r.Outcome, r.RequestID, r.Detail, chain, seq+1, prev, auditchain.EntryHash(chain, seq+1, prev, r)); err != nil {
				t.Fatal(err)
			}
			failed := 0
			for i := 1; i <= 4*auditChains; i++ {
				if err := s.AppendAudit(ctx, entry(i)); err != nil {
					failed++
				}
			}
			if failed > 1 {
				t.Fatalf("%d of %d writes failed after one unacknowledged commit; at most the one that finds the chain's real end may", failed, 4*auditChains)
			}
			var n int
			if err := s.db.QueryRow(s.q(`SELECT COUNT(*) FROM audit WHERE chain = ?`), chain).Scan(&n); err != nil || n < 5 {
				t.Fatalf("the chain holds %d entries (%v), want it to have gone on past the lost one", n, err)
			}
		})
	}
}
