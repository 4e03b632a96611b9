// Package storetest is the conformance suite every vault.Store runs
// unchanged: SQLite here, PostgreSQL in its own test.
package storetest

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cardvault/cardvault/vault"
	"github.com/google/uuid"
)

// Opener returns n handles on one fresh, empty database, each with its own
// connections, as n replicas of the service would have.
type Opener func(t *testing.T, n int) []vault.Store

// Run runs the suite. The race tests spread their racers over two
// handles, so a rule held only in one process's memory would fail them.
func Run(t *testing.T, open Opener) {
	tests := map[string]func(*testing.T, vault.Store){
		"CreateAndRead":              testCreateAndRead,
		"OwnerIsolation":             testOwnerIsolation,
		"DuplicatePANWritesNothing":  testDuplicatePAN,
		"ImportBudgetBeforePAN":      testImportBudgetBeforePAN,
		"UsedKeyIsBurnt":             testUsedKey,
		"UsedKeyAbortsCreate":        testUsedKeyAbortsCreate,
		"ConcurrentWritesFailAlone":  testConcurrentWritesFailAlone,
		"Idempotency":                testIdempotency,
		"ListPagesAndFilters":        testList,
		"StatusTransitions":          testStatus,
		"RevealRecheckedAtCommit":    testRevealRecheck,
		"CloseShredsRecord":          testClose,
		"DeviceLifecycle":            testDeviceLifecycle,
		"DeviceLimitPerPerson":       testDeviceLimit,
		"ChallengeOnceWithinTTL":     testChallenge,
		"RevealBudgetWindow":         testRevealBudget,
		"CallerBudget":               testCallerBudget,
		"PendingDevicesExpire":       testPendingDevicesExpire,
		"OrderMovesOnce":             testOrderMoves,
		"RewrapLosesToServiceWrites": testRewrap,
		"Ping":                       func(t *testing.T, s vault.Store) { must(t, s.Ping(context.Background())) },
	}
	for name, fn := range tests {
		t.Run(name, func(t *testing.T) {
			fn(t, open(t, 1)[0])
		})
	}
	races := map[string]func(*testing.T, replicas){
		"RaceOnUsedKey":        testRaceUsedKey,
		"RaceOnIdempotencyKey": testRaceIdempotency,
		"RaceOnRevealBudget":   testRaceRevealBudget,
		"RaceOnCallerBudget":   testRaceCallerBudget,
		"RaceOnOrderMove":      testRaceOrderMove,
		"RaceOnDeviceLimit":    testRaceDeviceLimit,
		"RaceOnPINTries":       testRacePINTries,
	}
	for name, fn := range races {
		t.Run(name, func(t *testing.T) {
			fn(t, open(t, 2))
		})
	}
}

// replicas are handles on one database; racer i uses handle i mod n.
type replicas []vault.Store

func (r replicas) pick(i int) vault.Store { return r[i%len(r)] }

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

var now = time.Date(2026, 11, 22, 10, 0, 0, 0, time.UTC)

// newCard makes a card with a unique fingerprint and a fake sealed record.
func newCard(owner string) *vault.Card {
	id := uuid.Must(uuid.NewV7()).String()
	fp := sha256.Sum256([]byte(id))
	return &vault.Card{
		ID: id, OwnerID: owner, Type: vault.TypeVirtual, Status: vault.StatusOpen,
		Last4: "1234", ExpiryMonth: 11, ExpiryYear: 2029, Name: "A CARDHOLDER",
		Fingerprint: fp[:], FPVersion: 1, Sealed: []byte("sealed:" + id), KeyVersion: 1,
		CreatedAt: now, UpdatedAt: now,
	}
}

func audit(action, cardID string) vault.AuditEntry {
	return vault.AuditEntry{At: now, Actor: "test", Action: action, CardID: cardID, OwnerID: "acct-1", Outcome: "ok", RequestID: "req", Detail: map[string]string{"k": "v"}}
}

func key(s string) []byte { h := sha256.Sum256([]byte(s)); return h[:] }

func isConflict(err error, field string) bool {
	var e *vault.Error
	return errors.As(err, &e) && e.Kind == vault.KindConflict && e.Field == field
}

func testCreateAndRead(t *testing.T, s vault.Store) {
	ctx := context.Background()
	c := newCard("acct-1")
	must(t, s.CreateCard(ctx, c, vault.Write{Audit: audit("card.issue", c.ID), UsedKey: key("k1")}))
	got, err := s.Card(ctx, "acct-1", c.ID)
	must(t, err)
	if got.ID != c.ID || got.Last4 != "1234" || got.ExpiryYear != 2029 || got.Status != vault.StatusOpen ||
		!bytes.Equal(got.Sealed, c.Sealed) || !bytes.Equal(got.Fingerprint, c.Fingerprint) || !got.CreatedAt.Equal(now) || got.KeyVersion != 1 {
		t.Fatalf("read back %+v, wrote %+v", got, c)
	}
	byFP, err := s.CardByFingerprint(ctx, c.Fingerprint)
	must(t, err)
	if byFP.ID != c.ID {
		t.Fatalf("by fingerprint got %s", byFP.ID)
	}
	trail, err := s.AuditTrail(ctx, c.ID)
	must(t, err)
	if len(trail) != 1 || trail[0].Action != "card.issue" || trail[0].Detail["k"] != "v" || !trail[0].At.Equal(now) {
		t.Fatalf("audit trail %+v", trail)
	}
}

func testOwnerIsolation(t *testing.T, s vault.Store) {
	ctx := context.Background()
	c := newCard("acct-1")
	must(t, s.CreateCard(ctx, c, vault.Write{Audit: audit("card.issue", c.ID)}))
	for _, tc := range []struct{ owner, id string }{{"acct-2", c.ID}, {"acct-1", "no-such-card"}} {
		if _, err := s.Card(ctx, tc.owner, tc.id); err != vault.ErrNotFound {
			t.Fatalf("Card(%s, %s) = %v, want ErrNotFound", tc.owner, tc.id, err)
		}
	}
	if err := s.CloseCard(ctx, "acct-2", c.ID, "LOST", now, vault.Write{Audit: audit("card.close", c.ID)}); err != vault.ErrNotFound {
		t.Fatalf("closing another owner's card = %v", err)
	}
	if _, err := s.SetStatus(ctx, "acct-2", c.ID, []vault.Status{vault.StatusOpen}, vault.StatusLocked, now, vault.Write{Audit: audit("card.status", c.ID)}); err != vault.ErrNotFound {
		t.Fatalf("locking another owner's card = %v", err)
	}
}

func testDuplicatePAN(t *testing.T, s vault.Store) {
	ctx := context.Background()
	a := newCard("acct-1")
	must(t, s.CreateCard(ctx, a, vault.Write{Audit: audit("card.issue", a.ID)}))
	b := newCard("acct-1")
	b.Fingerprint = a.Fingerprint
	err := s.CreateCard(ctx, b, vault.Write{Audit: audit("card.issue", b.ID), UsedKey: key("kb")})
	if !isConflict(err, "pan") {
		t.Fatalf("duplicate PAN = %v, want conflict on pan", err)
	}
	if _, err := s.CardByID(ctx, b.ID); err != vault.ErrNotFound {
		t.Fatalf("refused card was written: %v", err)
	}
	if trail, _ := s.AuditTrail(ctx, b.ID); len(trail) != 0 {
		t.Fatalf("refused card left %d audit entries in its transaction", len(trail))
	}
	// The key of the refused create was not burnt.
	c := newCard("acct-1")
	must(t, s.CreateCard(ctx, c, vault.Write{Audit: audit("card.issue", c.ID), UsedKey: key("kb")}))
}

// testImportBudgetBeforePAN: a create's slot is counted before its PAN is
// checked, so past the budget a taken PAN and a new one get the same
// refusal (issue 27, finding 1).
func testImportBudgetBeforePAN(t *testing.T, s vault.Store) {
	ctx := context.Background()
	budget := vault.Budget{Window: time.Hour, PerCaller: 1}
	slot := func(caller string, c *vault.Card) *vault.Slot {
		return &vault.Slot{Kind: vault.BudgetImport, CardID: fmt.Sprintf("%x", c.Fingerprint), Caller: caller, At: now, Budget: budget}
	}
	a := newCard("acct-1")
	must(t, s.CreateCard(ctx, a, vault.Write{Audit: audit("card.import", a.ID), Slot: slot("owner", a)}))
	first := newCard("acct-2")
	must(t, s.CreateCard(ctx, first, vault.Write{Audit: audit("card.import", first.ID), Slot: slot("importer", first)}))
	taken := newCard("acct-2")
	taken.Fingerprint = a.Fingerprint
	fresh := newCard("acct-2")
	errTaken := s.CreateCard(ctx, taken, vault.Write{Audit: audit("card.import", taken.ID), Slot: slot("importer", taken)})
	errFresh := s.CreateCard(ctx, fresh, vault.Write{Audit: audit("card.import", fresh.ID), Slot: slot("importer", fresh)})
	if vault.KindOf(errTaken) != vault.KindRateLimited || vault.KindOf(errFresh) != vault.KindRateLimited {
		t.Fatalf("past the budget a taken PAN = %v and a new one = %v, want both rate limited", errTaken, errFresh)
	}
	if _, err := s.CardByID(ctx, fresh.ID); err != vault.ErrNotFound {
		t.Fatalf("a refused import was written: %v", err)
	}
}

func testUsedKey(t *testing.T, s vault.Store) {
	ctx := context.Background()
	c := newCard("acct-1")
	must(t, s.CreateCard(ctx, c, vault.Write{Audit: audit("card.issue", c.ID), UsedKey: key("k1")}))
	must(t, s.Commit(ctx, vault.Write{Audit: audit("card.reveal", c.ID), UsedKey: key("k2")}))
	for _, k := range []string{"k1", "k2"} {
		err := s.Commit(ctx, vault.Write{Audit: audit("card.reveal", c.ID), UsedKey: key(k)})
		if !isConflict(err, "public_key") {
			t.Fatalf("reused %s = %v, want conflict on public_key", k, err)
		}
	}
	trail, _ := s.AuditTrail(ctx, c.ID)
	if len(trail) != 2 {
		t.Fatalf("refused reveals committed audit entries: %d entries", len(trail))
	}
}

func testUsedKeyAbortsCreate(t *testing.T, s vault.Store) {
	ctx := context.Background()
	a := newCard("acct-1")
	must(t, s.CreateCard(ctx, a, vault.Write{Audit: audit("card.issue", a.ID), UsedKey: key("k")}))
	b := newCard("acct-1")
	if err := s.CreateCard(ctx, b, vault.Write{Audit: audit("card.issue", b.ID), UsedKey: key("k")}); !isConflict(err, "public_key") {
		t.Fatalf("create with a used key = %v", err)
	}
	if _, err := s.CardByID(ctx, b.ID); err != vault.ErrNotFound {
		t.Fatal("card written although its key was refused")
	}
}

// testConcurrentWritesFailAlone issues many creates at once, every other
// one with a key that is already burnt. Where a store commits concurrent
// writes together (SQLite's group commit), a refused one must undo only
// itself: every accepted card is there with its audit entry, and no
// refused card or entry is.
func testConcurrentWritesFailAlone(t *testing.T, s vault.Store) {
	ctx := context.Background()
	burnt := newCard("acct-g")
	must(t, s.CreateCard(ctx, burnt, vault.Write{Audit: audit("card.issue", burnt.ID), UsedKey: key("burnt")}))
	const n = 48
	cards := make([]*vault.Card, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		cards[i] = newCard("acct-g")
		k := key(fmt.Sprint("fresh-", i))
		if i%2 == 1 {
			k = key("burnt")
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = s.CreateCard(ctx, cards[i], vault.Write{Audit: audit("card.issue", cards[i].ID), UsedKey: k})
		}()
	}
	wg.Wait()
	for i, c := range cards {
		_, err := s.CardByID(ctx, c.ID)
		trail, terr := s.AuditTrail(ctx, c.ID)
		must(t, terr)
		switch {
		case i%2 == 0 && (errs[i] != nil || err != nil || len(trail) != 1):
			t.Errorf("accepted create %d: create %v, read %v, %d audit entries", i, errs[i], err, len(trail))
		case i%2 == 1 && (!isConflict(errs[i], "public_key") || err != vault.ErrNotFound || len(trail) != 0):
			t.Errorf("refused create %d: create %v, read %v, %d audit entries", i, errs[i], err, len(trail))
		}
	}
}

func testIdempotency(t *testing.T, s vault.Store) {
	ctx := context.Background()
	a := newCard("acct-1")
	res := &vault.IdempotentResult{Scope: "tok:create", Key: "idem-1", RequestHash: key("req"), Result: []byte(`{"card_id":"x"}`),
		CardID: a.ID, CreatedAt: now, PruneBefore: now.Add(-time.Hour)}
	must(t, s.CreateCard(ctx, a, vault.Write{Audit: audit("card.issue", a.ID), Idempotent: res}))
	got, err := s.Idempotent(ctx, "tok:create", "idem-1", now.Add(-time.Hour))
	must(t, err)
	if !bytes.Equal(got.Result, res.Result) || !bytes.Equal(got.RequestHash, res.RequestHash) || got.CardID != a.ID {
		t.Fatalf("stored result %+v", got)
	}
	if _, err := s.Idempotent(ctx, "other-scope", "idem-1", now.Add(-time.Hour)); err != vault.ErrNotFound {
		t.Fatalf("key leaked across scopes: %v", err)
	}
	if _, err := s.Idempotent(ctx, "tok:create", "idem-1", now.Add(time.Second)); err != vault.ErrNotFound {
		t.Fatalf("a result from before the window was replayed: %v", err)
	}
	b := newCard("acct-1")
	if err := s.CreateCard(ctx, b, vault.Write{Audit: audit("card.issue", b.ID), Idempotent: res}); !errors.Is(err, vault.ErrDuplicateRequest) {
		t.Fatalf("second create with the key = %v, want ErrDuplicateRequest", err)
	}
	if _, err := s.CardByID(ctx, b.ID); err != vault.ErrNotFound {
		t.Fatal("a second card was created under one idempotency key")
	}
	// After the window the key is free again: the old answer is pruned.
	later := *res
	later.CardID, later.CreatedAt, later.PruneBefore = b.ID, now.Add(2*time.Hour), now.Add(time.Hour)
	must(t, s.CreateCard(ctx, b, vault.Write{Audit: audit("card.issue", b.ID), Idempotent: &later}))
	got, err = s.Idempotent(ctx, "tok:create", "idem-1", now)
	must(t, err)
	if got.CardID != b.ID {
		t.Fatalf("after the window the key still answers for card %s", got.CardID)
	}
	// Closing the card deletes the answers about it, which hold its data
	// encrypted to a client key.
	must(t, s.CloseCard(ctx, "acct-1", b.ID, vault.ClosureReason("CANCELED"), now.Add(3*time.Hour), vault.Write{Audit: audit("card.close", b.ID)}))
	if _, err := s.Idempotent(ctx, "tok:create", "idem-1", now); err != vault.ErrNotFound {
		t.Fatalf("a closed card's stored answer survived: %v", err)
	}
}

func testList(t *testing.T, s vault.Store) {
	ctx := context.Background()
	var ids []string
	for i := range 5 {
		c := newCard("acct-1")
		if i%2 == 1 {
			c.Status = vault.StatusLocked
		}
		must(t, s.CreateCard(ctx, c, vault.Write{Audit: audit("card.issue", c.ID)}))
		ids = append(ids, c.ID)
	}
	other := newCard("acct-2")
	must(t, s.CreateCard(ctx, other, vault.Write{Audit: audit("card.issue", other.ID)}))
	page, err := s.ListCards(ctx, vault.CardFilter{OwnerID: "acct-1", Limit: 2})
	must(t, err)
	if len(page) != 2 || page[0].ID != ids[0] || page[1].ID != ids[1] {
		t.Fatalf("first page %v", cardIDs(page))
	}
	page, err = s.ListCards(ctx, vault.CardFilter{OwnerID: "acct-1", After: ids[1], Limit: 10})
	must(t, err)
	if fmt.Sprint(cardIDs(page)) != fmt.Sprint(ids[2:]) {
		t.Fatalf("after cursor got %v, want %v", cardIDs(page), ids[2:])
	}
	locked, err := s.ListCards(ctx, vault.CardFilter{OwnerID: "acct-1", Status: vault.StatusLocked, Limit: 10})
	must(t, err)
	if fmt.Sprint(cardIDs(locked)) != fmt.Sprint([]string{ids[1], ids[3]}) {
		t.Fatalf("locked filter got %v", cardIDs(locked))
	}
}

func cardIDs(cs []*vault.Card) []string {
	var out []string
	for _, c := range cs {
		out = append(out, c.ID)
	}
	return out
}

// testRevealRecheck: a reveal's Write re-reads its card, so a lock or a
// close that landed after the reveal's first checks refuses it, and
// writes nothing (issue 27, finding 6).
func testRevealRecheck(t *testing.T, s vault.Store) {
	ctx := context.Background()
	c := newCard("acct-1")
	must(t, s.CreateCard(ctx, c, vault.Write{Audit: audit("card.issue", c.ID)}))
	reveal := vault.Write{Audit: audit("card.reveal", c.ID), UsedKey: key("reveal-" + c.ID), Reveal: &vault.RevealCheck{CardID: c.ID, Field: "id"}}
	must(t, s.Commit(ctx, reveal))
	_, err := s.SetStatus(ctx, "acct-1", c.ID, []vault.Status{vault.StatusOpen}, vault.StatusLocked, now, vault.Write{Audit: audit("card.status", c.ID)})
	must(t, err)
	reveal.UsedKey = key("again-" + c.ID)
	if err := s.Commit(ctx, reveal); !isConflict(err, "id") {
		t.Fatalf("a reveal of a locked card committed: %v", err)
	}
	trail, _ := s.AuditTrail(ctx, c.ID)
	if len(trail) != 3 {
		t.Fatalf("%d audit entries, want 3 (issue, reveal, lock)", len(trail))
	}
}

func testStatus(t *testing.T, s vault.Store) {
	ctx := context.Background()
	c := newCard("acct-1")
	must(t, s.CreateCard(ctx, c, vault.Write{Audit: audit("card.issue", c.ID)}))
	openLocked := []vault.Status{vault.StatusOpen, vault.StatusLocked}
	later := now.Add(time.Minute)
	got, err := s.SetStatus(ctx, "acct-1", c.ID, openLocked, vault.StatusLocked, later, vault.Write{Audit: audit("card.status", c.ID)})
	must(t, err)
	if got.Status != vault.StatusLocked {
		t.Fatalf("status %s", got.Status)
	}
	must(t, s.CloseCard(ctx, "acct-1", c.ID, "LOST", later, vault.Write{Audit: audit("card.close", c.ID)}))
	if _, err := s.SetStatus(ctx, "acct-1", c.ID, openLocked, vault.StatusOpen, later, vault.Write{Audit: audit("card.status", c.ID)}); !isConflict(err, "status") {
		t.Fatalf("reopening a closed card = %v", err)
	}
	trail, _ := s.AuditTrail(ctx, c.ID)
	if len(trail) != 3 {
		t.Fatalf("%d audit entries, want 3 (issue, status, close)", len(trail))
	}
}

func testClose(t *testing.T, s vault.Store) {
	ctx := context.Background()
	c := newCard("acct-1")
	must(t, s.CreateCard(ctx, c, vault.Write{Audit: audit("card.issue", c.ID)}))
	must(t, s.CloseCard(ctx, "acct-1", c.ID, "STOLEN", now, vault.Write{Audit: audit("card.close", c.ID)}))
	got, err := s.Card(ctx, "acct-1", c.ID)
	must(t, err)
	if got.Sealed != nil || got.Status != vault.StatusClosed || got.Closure != "STOLEN" || got.ClosedAt == nil || got.Last4 != "1234" {
		t.Fatalf("closed card %+v", got)
	}
	if err := s.CloseCard(ctx, "acct-1", c.ID, "LOST", now, vault.Write{Audit: audit("card.close", c.ID)}); !isConflict(err, "status") {
		t.Fatalf("closing twice = %v", err)
	}
}

func testRaceUsedKey(t *testing.T, r replicas) {
	ctx := context.Background()
	c := newCard("acct-1")
	must(t, r[0].CreateCard(ctx, c, vault.Write{Audit: audit("card.issue", c.ID)}))
	wins, conflicts := race(t, 16, func(i int) error {
		return r.pick(i).Commit(ctx, vault.Write{Audit: audit("card.reveal", c.ID), UsedKey: key("raced")})
	}, func(err error) bool { return isConflict(err, "public_key") })
	if wins != 1 || conflicts != 15 {
		t.Fatalf("%d winners and %d conflicts, want 1 and 15", wins, conflicts)
	}
}

// testRacePINTries verifies 16 wrong PINs at once on one card across the
// replicas: exactly the limit of them count, the rest find the card
// blocked and write nothing (without a deadlock between the card row's
// locks on PostgreSQL); a new PIN clears the count, and a try
// compared with a PIN block that changed since is refused.
func testRacePINTries(t *testing.T, r replicas) {
	ctx := context.Background()
	c := newCard("acct-1")
	block := []byte("0123456789abcdef")
	must(t, r[0].CreateCard(ctx, c, vault.Write{Audit: audit("card.issue", c.ID)}))
	must(t, r[0].SetPIN(ctx, c.ID, block, 1, now, vault.Write{Audit: audit("card.pin", c.ID)}))
	wins, blocked := race(t, 16, func(i int) error {
		// As the service writes it: the card rechecked, a verification
		// slot counted, the try counted.
		return r.pick(i).Commit(ctx, vault.Write{Audit: audit("card.verify_pin", c.ID), Reveal: &vault.RevealCheck{CardID: c.ID, Field: "card_id"},
			Slot:   &vault.Slot{Kind: vault.BudgetVerify, CardID: c.ID, Caller: "auth-host", At: now, Budget: vault.Budget{Window: time.Hour, PerCard: 100, PerCaller: 100}},
			PINTry: &vault.PINTry{CardID: c.ID, PINBlock: block, Limit: 3}})
	}, func(err error) bool { return errors.Is(err, vault.ErrPINBlocked) })
	if wins != 3 || blocked != 13 {
		t.Fatalf("%d tries counted and %d blocked, want 3 and 13", wins, blocked)
	}
	card, err := r[0].CardByID(ctx, c.ID)
	must(t, err)
	if trail, _ := r[0].AuditTrail(ctx, c.ID); card.PINTries != 3 || len(trail) != 5 {
		t.Fatalf("%d tries and %d audit entries, want 3 and 5 (issue, PIN, three tries)", card.PINTries, len(trail))
	}
	newBlock := []byte("fedcba9876543210")
	must(t, r[1].SetPIN(ctx, c.ID, newBlock, 1, now, vault.Write{Audit: audit("card.pin", c.ID)}))
	err = r[0].Commit(ctx, vault.Write{Audit: audit("card.verify_pin", c.ID), PINTry: &vault.PINTry{CardID: c.ID, PINBlock: block, Limit: 3}})
	if !isConflict(err, "card_id") || errors.Is(err, vault.ErrPINBlocked) {
		t.Fatalf("a try compared with the old PIN block: %v", err)
	}
	must(t, r[0].Commit(ctx, vault.Write{Audit: audit("card.verify_pin", c.ID), PINTry: &vault.PINTry{CardID: c.ID, PINBlock: newBlock, Limit: 3}}))
	card, err = r[0].CardByID(ctx, c.ID)
	must(t, err)
	if card.PINTries != 1 {
		t.Fatalf("after a new PIN and one wrong try: %d tries, want 1", card.PINTries)
	}
	must(t, r[1].Commit(ctx, vault.Write{Audit: audit("card.verify_pin", c.ID), PINTry: &vault.PINTry{CardID: c.ID, PINBlock: newBlock, Matched: true, Limit: 3}}))
	if card, _ = r[0].CardByID(ctx, c.ID); card.PINTries != 0 {
		t.Fatalf("a right PIN leaves %d tries, want 0", card.PINTries)
	}
}

// race runs try in n goroutines at once and counts the successes and the
// expected refusals; any other error fails the test.
func race(t *testing.T, n int, try func(i int) error, refused func(error) bool) (wins, refusals int32) {
	var w, r atomic.Int32
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			switch err := try(i); {
			case err == nil:
				w.Add(1)
			case refused(err):
				r.Add(1)
			default:
				t.Errorf("racer: %v", err)
			}
		}()
	}
	wg.Wait()
	return w.Load(), r.Load()
}

func testRaceIdempotency(t *testing.T, r replicas) {
	ctx := context.Background()
	s := r[0]
	var wins atomic.Int32
	var wg sync.WaitGroup
	var created sync.Map
	for i := range 16 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c := newCard("acct-1")
			res := &vault.IdempotentResult{Scope: "s", Key: "same", RequestHash: key("r"), Result: []byte(c.ID), CreatedAt: now, PruneBefore: now.Add(-time.Hour)}
			err := r.pick(i).CreateCard(ctx, c, vault.Write{Audit: audit("card.issue", c.ID), Idempotent: res})
			switch {
			case err == nil:
				wins.Add(1)
				created.Store(c.ID, true)
			case errors.Is(err, vault.ErrDuplicateRequest):
			default:
				t.Errorf("racer: %v", err)
			}
		}()
	}
	wg.Wait()
	cards, err := s.ListCards(ctx, vault.CardFilter{OwnerID: "acct-1", Limit: 100})
	must(t, err)
	if wins.Load() != 1 || len(cards) != 1 {
		t.Fatalf("%d winners, %d cards, want 1 and 1", wins.Load(), len(cards))
	}
	stored, err := s.Idempotent(ctx, "s", "same", now.Add(-time.Hour))
	must(t, err)
	if _, ok := created.Load(string(stored.Result)); !ok || string(stored.Result) != cards[0].ID {
		t.Fatal("stored result is not the winner's")
	}
}

// testOrderMoves walks an order through its life; a move from a status the
// order has left is refused and writes nothing.
func testOrderMoves(t *testing.T, s vault.Store) {
	ctx := context.Background()
	o := newOrder()
	must(t, s.CreateOrder(ctx, o, vault.Write{Audit: audit("order.create", "")}))
	c := newCard("acct-1")
	c.Type, c.Status = vault.TypePhysical, vault.StatusNotActivated
	must(t, s.CreateCard(ctx, c, vault.Write{Audit: audit("card.issue", c.ID),
		Order: &vault.OrderMove{OrderID: o.ID, From: vault.OrderInitial, To: vault.OrderCardCreated, CardID: c.ID, At: now}}))
	got, err := s.OrderByCard(ctx, c.ID)
	must(t, err)
	if got.ID != o.ID || got.Status != vault.OrderCardCreated {
		t.Fatalf("order after the card: %+v", got)
	}
	err = s.Commit(ctx, vault.Write{Audit: audit("order.created", c.ID),
		Order: &vault.OrderMove{OrderID: o.ID, From: vault.OrderInitial, To: vault.OrderCardCreated, At: now}})
	if !isConflict(err, "status") {
		t.Fatalf("a move from a left status: %v", err)
	}
	if trail, _ := s.AuditTrail(ctx, c.ID); len(trail) != 1 {
		t.Fatalf("the refused move wrote its audit entry: %d entries", len(trail))
	}
	must(t, s.SetPIN(ctx, c.ID, []byte("0123456789abcdef"), 1, now, vault.Write{Audit: audit("card.pin", c.ID),
		Order: &vault.OrderMove{OrderID: o.ID, From: vault.OrderCardCreated, To: vault.OrderOrdered, At: now}}))
	card, err := s.CardByID(ctx, c.ID)
	must(t, err)
	if card.Status != vault.StatusOpen {
		t.Fatalf("card after its PIN: %s", card.Status)
	}
}

func newOrder() *vault.Order {
	return &vault.Order{ID: uuid.Must(uuid.NewV7()).String(), OwnerID: "acct-1", Status: vault.OrderInitial, NameOnCard: "A CARDHOLDER",
		Shipping:  vault.ShippingAddress{StreetAddress: "1 Main St", City: "Springfield", PostalCode: "62701", State: "IL", Country: "US"},
		CreatedAt: now, UpdatedAt: now}
}

// testRaceOrderMove has many writers, on two replicas, try the same move:
// exactly one wins and the order moves once.
func testRaceOrderMove(t *testing.T, r replicas) {
	ctx := context.Background()
	o := newOrder()
	must(t, r[0].CreateOrder(ctx, o, vault.Write{Audit: audit("order.create", "")}))
	wins, conflicts := race(t, 16, func(i int) error {
		return r.pick(i).Commit(ctx, vault.Write{Audit: audit("order.move", "raced-order"),
			Order: &vault.OrderMove{OrderID: o.ID, From: vault.OrderInitial, To: vault.OrderCardCreated, At: now}})
	}, func(err error) bool { return isConflict(err, "status") })
	if wins != 1 || conflicts != 15 {
		t.Fatalf("%d moves and %d conflicts, want 1 and 15", wins, conflicts)
	}
	if trail, _ := r[1].AuditTrail(ctx, "raced-order"); len(trail) != 1 {
		t.Fatalf("%d audit entries for one move", len(trail))
	}
}
