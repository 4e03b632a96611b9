package vault

import "time"

// Status is a card's lifecycle state.
type Status string

// Card statuses (Jiko's names).
const (
	StatusOpen         Status = "OPEN"
	StatusLocked       Status = "LOCKED"
	StatusClosed       Status = "CLOSED"
	StatusNotActivated Status = "NOT_ACTIVATED"
	StatusFrozen       Status = "FROZEN"
)

// ParseStatus validates a status against the allow-list.
func ParseStatus(s string) (Status, bool) {
	switch st := Status(s); st {
	case StatusOpen, StatusLocked, StatusClosed, StatusNotActivated, StatusFrozen:
		return st, true
	}
	return "", false
}

// CardType says whether a card is virtual or physical.
type CardType string

// Card types.
const (
	TypeVirtual  CardType = "VIRTUAL"
	TypePhysical CardType = "PHYSICAL"
)

// ClosureReason is why a card was closed (Jiko's allow-list).
type ClosureReason string

// Closure reasons.
var closureReasons = map[string]bool{
	"LOST": true, "STOLEN": true, "DAMAGED": true, "NEVER_RECEIVED": true, "EXPIRED": true, "CANCELED": true,
}

// ParseClosureReason validates a closure reason.
func ParseClosureReason(s string) (ClosureReason, bool) {
	return ClosureReason(s), closureReasons[s]
}

// Card is a card's metadata and its sealed secret record. Nothing in it is
// clear card data: Last4 and the expiry are printed on statements and are
// outside PCI DSS's protection requirements for the PAN.
type Card struct {
	ID          string
	OwnerID     string // the Jiko account id, which is also the Solaris person id
	Type        CardType
	Status      Status
	Last4       string
	ExpiryMonth int // 1..12
	ExpiryYear  int // four digits
	Name        string
	Fingerprint []byte // HMAC-SHA256 of the PAN under pan-hmac
	FPVersion   uint32 // pan-hmac version of Fingerprint
	// PriorFingerprints are the PAN's fingerprints under the older
	// pan-hmac versions the token still holds, for a new card only:
	// CreateCard refuses it if a card not yet rewrapped has one. Not
	// stored.
	PriorFingerprints [][]byte
	Sealed            []byte // the sealed record; nil once the card is closed
	KeyVersion        uint32 // card KEK version of Sealed
	// PINBlock is the format 4 PIN block under PEK version PINKeyVersion,
	// nil when no PIN is set or the card is closed.
	PINBlock      []byte
	PINKeyVersion uint32
	// PINTries is how many wrong PINs were verified since the PIN was
	// set or last verified right.
	PINTries  int
	CreatedAt time.Time
	UpdatedAt time.Time
	ClosedAt  *time.Time
	Closure   ClosureReason
}

// CardFilter selects cards of one owner for listing.
type CardFilter struct {
	OwnerID string
	Status  Status // empty for any
	After   string // cursor: list cards with ids after this one
	Limit   int
}
