package vault_test

import (
	"context"
	"crypto/rand"
	"fmt"
	"testing"
	"time"

	"github.com/cardvault/cardvault/hsm"
	"github.com/cardvault/cardvault/vault"
	"github.com/google/uuid"
)

// A record sealed under the old version while the rewrap runs (a replica
// whose view predates the rotation) is moved too, and counted: progress
// never says more were done than there were (issue 28 saw "161/160
// done").
func TestRewrapProgressCountsRecordsMadeDuringTheRun(t *testing.T) {
	ctx := context.Background()
	m, store, _ := newKeyedStore(t, make([]byte, 32))
	svc, err := vault.NewService(m, store, vault.Config{BIN: "400000", ExpiryYears: 3})
	if err != nil {
		t.Fatal(err)
	}
	caller := vault.Caller{Name: "t", RequestID: "r"}
	var first *vault.Card
	for i := range 3 {
		pan := []byte(fmt.Sprintf("400000%09d", i))
		pan = append(pan, luhnDigit(pan))
		c, err := svc.Import(ctx, caller, vault.ImportRequest{OwnerID: "acct-1", PAN: pan, CVV: []byte("123"), ExpiryMonth: 12, ExpiryYear: 2035}, nil)
		if err != nil {
			t.Fatal(err)
		}
		if first == nil {
			first = c
		}
	}
	if err := m.Generate(ctx, hsm.CardKEK, 2); err != nil {
		t.Fatal(err)
	}
	// The late record: the first card's record, sealed under version 1
	// for a new id, as a stale replica would have sealed a new card.
	late := func() {
		stored, err := store.CardByID(ctx, first.ID)
		if err != nil {
			t.Fatal(err)
		}
		plain, err := m.Open(ctx, []byte(stored.ID), stored.Sealed)
		if err != nil {
			t.Fatal(err)
		}
		c := *stored
		c.ID = uuid.Must(uuid.NewV7()).String()
		c.Fingerprint = make([]byte, 32)
		rand.Read(c.Fingerprint)
		c.CreatedAt, c.UpdatedAt = time.Now().UTC(), time.Now().UTC()
		if c.Sealed, err = m.SealWithVersion(ctx, 1, []byte(c.ID), plain); err != nil {
			t.Fatal(err)
		}
		c.KeyVersion = 1
		clear(plain)
		if err := store.CreateCard(ctx, &c, vault.Write{Audit: vault.AuditEntry{At: time.Now(), Actor: "replica", Action: "card.import", CardID: c.ID, Outcome: "ok"}}); err != nil {
			t.Fatal(err)
		}
	}
	var reports []vault.RewrapProgress
	p, err := vault.NewRewrapper(m, store).Run(ctx, vault.RewrapOptions{Batch: 1, Operator: "t", Progress: func(p vault.RewrapProgress) {
		if len(reports) == 0 {
			late()
		}
		reports = append(reports, p)
	}})
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range reports {
		if r.Done+r.Failed > r.Total {
			t.Errorf("progress %d/%d done", r.Done, r.Total)
		}
	}
	if p.Done != 4 || p.Total != 4 || p.Remaining != 0 {
		t.Fatalf("final progress %+v, want 4 of 4 moved", p)
	}
}
