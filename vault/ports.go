package vault

import (
	"context"
	"time"
)

// Keys is what the vault needs from the HSM. Implementations return
// ErrCrypto for every failure rooted in the input and ErrUnavailable when
// the token cannot serve.
type Keys interface {
	// Seal encrypts plaintext under the active card KEK, binding aad, and
	// returns the KEK version it used.
	Seal(ctx context.Context, aad, plaintext []byte) ([]byte, uint32, error)
	// Open authenticates and decrypts a sealed record.
	Open(ctx context.Context, aad, sealed []byte) ([]byte, error)
	// FingerprintPAN is the HMAC-SHA256 of a PAN under the active
	// pan-hmac key, and that key's version.
	FingerprintPAN(ctx context.Context, pan []byte) ([]byte, uint32, error)
}

// AuditEntry records who did what to which card, and how it ended. It
// never holds card data or key material.
type AuditEntry struct {
	At        time.Time
	Actor     string // API token name, or the ceremony operator
	Action    string // e.g. card.issue, card.import, card.reveal, card.close
	CardID    string
	OwnerID   string
	Outcome   string // ok, or the refusal's reason
	RequestID string
	Detail    map[string]string
}

// IdempotentResult is a stored first answer to an idempotent request.
type IdempotentResult struct {
	Scope       string // the caller and route the key is unique within
	Key         string
	RequestHash []byte
	Result      []byte // JSON of the service's result
	CreatedAt   time.Time
}

// Write is what the store commits in the same transaction as a change.
type Write struct {
	Audit AuditEntry
	// UsedKey is a client key fingerprint to burn; the transaction fails
	// with a conflict if it was used before.
	UsedKey []byte
	// Idempotent is stored under its scope and key; the transaction fails
	// with ErrDuplicateRequest if one is already there.
	Idempotent *IdempotentResult
}

// Store persists cards, used client keys, idempotent results and the audit
// trail. Every method that changes data commits it together with its Write
// in one transaction, or not at all.
type Store interface {
	// CreateCard inserts a card. Conflicts: a card with the same
	// fingerprint (field "pan"), a used key (field "public_key"), or
	// ErrDuplicateRequest.
	CreateCard(ctx context.Context, c *Card, w Write) error
	// Card returns a card of an owner, or ErrNotFound, including when the
	// card exists under another owner.
	Card(ctx context.Context, ownerID, id string) (*Card, error)
	// CardByID returns a card whoever owns it, or ErrNotFound.
	CardByID(ctx context.Context, id string) (*Card, error)
	// CardByFingerprint returns the card with a PAN fingerprint, or
	// ErrNotFound.
	CardByFingerprint(ctx context.Context, fp []byte) (*Card, error)
	// ListCards lists an owner's cards in id order after the cursor.
	ListCards(ctx context.Context, f CardFilter) ([]*Card, error)
	// RecordReveal commits a reveal's Write: the burnt key, the audit
	// entry and the idempotent result.
	RecordReveal(ctx context.Context, w Write) error
	// SetStatus moves a card from one of from to to; a card in another
	// status is a conflict naming field "status".
	SetStatus(ctx context.Context, ownerID, id string, from []Status, to Status, at time.Time, w Write) (*Card, error)
	// CloseCard sets CLOSED and deletes the sealed record: the card's data
	// is crypto-shredded while its metadata and audit trail stay.
	CloseCard(ctx context.Context, ownerID, id string, reason ClosureReason, at time.Time, w Write) error
	// AppendAudit records an entry on its own, for refusals.
	AppendAudit(ctx context.Context, e AuditEntry) error
	// AuditTrail returns a card's entries, oldest first.
	AuditTrail(ctx context.Context, cardID string) ([]AuditEntry, error)
	// Idempotent returns a stored result, or ErrNotFound.
	Idempotent(ctx context.Context, scope, key string) (*IdempotentResult, error)
	// Ping checks the database is usable.
	Ping(ctx context.Context) error
	Close() error
}

// ErrDuplicateRequest reports that an idempotency key was stored by a
// concurrent request; the caller answers with that request's result.
var ErrDuplicateRequest = &Error{Kind: KindConflict, Field: "Idempotency-Key", Msg: "request already processed"}
