package storetest

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/cardvault/cardvault/vault"
	"github.com/google/uuid"
)

// newDevice makes a pending device with a fake key, and its challenge.
func newDevice(person string) (*vault.Device, *vault.Challenge) {
	id := uuid.Must(uuid.NewV7()).String()
	d := &vault.Device{ID: id, PersonID: person, Name: "phone", Status: vault.DevicePending, UnrestrictedKey: key("device:" + id), CreatedAt: now}
	ch := &vault.Challenge{ID: uuid.Must(uuid.NewV7()).String(), DeviceID: id, Purpose: vault.KeyUnrestricted,
		StringToSign: "sign me " + id, CreatedAt: now, ExpiresAt: now.Add(vault.ChallengeTTL)}
	return d, ch
}

func deviceAudit(action string) vault.Write {
	return vault.Write{Audit: vault.AuditEntry{At: now, Actor: "test", Action: action, OwnerID: "person-1", Outcome: "ok", Detail: map[string]string{}}}
}

func testDeviceLifecycle(t *testing.T, s vault.Store) {
	ctx := context.Background()
	d, ch := newDevice("person-1")
	must(t, s.CreateDevice(ctx, d, ch, 5, deviceAudit("device.register")))
	got, err := s.Device(ctx, d.ID)
	must(t, err)
	if got.Status != vault.DevicePending || string(got.UnrestrictedKey) != string(d.UnrestrictedKey) || got.RestrictedKey != nil || got.VerifiedAt != nil {
		t.Fatalf("stored device %+v", got)
	}
	if err := s.AddDeviceKey(ctx, d.ID, vault.KeyRestricted, key("r"), deviceAudit("device.add_key")); !isConflict(err, "key_purpose") {
		t.Fatalf("key added to a pending device: %v", err)
	}
	must(t, s.AnswerChallenge(ctx, ch.ID, now.Add(time.Minute), deviceAudit("device.verify")))
	got, _ = s.Device(ctx, d.ID)
	if got.Status != vault.DeviceVerified || got.VerifiedAt == nil || !got.VerifiedAt.Equal(now.Add(time.Minute)) {
		t.Fatalf("verified device %+v", got)
	}
	must(t, s.AddDeviceKey(ctx, d.ID, vault.KeyRestricted, key("r"), deviceAudit("device.add_key")))
	if err := s.AddDeviceKey(ctx, d.ID, vault.KeyRestricted, key("r2"), deviceAudit("device.add_key")); !isConflict(err, "key_purpose") {
		t.Fatalf("restricted key replaced: %v", err)
	}
	got, _ = s.Device(ctx, d.ID)
	if string(got.RestrictedKey) != string(key("r")) {
		t.Fatal("restricted key not stored")
	}
	list, err := s.ListDevices(ctx, "person-1", now)
	must(t, err)
	if len(list) != 1 || list[0].ID != d.ID {
		t.Fatalf("list %v", list)
	}
	if other, _ := s.ListDevices(ctx, "person-2", now); len(other) != 0 {
		t.Fatal("another person lists the device")
	}
	must(t, s.DeleteDevice(ctx, d.ID, now, deviceAudit("device.delete")))
	if _, err := s.Device(ctx, d.ID); !errors.Is(err, vault.ErrNotFound) {
		t.Fatalf("deleted device read: %v", err)
	}
	if err := s.DeleteDevice(ctx, d.ID, now, deviceAudit("device.delete")); !errors.Is(err, vault.ErrNotFound) {
		t.Fatalf("deleted twice: %v", err)
	}
	if list, _ := s.ListDevices(ctx, "person-1", now); len(list) != 0 {
		t.Fatal("deleted device listed")
	}
}

func testDeviceLimit(t *testing.T, s vault.Store) {
	ctx := context.Background()
	var first *vault.Device
	for i := range 3 {
		d, ch := newDevice("person-1")
		must(t, s.CreateDevice(ctx, d, ch, 3, deviceAudit("device.register")))
		if i == 0 {
			first = d
		}
	}
	d, ch := newDevice("person-1")
	if err := s.CreateDevice(ctx, d, ch, 3, deviceAudit("device.register")); !isConflict(err, "person_id") {
		t.Fatalf("device over the limit: %v", err)
	}
	if _, err := s.Device(ctx, d.ID); !errors.Is(err, vault.ErrNotFound) {
		t.Fatal("refused device was written")
	}
	if _, err := s.Challenge(ctx, ch.ID); !errors.Is(err, vault.ErrNotFound) {
		t.Fatal("refused device's challenge was written")
	}
	other, och := newDevice("person-2")
	must(t, s.CreateDevice(ctx, other, och, 3, deviceAudit("device.register")))
	must(t, s.DeleteDevice(ctx, first.ID, now, deviceAudit("device.delete")))
	must(t, s.CreateDevice(ctx, d, ch, 3, deviceAudit("device.register")))
}

func testChallenge(t *testing.T, s vault.Store) {
	ctx := context.Background()
	d, ch := newDevice("person-1")
	must(t, s.CreateDevice(ctx, d, ch, 5, deviceAudit("device.register")))
	got, err := s.Challenge(ctx, ch.ID)
	must(t, err)
	if got.StringToSign != ch.StringToSign || got.DeviceID != d.ID || got.Purpose != vault.KeyUnrestricted || !got.ExpiresAt.Equal(ch.ExpiresAt) || got.UsedAt != nil {
		t.Fatalf("challenge %+v", got)
	}
	if err := s.AnswerChallenge(ctx, ch.ID, ch.ExpiresAt, deviceAudit("device.verify")); !isConflict(err, "id") {
		t.Fatalf("answered at expiry: %v", err)
	}
	wins, conflicts := race(t, 8, func(int) error {
		return s.AnswerChallenge(ctx, ch.ID, now.Add(time.Minute), deviceAudit("device.verify"))
	}, func(err error) bool { return isConflict(err, "id") })
	if wins != 1 || conflicts != 7 {
		t.Fatalf("challenge answered %d times (%d conflicts)", wins, conflicts)
	}
	got, _ = s.Challenge(ctx, ch.ID)
	if got.UsedAt == nil {
		t.Fatal("challenge not marked used")
	}
	d2, ch2 := newDevice("person-1")
	must(t, s.CreateDevice(ctx, d2, ch2, 5, deviceAudit("device.register")))
	must(t, s.DeleteDevice(ctx, d2.ID, now, deviceAudit("device.delete")))
	if err := s.AnswerChallenge(ctx, ch2.ID, now, deviceAudit("device.verify")); !errors.Is(err, vault.ErrNotFound) {
		t.Fatalf("challenge of a deleted device answered: %v", err)
	}
}

// testPendingDevicesExpire: a registration whose challenge expired
// unanswered no longer holds one of the person's places (finding 11: two
// junk registrations locked a person out of binding for good).
func testPendingDevicesExpire(t *testing.T, s vault.Store) {
	ctx := context.Background()
	for i := 0; i < 2; i++ {
		d, ch := newDevice("person-p")
		must(t, s.CreateDevice(ctx, d, ch, 2, deviceAudit("device.register")))
	}
	d, ch := newDevice("person-p")
	if err := s.CreateDevice(ctx, d, ch, 2, deviceAudit("device.register")); !isConflict(err, "person_id") {
		t.Fatalf("a third registration while two are pending: %v", err)
	}
	later := now.Add(vault.ChallengeTTL + time.Second)
	d, ch = newDevice("person-p")
	d.CreatedAt, ch.CreatedAt, ch.ExpiresAt = later, later, later.Add(vault.ChallengeTTL)
	must(t, s.CreateDevice(ctx, d, ch, 2, deviceAudit("device.register")))
	must(t, s.AnswerChallenge(ctx, ch.ID, later, deviceAudit("device.verify")))
	devices, err := s.ListDevices(ctx, "person-p", later)
	must(t, err)
	if len(devices) != 1 || devices[0].ID != d.ID {
		t.Fatalf("listed %d devices after two registrations expired, want the verified one", len(devices))
	}
}

func slot(card, device string, at time.Time) *vault.Slot {
	return &vault.Slot{Kind: vault.BudgetReveal, CardID: card, DeviceID: device, At: at, Budget: vault.Budget{Window: time.Hour, PerCard: 2, PerDevice: 3}}
}

func isRateLimited(err error, field string) bool {
	var e *vault.Error
	return errors.As(err, &e) && e.Kind == vault.KindRateLimited && e.Field == field && e.RetryAfter > 0
}

func testRevealBudget(t *testing.T, s vault.Store) {
	ctx := context.Background()
	reveal := func(card, device string, at time.Time) error {
		return s.Commit(ctx, vault.Write{Audit: audit("card.reveal", card), Slot: slot(card, device, at)})
	}
	must(t, reveal("c1", "", now))
	must(t, reveal("c1", "d1", now.Add(10*time.Minute)))
	err := reveal("c1", "d1", now.Add(20*time.Minute))
	if !isRateLimited(err, "card_id") {
		t.Fatalf("third reveal of a card: %v", err)
	}
	if e := new(vault.Error); errors.As(err, &e) && e.RetryAfter != 40*time.Minute {
		t.Fatalf("retry after %s, want 40m: the oldest reveal leaves the window then", e.RetryAfter)
	}
	u, err := s.BudgetUse(ctx, slot("c1", "d1", now.Add(20*time.Minute)))
	must(t, err)
	if u.Card != 2 || u.Device != 1 || !u.CardOldest.Equal(now) {
		t.Fatalf("use %+v", u)
	}
	// The refusal wrote nothing, not even its audit entry.
	trail, _ := s.AuditTrail(ctx, "c1")
	if len(trail) != 2 {
		t.Fatalf("%d audit entries after a refused reveal, want 2", len(trail))
	}
	// The device budget spans cards.
	must(t, reveal("c2", "d1", now.Add(30*time.Minute)))
	must(t, reveal("c3", "d1", now.Add(31*time.Minute)))
	if err := reveal("c4", "d1", now.Add(32*time.Minute)); !isRateLimited(err, "device_id") {
		t.Fatalf("fourth reveal by a device: %v", err)
	}
	// An hour later the first reveals have left the window.
	must(t, reveal("c1", "d1", now.Add(71*time.Minute)))
}

// testCallerBudget counts a caller's distinct cards: a card already in
// the window costs nothing more, a new one past the bound is refused, and
// another caller has a window of its own.
func testCallerBudget(t *testing.T, s vault.Store) {
	ctx := context.Background()
	reveal := func(caller, card string, at time.Time) error {
		sl := slot(card, "", at)
		sl.Caller, sl.Budget.PerCard, sl.Budget.PerCaller = caller, 100, 2
		return s.Commit(ctx, vault.Write{Audit: audit("card.reveal", card), Slot: sl})
	}
	must(t, reveal("api", "k1", now))
	must(t, reveal("api", "k2", now.Add(time.Minute)))
	must(t, reveal("api", "k1", now.Add(2*time.Minute)))
	err := reveal("api", "k3", now.Add(3*time.Minute))
	if !isRateLimited(err, "Authorization") {
		t.Fatalf("a caller's third distinct card: %v", err)
	}
	// A card counts until the bucket of its last event (a sixtieth of
	// the window, here a minute) leaves the window: k2's (1m, in the
	// bucket ending at 2m) goes first, at 62m, 59m from now. k1,
	// revealed again at 2m, moved to the bucket ending at 3m.
	if e := new(vault.Error); errors.As(err, &e) && e.RetryAfter != 59*time.Minute {
		t.Fatalf("retry after %s, want 59m", e.RetryAfter)
	}
	must(t, reveal("other", "k3", now.Add(4*time.Minute)))
	for _, at := range []time.Duration{60 * time.Minute, 61 * time.Minute} {
		if err := reveal("api", "k3", now.Add(at)); !isRateLimited(err, "Authorization") {
			t.Fatalf("a third distinct card at %s, while k2's bucket is in the window: %v", at, err)
		}
	}
	must(t, reveal("api", "k3", now.Add(62*time.Minute)))
	// k1's bucket ends at 3m: until 63m it still fills the second slot.
	if err := reveal("api", "k4", now.Add(62*time.Minute+30*time.Second)); !isRateLimited(err, "Authorization") {
		t.Fatalf("a new card while k1 and k3 count: %v", err)
	}
	must(t, reveal("api", "k4", now.Add(63*time.Minute)))
}

func testRaceRevealBudget(t *testing.T, r replicas) {
	ctx := context.Background()
	wins, limited := race(t, 12, func(i int) error {
		return r.pick(i).Commit(ctx, vault.Write{Audit: audit("card.reveal", "raced"), Slot: slot("raced", "", now)})
	}, func(err error) bool { return isRateLimited(err, "card_id") })
	if wins != 2 || limited != 10 {
		t.Fatalf("%d reveals and %d refusals under a budget of 2", wins, limited)
	}
}

// testRaceCallerBudget races one caller's reveals of twelve distinct
// cards across replicas: the caller's lock is taken last in the
// transaction (issue 29), and still no two take its last slot.
func testRaceCallerBudget(t *testing.T, r replicas) {
	ctx := context.Background()
	wins, limited := race(t, 12, func(i int) error {
		card := fmt.Sprintf("raced-%d", i)
		sl := slot(card, "", now)
		sl.Caller, sl.Budget.PerCard, sl.Budget.PerCaller = "api", 100, 3
		return r.pick(i).Commit(ctx, vault.Write{Audit: audit("card.reveal", card), Slot: sl})
	}, func(err error) bool { return isRateLimited(err, "Authorization") })
	if wins != 3 || limited != 9 {
		t.Fatalf("%d reveals and %d refusals under a caller budget of 3 distinct cards", wins, limited)
	}
}

// testRaceDeviceLimit registers many devices for one person at once, on
// two replicas: the limit holds.
func testRaceDeviceLimit(t *testing.T, r replicas) {
	ctx := context.Background()
	wins, refused := race(t, 12, func(i int) error {
		d, ch := newDevice("person-1")
		return r.pick(i).CreateDevice(ctx, d, ch, 3, deviceAudit("device.register"))
	}, func(err error) bool { return isConflict(err, "person_id") })
	if wins != 3 || refused != 9 {
		t.Fatalf("%d devices registered and %d refused under a limit of 3", wins, refused)
	}
}
