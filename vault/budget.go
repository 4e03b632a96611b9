package vault

import (
	"fmt"
	"time"
)

// RevealBudget bounds how often card data is revealed within a sliding
// window: per card on every surface, and per device on the secure view.
// A stolen API token or a compromised device then reveals a handful of
// cards, not the vault.
type RevealBudget struct {
	Window    time.Duration
	PerCard   int
	PerDevice int
}

// DefaultRevealBudget is generous for a person looking at their own cards
// and tight for anyone sweeping them.
var DefaultRevealBudget = RevealBudget{Window: time.Hour, PerCard: 10, PerDevice: 30}

func (b RevealBudget) validate() error {
	if b.Window < time.Second || b.Window > 7*24*time.Hour {
		return fmt.Errorf("vault: reveal window %s must be 1s to 7 days", b.Window)
	}
	if b.PerCard < 1 || b.PerDevice < 1 {
		return fmt.Errorf("vault: reveal budgets (%d per card, %d per device) must be at least 1", b.PerCard, b.PerDevice)
	}
	return nil
}

// RevealSlot is one reveal to be counted against the budget. The store
// counts and inserts it in the transaction that records the reveal, so
// concurrent reveals cannot overspend.
type RevealSlot struct {
	CardID   string
	DeviceID string // empty on surfaces without devices
	At       time.Time
	Budget   RevealBudget
}

// Since is the start of the slot's window.
func (r *RevealSlot) Since() time.Time { return r.At.Add(-r.Budget.Window) }

// BudgetUse is what the window already holds: how many reveals of the
// card and by the device, and the oldest of each, which leaves first.
type BudgetUse struct {
	Card, Device             int
	CardOldest, DeviceOldest time.Time
}

// Check refuses the slot when the window is full, saying when it is not.
func (r *RevealSlot) Check(u BudgetUse) error {
	if u.Card >= r.Budget.PerCard {
		return r.spent("card_id", "the card's reveal budget is spent", u.CardOldest)
	}
	if r.DeviceID != "" && u.Device >= r.Budget.PerDevice {
		return r.spent("device_id", "the device's reveal budget is spent", u.DeviceOldest)
	}
	return nil
}

func (r *RevealSlot) spent(field, msg string, oldest time.Time) error {
	wait := oldest.Add(r.Budget.Window).Sub(r.At)
	if wait < time.Second {
		wait = time.Second
	}
	return &Error{Kind: KindRateLimited, Field: field, Msg: msg, RetryAfter: wait}
}
