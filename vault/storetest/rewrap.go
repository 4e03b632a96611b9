package storetest

import (
	"bytes"
	"context"
	"testing"

	"github.com/cardvault/cardvault/vault"
)

// moved is a move of c to card KEK v2, pan-hmac v2 and PEK v2.
func moved(c *vault.Card) vault.Rewrapped {
	m := vault.Rewrapped{Old: c, Sealed: append([]byte("v2:"), c.Sealed...), KeyVersion: 2,
		Fingerprint: key("v2:" + c.ID), FPVersion: 2}
	if c.PINBlock != nil {
		m.PINBlock, m.PINKeyVersion = append([]byte("v2:"), c.PINBlock...), 2
	}
	return m
}

// testRewrap checks what rewrap relies on: the counts per key version, the
// stale selection, and that a move lands only on a card still holding
// what the move read, so the service's concurrent writes win.
func testRewrap(t *testing.T, s vault.Store) {
	ctx := context.Background()
	rs, ok := s.(vault.RewrapStore)
	if !ok {
		t.Fatalf("%T does not implement vault.RewrapStore", s)
	}
	target := vault.KeyVersions{CardKEK: 2, PANHMAC: 2, PEK: 2}
	var cards []*vault.Card
	for i := range 5 {
		c := newCard("acct-1")
		must(t, s.CreateCard(ctx, c, vault.Write{Audit: audit("card.import", c.ID)}))
		if i < 3 {
			must(t, s.SetPIN(ctx, c.ID, []byte("pin-block:"+c.ID), 1, now, vault.Write{Audit: audit("card.pin", c.ID)}))
		}
		cards = append(cards, c)
	}
	use, err := rs.KeyUse(ctx)
	must(t, err)
	if use.CardKEK[1] != 5 || use.PANHMAC[1] != 5 || use.PEK[1] != 3 {
		t.Fatalf("key use %+v, want 5 records, 5 fingerprints, 3 PIN blocks under v1", use)
	}
	stale, err := rs.StaleCards(ctx, target, "", 10)
	must(t, err)
	if len(stale) != 5 || stale[0].PINBlock == nil && stale[1].PINBlock == nil && stale[2].PINBlock == nil {
		t.Fatalf("stale cards: %d, PIN blocks not read", len(stale))
	}

	// Under the run: card 0 gets a new PIN, card 1 is closed.
	must(t, s.SetPIN(ctx, cards[0].ID, []byte("newer-pin-block"), 1, now, vault.Write{Audit: audit("card.pin", cards[0].ID)}))
	must(t, s.CloseCard(ctx, "acct-1", cards[1].ID, "LOST", now, vault.Write{Audit: audit("card.close", cards[1].ID)}))
	var moves []vault.Rewrapped
	for _, c := range stale {
		moves = append(moves, moved(c))
	}
	n, err := rs.ApplyRewrap(ctx, moves, vault.Write{Audit: audit("key.rewrap", "")})
	must(t, err)
	if n != 3 {
		t.Fatalf("applied %d moves, want 3: the re-PINned and the closed card are left alone", n)
	}
	got, err := s.CardByID(ctx, cards[0].ID)
	must(t, err)
	if !bytes.Equal(got.PINBlock, []byte("newer-pin-block")) || got.KeyVersion != 1 {
		t.Fatalf("the rewrap overwrote a PIN set under it: %q v%d", got.PINBlock, got.KeyVersion)
	}
	got, err = s.CardByID(ctx, cards[1].ID)
	must(t, err)
	if got.Sealed != nil || got.PINBlock != nil {
		t.Fatal("the rewrap brought back a closed card's data, or closing left its PIN block")
	}
	got, err = s.CardByID(ctx, cards[2].ID)
	must(t, err)
	if got.KeyVersion != 2 || got.FPVersion != 2 || got.PINKeyVersion != 2 || !bytes.HasPrefix(got.Sealed, []byte("v2:")) || !bytes.HasPrefix(got.PINBlock, []byte("v2:")) {
		t.Fatalf("moved card: %+v", got)
	}
	count, err := rs.CountStale(ctx, target)
	must(t, err)
	if count != 1 {
		t.Fatalf("%d stale after the run, want 1 (the re-PINned card)", count)
	}
	use, err = rs.KeyUse(ctx)
	must(t, err)
	if use.CardKEK[1] != 1 || use.CardKEK[2] != 3 || use.PEK[1] != 1 || use.PEK[2] != 1 {
		t.Fatalf("key use after the run: %+v", use)
	}
}
