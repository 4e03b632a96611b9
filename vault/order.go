package vault

import (
	"context"
	"errors"
	"fmt"
	"regexp"
	"time"

	"github.com/google/uuid"
)

// OrderStatus is where a physical card order is.
type OrderStatus string

// Order statuses (Jiko's names), in the only order they happen.
const (
	OrderInitial     OrderStatus = "INITIAL"
	OrderCardCreated OrderStatus = "CARD_CREATED"
	OrderOrdered     OrderStatus = "ORDERED"
	OrderReceived    OrderStatus = "RECEIVED" // once the PIN is set
)

// orderNext is the one move out of each status; orders never skip a
// status or go back.
var orderNext = map[OrderStatus]OrderStatus{
	OrderInitial:     OrderCardCreated,
	OrderCardCreated: OrderOrdered,
	OrderOrdered:     OrderReceived,
}

// ShippingAddress is where a physical card goes.
type ShippingAddress struct {
	StreetAddress  string `json:"street_address"`
	StreetAddress2 string `json:"street_address2,omitempty"`
	City           string `json:"city"`
	PostalCode     string `json:"postal_code"`
	State          string `json:"state"`
	Country        string `json:"country"`
}

// Order is a physical card order.
type Order struct {
	ID         string
	OwnerID    string
	CardID     string // set once the card is created
	Status     OrderStatus
	NameOnCard string
	Shipping   ShippingAddress
	CreatedAt  time.Time
	UpdatedAt  time.Time
}

// OrderMove is an order's transition, committed with what causes it.
type OrderMove struct {
	OrderID  string
	From, To OrderStatus
	CardID   string // the card the move attaches, if any
	At       time.Time
}

// move returns the order's next move to want, or a conflict naming
// "status" if want is not next.
func (o *Order) move(want OrderStatus, at time.Time) (*OrderMove, error) {
	if orderNext[o.Status] != want {
		return nil, Conflict("status", fmt.Sprintf("order is %s and cannot become %s", o.Status, want))
	}
	return &OrderMove{OrderID: o.ID, From: o.Status, To: want, CardID: o.CardID, At: at}, nil
}

// usStates are the two-letter codes a US shipping address may carry: the
// states, DC, and the territories and military codes USPS delivers to.
var usStates = map[string]bool{}

func init() {
	for _, s := range []string{"AL", "AK", "AZ", "AR", "CA", "CO", "CT", "DE", "FL", "GA", "HI", "ID", "IL", "IN", "IA", "KS", "KY", "LA",
		"ME", "MD", "MA", "MI", "MN", "MS", "MO", "MT", "NE", "NV", "NH", "NJ", "NM", "NY", "NC", "ND", "OH", "OK", "OR", "PA", "RI", "SC",
		"SD", "TN", "TX", "UT", "VT", "VA", "WA", "WV", "WI", "WY", "DC", "AS", "GU", "MP", "PR", "VI", "AA", "AE", "AP"} {
		usStates[s] = true
	}
}

var postalCodePattern = regexp.MustCompile(`^[0-9]{5}(-[0-9]{4})?$`)

func (a *ShippingAddress) validate() error {
	for _, f := range []struct {
		name, value string
		max         int
		required    bool
	}{
		{"street_address", a.StreetAddress, 100, true},
		{"street_address2", a.StreetAddress2, 100, false},
		{"city", a.City, 100, true},
		{"postal_code", a.PostalCode, 10, true},
	} {
		name := field("shipping_address", f.name)
		if f.required && f.value == "" {
			return Invalid(name, "is required")
		}
		if err := validateName(name, f.value); err != nil {
			return err
		}
		if len(f.value) > f.max {
			return Invalid(name, fmt.Sprintf("must be at most %d characters", f.max))
		}
	}
	if !postalCodePattern.MatchString(a.PostalCode) {
		return Invalid("shipping_address[postal_code]", "must be a US ZIP code: 12345 or 12345-6789")
	}
	if !usStates[a.State] {
		return Invalid("shipping_address[state]", "must be a US two-letter state code")
	}
	// ISO 3166-1 alpha-2 or alpha-3, as the caller sent it: the Jiko
	// guide's own order says "USA".
	if a.Country != "US" && a.Country != "USA" {
		return Invalid("shipping_address[country]", "must be US or USA (ISO 3166-1 alpha-2 or alpha-3): cards ship to the United States only")
	}
	return nil
}

// CreateOrder records a physical card order in INITIAL.
func (s *Service) CreateOrder(ctx context.Context, c Caller, ownerID, nameOnCard string, addr ShippingAddress, idem *IdemKey) (*Order, error) {
	if err := ValidateOwnerID("account_id", ownerID); err != nil {
		return nil, err
	}
	if nameOnCard == "" {
		return nil, Invalid("name_on_card", "is required")
	}
	if err := validateName("name_on_card", nameOnCard); err != nil {
		return nil, err
	}
	if err := addr.validate(); err != nil {
		return nil, err
	}
	return idempotently(ctx, s, idem, func() (*Order, error) {
		id, err := uuid.NewV7()
		if err != nil {
			return nil, Internal(err)
		}
		now := s.cfg.Now().UTC()
		o := &Order{ID: id.String(), OwnerID: ownerID, Status: OrderInitial, NameOnCard: nameOnCard, Shipping: addr, CreatedAt: now, UpdatedAt: now}
		w := Write{Audit: s.audit(c, "order.create", "", ownerID, "ok", map[string]string{"order_id": o.ID})}
		if w.Idempotent, err = s.idempotent(ctx, idem, "", o); err != nil {
			return nil, err
		}
		if err := s.store.CreateOrder(ctx, o, w); err != nil {
			return nil, err
		}
		return o, nil
	})
}

// Order returns an owner's order; another owner's is ErrNotFound.
func (s *Service) Order(ctx context.Context, ownerID, id string) (*Order, error) {
	if err := ValidateOwnerID("account_id", ownerID); err != nil {
		return nil, err
	}
	return s.store.Order(ctx, ownerID, id)
}

// ListOrders returns an owner's orders, oldest first.
func (s *Service) ListOrders(ctx context.Context, ownerID string) ([]*Order, error) {
	if err := ValidateOwnerID("account_id", ownerID); err != nil {
		return nil, err
	}
	return s.store.ListOrders(ctx, ownerID)
}

// GenerateCard is the sandbox's card production: it issues the order's
// physical card (NOT_ACTIVATED until its PIN is set, sealed like any card)
// and moves the order to CARD_CREATED, then ORDERED, each move committed
// with its audit entry.
func (s *Service) GenerateCard(ctx context.Context, c Caller, orderID string) (*Order, error) {
	o, err := s.store.OrderByID(ctx, orderID)
	if err != nil {
		return nil, err
	}
	move, err := o.move(OrderCardCreated, s.cfg.Now().UTC())
	if err != nil {
		return nil, s.refuse(ctx, c, "order.card_created", "", o.OwnerID, err)
	}
	var card *Card
	for attempt := 0; attempt < 5; attempt++ {
		card, err = s.issuePhysical(ctx, c, o, move)
		if e := new(Error); errors.As(err, &e) && e.Kind == KindConflict && e.Field == "pan" {
			continue
		}
		break
	}
	if err != nil {
		return nil, err
	}
	o.Status, o.CardID = OrderCardCreated, card.ID
	move, err = o.move(OrderOrdered, s.cfg.Now().UTC())
	if err != nil {
		return nil, err
	}
	w := Write{Audit: s.audit(c, "order.ordered", card.ID, o.OwnerID, "ok", map[string]string{"order_id": o.ID}), Order: move}
	if err := s.store.Commit(ctx, w); err != nil {
		return nil, err
	}
	o.Status, o.UpdatedAt = OrderOrdered, move.At
	return o, nil
}

// issuePhysical makes and seals the order's card and commits it with the
// order's move to CARD_CREATED.
func (s *Service) issuePhysical(ctx context.Context, c Caller, o *Order, move *OrderMove) (*Card, error) {
	rec, err := s.newRecord(o.NameOnCard)
	if err != nil {
		return nil, err
	}
	defer rec.clear()
	card, err := s.sealNew(ctx, o.OwnerID, TypePhysical, StatusNotActivated, rec)
	if err != nil {
		return nil, err
	}
	move.CardID = card.ID
	w := Write{Audit: s.audit(c, "card.issue", card.ID, o.OwnerID, "ok", map[string]string{"type": string(TypePhysical), "order_id": o.ID, "key_version": fmt.Sprint(card.KeyVersion)}), Order: move}
	if err := s.store.CreateCard(ctx, card, w); err != nil {
		return nil, err
	}
	return card, nil
}
