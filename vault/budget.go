package vault

import (
	"fmt"
	"maps"
	"slices"
	"time"
)

// Budget bounds how often something happens within a sliding window: per
// card, per device where a device asks, and per caller (API token) in
// distinct cards. A stolen API token or a compromised device then reveals
// a handful of cards, not the vault, and guesses few PINs. A zero bound is
// not counted.
type Budget struct {
	Window    time.Duration
	PerCard   int
	PerDevice int
	// PerCaller bounds the distinct cards (or, for look-ups, distinct
	// PANs) one caller touches in the window.
	PerCaller int
}

// Budget kinds, counted apart.
const (
	BudgetReveal     = "reveal"
	BudgetPINAttempt = "pin"
	// BudgetLookup counts a caller's look-ups by PAN.
	BudgetLookup = "lookup"
	// BudgetImport counts a caller's imports by PAN, whether the PAN was
	// taken (409) or not (201): both answers say whether a PAN is in the
	// vault, so the budget bounds the PANs a caller can test by importing.
	BudgetImport = "import"
	// BudgetVerify counts verifications: per card (every one, whatever its
	// answer, so that guessing a CVV costs a slot per guess) and per caller
	// in distinct cards.
	BudgetVerify = "verify"
)

// budgetKind is what one kind of budget counts: what a refusal calls one
// event, whether it is bounded per card and per device (only kinds with
// device-signed surfaces are), its defaults, and where Config keeps it.
type budgetKind struct {
	noun               string
	perCard, perDevice bool
	defaults           Budget
	in                 func(*Config) *Budget
}

var budgetKinds = map[string]budgetKind{
	BudgetReveal:     {"reveal", true, true, DefaultRevealBudget, func(c *Config) *Budget { return &c.Reveals }},
	BudgetPINAttempt: {"PIN attempt", true, true, DefaultPINBudget, func(c *Config) *Budget { return &c.PINAttempts }},
	BudgetLookup:     {"look-up", false, false, DefaultLookupBudget, func(c *Config) *Budget { return &c.Lookups }},
	BudgetImport:     {"import", false, false, DefaultImportBudget, func(c *Config) *Budget { return &c.Imports }},
	BudgetVerify:     {"verification", true, false, DefaultVerifyBudget, func(c *Config) *Budget { return &c.Verifications }},
}

// settleBudgets fills each of cfg's budgets from its defaults and checks
// it, in a fixed order so that the first bad one is the one named.
func settleBudgets(cfg *Config) error {
	for _, kind := range slices.Sorted(maps.Keys(budgetKinds)) {
		k := budgetKinds[kind]
		b := k.in(cfg)
		*b = b.withDefaults(k.defaults)
		if err := b.validate(kind); err != nil {
			return err
		}
	}
	return nil
}

// DefaultRevealBudget is generous for a person looking at their own cards
// and tight for anyone sweeping them. The per-caller bound is sized for a
// small platform; a larger one raises it to its traffic, and it still
// caps what a stolen token sweeps in an hour.
var DefaultRevealBudget = Budget{Window: time.Hour, PerCard: 10, PerDevice: 30, PerCaller: 1000}

// DefaultPINBudget allows a person a few tries a day at setting a PIN.
var DefaultPINBudget = Budget{Window: 24 * time.Hour, PerCard: 5, PerDevice: 10, PerCaller: 1000}

// DefaultLookupBudget bounds look-ups by PAN per caller: enough for an
// API tier resolving a processor's notifications, far too few to walk
// the 10^5 PANs a BIN and last four leave open.
var DefaultLookupBudget = Budget{Window: time.Hour, PerCaller: 100}

// DefaultImportBudget bounds the distinct PANs a caller imports: room for
// a processor's hourly batch on a small platform (a larger one raises
// it), and 1% of the 10^5 PANs a BIN and last four leave open.
var DefaultImportBudget = Budget{Window: time.Hour, PerCaller: 1000}

func (b Budget) validate(kind string) error {
	if b.Window < time.Second || b.Window > 7*24*time.Hour {
		return fmt.Errorf("vault: %s budget window %s must be 1s to 7 days", kind, b.Window)
	}
	k := budgetKinds[kind]
	if k.perCard && b.PerCard < 1 {
		return fmt.Errorf("vault: %s budget per card (%d) must be at least 1", kind, b.PerCard)
	}
	if k.perDevice && b.PerDevice < 1 {
		return fmt.Errorf("vault: %s budget per device (%d) must be at least 1", kind, b.PerDevice)
	}
	if b.PerCaller < 1 {
		return fmt.Errorf("vault: %s budget per caller (%d) must be at least 1", kind, b.PerCaller)
	}
	return nil
}

// withDefaults fills the bounds left at zero from d.
func (b Budget) withDefaults(d Budget) Budget {
	if b.Window == 0 {
		b.Window = d.Window
	}
	if b.PerCard == 0 {
		b.PerCard = d.PerCard
	}
	if b.PerDevice == 0 {
		b.PerDevice = d.PerDevice
	}
	if b.PerCaller == 0 {
		b.PerCaller = d.PerCaller
	}
	return b
}

// BudgetRules are the surfaces (audited actions) a budget refuses on, and
// the rules each has (the field a refusal names): the metrics start every
// pair's series at zero, so that the first refusal is an increase.
var BudgetRules = map[string][]string{
	"card.reveal":      {"card_id", "Authorization"},
	"card.secure_view": {"card_id", "device_id", "Authorization"},
	"card.pin":         {"card_id", "device_id", "Authorization"},
	"card.import":      {"Authorization"},
	"card.lookup":      {"Authorization"},
	"card.verify":      {"card_id", "Authorization"},
	"card.pin_view":    {"card_id", "device_id", "Authorization"},
	"card.verify_pin":  {"card_id", "Authorization"},
}

// Slot is one event to be counted against a budget. The store counts and
// inserts it in the transaction that records the event, so concurrent
// requests cannot overspend.
type Slot struct {
	Kind string
	// CardID is the card the event touches; for a look-up or an import,
	// the PAN's fingerprint in hex, so a caller's distinct PANs are
	// counted.
	CardID   string
	DeviceID string // empty on surfaces without devices
	Caller   string // the API token's name
	At       time.Time
	Budget   Budget
}

// Since is the start of the slot's window.
func (r *Slot) Since() time.Time { return r.At.Add(-r.Budget.Window) }

// BudgetUse is what the window already holds: how many events for the
// card and by the device, how many distinct cards the caller touched and
// whether this card is among them, and the oldest event of each, which
// leaves first.
type BudgetUse struct {
	Card, Device, Caller                   int
	CallerHasCard                          bool
	CardOldest, DeviceOldest, CallerOldest time.Time
}

// Check refuses the slot when a window is full, saying when it is not.
func (r *Slot) Check(u BudgetUse) error {
	what := budgetKinds[r.Kind].noun
	if r.Budget.PerCard > 0 && u.Card >= r.Budget.PerCard {
		return r.spent("card_id", "the card's "+what+" budget is spent", u.CardOldest)
	}
	if r.DeviceID != "" && r.Budget.PerDevice > 0 && u.Device >= r.Budget.PerDevice {
		return r.spent("device_id", "the device's "+what+" budget is spent", u.DeviceOldest)
	}
	if r.Caller != "" && r.Budget.PerCaller > 0 && !u.CallerHasCard && u.Caller >= r.Budget.PerCaller {
		return r.spent("Authorization", "the caller's "+what+" budget is spent", u.CallerOldest)
	}
	return nil
}

func (r *Slot) spent(field, msg string, oldest time.Time) error {
	wait := oldest.Add(r.Budget.Window).Sub(r.At)
	if wait < time.Second {
		wait = time.Second
	}
	return &Error{Kind: KindRateLimited, Field: field, Msg: msg, RetryAfter: wait}
}
