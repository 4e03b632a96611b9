package vault

import (
	"context"
	"crypto/rsa"
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
	// PANFingerprints is the PAN's fingerprint under every pan-hmac
	// version the token holds, the active one first: between a rotation
	// and its rewrap, cards are found by their older fingerprints.
	PANFingerprints(ctx context.Context, pan []byte) ([]PANFingerprint, error)
	// RequestDigest is a keyed digest of an idempotent request (which may
	// hold card data) under a pan-hmac version, 0 for the active one; it
	// returns the version it used.
	RequestDigest(ctx context.Context, version uint32, request []byte) ([]byte, uint32, error)
	PINKeys
}

// PINKeys is what the PIN paths need from the HSM. Version 0 means the
// active version, which is returned.
type PINKeys interface {
	// SetPINPublicKey returns a set_pin version's public key.
	SetPINPublicKey(ctx context.Context, version uint32) (*rsa.PublicKey, uint32, error)
	// SetPINVersions returns, from one view of the token, the active
	// set_pin version, the one before it (0 if none) and the last day
	// (UTC) clients may still encrypt to that one: the end date its
	// rotation set, zero if none was set.
	SetPINVersions(ctx context.Context) (active, previous uint32, previousLastDay time.Time, err error)
	// SetPINDecryptPKCS1 returns the PKCS#1 v1.5 encoded message of a
	// ciphertext under a set_pin version, modulus-sized, for the caller
	// to decode in constant time; one HSM call whatever the padding. A
	// ciphertext the HSM refuses is ErrCrypto.
	SetPINDecryptPKCS1(ctx context.Context, version uint32, ciphertext []byte) ([]byte, error)
	// SetPINDecryptOAEP is RSA-OAEP-SHA-256 under a set_pin version.
	SetPINDecryptOAEP(ctx context.Context, version uint32, ciphertext []byte) ([]byte, error)
	// PEKEncryptBlock enciphers one AES block under a PEK version.
	PEKEncryptBlock(ctx context.Context, version uint32, block []byte) ([]byte, uint32, error)
	// PINDigits deciphers a format 4 PIN block under a PEK version, in the
	// token, and returns only the PIN's digits (DecipherPINBlock): a block
	// that is not a well-formed format 4 PIN for pan gives ErrCrypto and
	// nothing of what it decoded to. The caller clears the digits.
	PINDigits(ctx context.Context, version uint32, block, pan []byte) ([]byte, error)
	// ZonePINDigits is PINDigits for a block a zone sent, under a zone
	// PIN key version (0: the active one); it returns the version used.
	ZonePINDigits(ctx context.Context, version uint32, block, pan []byte) ([]byte, uint32, error)
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

// IdempotentResult is a stored first answer to an idempotent request. It
// lives for the idempotency window and goes with its card.
type IdempotentResult struct {
	Scope string // the caller and route the key is unique within
	Key   string
	// RequestHash is the request's keyed digest, prefixed with the
	// pan-hmac version (4 bytes, big-endian) that made it.
	RequestHash []byte
	Result      []byte // JSON of the service's result
	CardID      string // the card the result is about, if any
	CreatedAt   time.Time
	// PruneBefore is the start of the window: the store drops results
	// created before it.
	PruneBefore time.Time
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
	// Slot is counted against its budget; the transaction fails with the
	// slot's rate-limit error if the window is full.
	Slot *Slot
	// Order moves an order on; the transaction fails with a conflict
	// naming "status" if the order is no longer where the move starts.
	Order *OrderMove
	// Reveal is a reveal's check of its card, made again in the
	// transaction from what it reads there; the transaction fails with
	// the check's refusal.
	Reveal *RevealCheck
	// PINTry counts a PIN verification on its card; the transaction fails
	// with ErrPINBlocked if the card's tries had already reached the
	// limit, and with a conflict naming "card_id" if the card's PIN
	// changed since it was compared.
	PINTry *PINTry
}

// PINTry is a PIN verification's outcome on a card: a wrong PIN adds one
// to the card's tries, a right one clears them. PINBlock is the stored
// block the PIN was compared with.
type PINTry struct {
	CardID   string
	PINBlock []byte
	Matched  bool
	Limit    int
}

// ErrPINBlocked is a store's refusal of a PIN try on a card whose tries
// reached the limit: the card answers blocked until a new PIN is set.
var ErrPINBlocked = &Error{Kind: KindConflict, Field: "card_id", Msg: "the card's PIN is blocked: too many wrong PINs"}

// Store persists cards, devices, used client keys, idempotent results,
// reveal budgets and the audit trail. Every method that changes data
// commits it together with its Write in one transaction, or not at all.
type Store interface {
	CardStore
	DeviceStore
	OrderStore
	// Commit commits a Write on its own: a reveal's budget slot, burnt key,
	// audit entry and idempotent result, or an order's transition.
	Commit(ctx context.Context, w Write) error
	// BudgetUse reports what a slot's windows already hold: the card's
	// and the device's events of its kind and the caller's distinct
	// cards. An empty DeviceID or Caller counts nothing for it.
	BudgetUse(ctx context.Context, slot *Slot) (BudgetUse, error)
	// AppendAudit records an entry on its own, for refusals.
	AppendAudit(ctx context.Context, e AuditEntry) error
	// AuditTrail returns a card's entries, oldest first.
	AuditTrail(ctx context.Context, cardID string) ([]AuditEntry, error)
	// Idempotent returns a result stored since a time, or ErrNotFound.
	Idempotent(ctx context.Context, scope, key string, since time.Time) (*IdempotentResult, error)
	// Ping checks the database is usable.
	Ping(ctx context.Context) error
	Close() error
}

// CardStore holds cards.
type CardStore interface {
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
	// SetStatus moves a card from one of from to to; a card in another
	// status is a conflict naming field "status".
	SetStatus(ctx context.Context, ownerID, id string, from []Status, to Status, at time.Time, w Write) (*Card, error)
	// CloseCard sets CLOSED and deletes the sealed record, the PIN block
	// and the stored idempotent answers about the card: the card's data is
	// crypto-shredded while its metadata and audit trail stay.
	CloseCard(ctx context.Context, ownerID, id string, reason ClosureReason, at time.Time, w Write) error
	// SetPIN stores a card's PIN block and its PEK version, and opens a
	// NOT_ACTIVATED card, with w (which may move the card's order).
	SetPIN(ctx context.Context, cardID string, block []byte, pekVersion uint32, at time.Time, w Write) error
}

// OrderStore holds physical card orders. Orders move only through a
// Write's OrderMove.
type OrderStore interface {
	// CreateOrder inserts an order.
	CreateOrder(ctx context.Context, o *Order, w Write) error
	// Order returns an owner's order, or ErrNotFound.
	Order(ctx context.Context, ownerID, id string) (*Order, error)
	// OrderByID returns an order whoever owns it, or ErrNotFound.
	OrderByID(ctx context.Context, id string) (*Order, error)
	// OrderByCard returns the order that made a card, or ErrNotFound.
	OrderByCard(ctx context.Context, cardID string) (*Order, error)
	// ListOrders returns an owner's orders, oldest first.
	ListOrders(ctx context.Context, ownerID string) ([]*Order, error)
}

// DeviceStore holds bound devices and their binding challenges.
type DeviceStore interface {
	// CreateDevice inserts a pending device and its first challenge. It is
	// a conflict naming "person_id" when the person already has limit
	// devices that are verified, or pending with a challenge still open at
	// the device's creation time.
	CreateDevice(ctx context.Context, d *Device, ch *Challenge, limit int, w Write) error
	// Device returns a device that is not deleted, or ErrNotFound.
	Device(ctx context.Context, id string) (*Device, error)
	// ListDevices returns a person's devices that are verified, or pending
	// with a challenge open at at, oldest first.
	ListDevices(ctx context.Context, personID string, at time.Time) ([]*Device, error)
	// Challenge returns a challenge, or ErrNotFound.
	Challenge(ctx context.Context, id string) (*Challenge, error)
	// AnswerChallenge marks a challenge used and its device verified. It
	// is a conflict naming "id" when the challenge was used or expired by
	// at, and ErrNotFound when its device was deleted.
	AnswerChallenge(ctx context.Context, challengeID string, at time.Time, w Write) error
	// AddDeviceKey sets a verified device's key for a purpose; it is a
	// conflict naming "key_purpose" when the device has that key already.
	AddDeviceKey(ctx context.Context, deviceID string, p KeyPurpose, key []byte, w Write) error
	// DeleteDevice marks a device deleted, or returns ErrNotFound.
	DeleteDevice(ctx context.Context, id string, at time.Time, w Write) error
}

// ErrDuplicateRequest reports that an idempotency key was stored by a
// concurrent request; the caller answers with that request's result.
var ErrDuplicateRequest = &Error{Kind: KindConflict, Field: "Idempotency-Key", Msg: "request already processed"}

// PANFingerprint is a PAN's fingerprint under one pan-hmac version.
type PANFingerprint struct {
	Version uint32
	Sum     []byte
}
