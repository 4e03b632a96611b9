package vault

import (
	"fmt"
	"time"
)

// Budget bounds how often something happens to a card within a sliding
// window: per card, and per device where a device asks. A stolen API token
// or a compromised device then reveals a handful of cards, not the vault,
// and guesses few PINs.
type Budget struct {
	Window    time.Duration
	PerCard   int
	PerDevice int
}

// Budget kinds, counted apart.
const (
	BudgetReveal     = "reveal"
	BudgetPINAttempt = "pin"
)

// DefaultRevealBudget is generous for a person looking at their own cards
// and tight for anyone sweeping them.
var DefaultRevealBudget = Budget{Window: time.Hour, PerCard: 10, PerDevice: 30}

// DefaultPINBudget allows a person a few tries a day at setting a PIN.
var DefaultPINBudget = Budget{Window: 24 * time.Hour, PerCard: 5, PerDevice: 10}

func (b Budget) validate(kind string) error {
	if b.Window < time.Second || b.Window > 7*24*time.Hour {
		return fmt.Errorf("vault: %s budget window %s must be 1s to 7 days", kind, b.Window)
	}
	if b.PerCard < 1 || b.PerDevice < 1 {
		return fmt.Errorf("vault: %s budgets (%d per card, %d per device) must be at least 1", kind, b.PerCard, b.PerDevice)
	}
	return nil
}

// Slot is one event to be counted against a budget. The store counts and
// inserts it in the transaction that records the event, so concurrent
// requests cannot overspend.
type Slot struct {
	Kind     string
	CardID   string
	DeviceID string // empty on surfaces without devices
	At       time.Time
	Budget   Budget
}

// Since is the start of the slot's window.
func (r *Slot) Since() time.Time { return r.At.Add(-r.Budget.Window) }

// BudgetUse is what the window already holds: how many events for the
// card and by the device, and the oldest of each, which leaves first.
type BudgetUse struct {
	Card, Device             int
	CardOldest, DeviceOldest time.Time
}

// Check refuses the slot when the window is full, saying when it is not.
func (r *Slot) Check(u BudgetUse) error {
	what := "reveal"
	if r.Kind == BudgetPINAttempt {
		what = "PIN attempt"
	}
	if u.Card >= r.Budget.PerCard {
		return r.spent("card_id", "the card's "+what+" budget is spent", u.CardOldest)
	}
	if r.DeviceID != "" && u.Device >= r.Budget.PerDevice {
		return r.spent("device_id", "the device's "+what+" budget is spent", u.DeviceOldest)
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
