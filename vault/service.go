package vault

import (
	"context"
	"crypto/rand"
	"crypto/subtle"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"regexp"
	"time"

	"github.com/cardvault/cardvault/internal/clienttext"
	"github.com/google/uuid"
)

// Config holds the service's settings.
type Config struct {
	// BIN is the 6–8 digit issuer prefix of sandbox-issued PANs.
	BIN string
	// ExpiryYears is how far ahead issued cards expire.
	ExpiryYears int
	// Reveals and PINAttempts bound reveals and PIN attempts; zero values
	// mean DefaultRevealBudget and DefaultPINBudget.
	Reveals     Budget
	PINAttempts Budget
	// Lookups bounds a caller's look-ups by PAN; zero means
	// DefaultLookupBudget.
	Lookups Budget
	// Imports bounds the distinct PANs a caller imports; zero means
	// DefaultImportBudget.
	Imports Budget
	// Verifications bounds card verifications (VerifyCard): per card, every
	// one counted, and per caller in distinct cards; zero means
	// DefaultVerifyBudget.
	Verifications Budget
	// PINTryLimit is the issuer's PIN try limit: after that many wrong
	// PINs in a row, PIN verification answers blocked until a new PIN is
	// set; zero means DefaultPINTryLimit.
	PINTryLimit int
	// DeviceGate, when set, keeps the cards of an owner with a bound
	// device behind the device: the routes without a device signature
	// (Jiko's read and PIN set) refuse them, so a token alone cannot step
	// around the device binding.
	DeviceGate bool
	// IdempotencyWindow is how long a first answer is kept for replay;
	// zero means DefaultIdempotencyWindow.
	IdempotencyWindow time.Duration
	// Rand and Now are injectable for deterministic tests.
	Rand io.Reader
	Now  func() time.Time
	// Log gets what an operator must hear of that is not the caller's
	// answer (an audit write that failed); nil discards it.
	Log *slog.Logger
	// Observer is told of refusals and replays (metrics); nil tells no one.
	Observer Observer
}

// Service holds the narrow paths: the only code that handles clear card
// data. Each path opens or makes the data, re-encrypts or seals it, and
// clears its buffers before returning.
type Service struct {
	keys  Keys
	store Store
	cfg   Config
}

var binPattern = regexp.MustCompile(`^[0-9]{6,8}$`)

// NewService validates the configuration and builds the service.
func NewService(keys Keys, store Store, cfg Config) (*Service, error) {
	if !binPattern.MatchString(cfg.BIN) {
		return nil, fmt.Errorf("vault: BIN %q must be 6 to 8 digits", cfg.BIN)
	}
	if cfg.ExpiryYears < 1 || cfg.ExpiryYears > 10 {
		return nil, fmt.Errorf("vault: expiry years %d must be 1 to 10", cfg.ExpiryYears)
	}
	if err := settleBudgets(&cfg); err != nil {
		return nil, err
	}
	if cfg.PINTryLimit == 0 {
		cfg.PINTryLimit = DefaultPINTryLimit
	}
	if cfg.PINTryLimit < 1 || cfg.PINTryLimit > 15 {
		return nil, fmt.Errorf("vault: PIN try limit %d must be 1 to 15", cfg.PINTryLimit)
	}
	if cfg.IdempotencyWindow == 0 {
		cfg.IdempotencyWindow = DefaultIdempotencyWindow
	}
	if cfg.IdempotencyWindow < time.Minute || cfg.IdempotencyWindow > 7*24*time.Hour {
		return nil, fmt.Errorf("vault: idempotency window %s must be 1m to 7 days", cfg.IdempotencyWindow)
	}
	if cfg.Rand == nil {
		cfg.Rand = rand.Reader
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.DiscardHandler)
	}
	if cfg.Observer == nil {
		cfg.Observer = nopObserver{}
	}
	return &Service{keys: keys, store: store, cfg: cfg}, nil
}

// Caller identifies who asks, for the audit trail.
type Caller struct {
	Name      string // API token name
	RequestID string
}

// DefaultIdempotencyWindow is Jiko's: a key is good for an hour.
const DefaultIdempotencyWindow = time.Hour

// IdemKey names an idempotent request: within Scope, a repeated Key with
// the same Request gets the first result back. Request is the request as
// received (method, path and body, so it may hold card data); only its
// keyed digest is stored, and the caller clears it.
type IdemKey struct {
	Scope string
	// Surface names the route ("POST /v1/..." as a template) for metrics;
	// Scope is what keys are unique within.
	Surface string
	Key     string
	Request []byte
}

// Clear zeroes the request, which may hold card data.
func (k *IdemKey) Clear() {
	if k != nil {
		clear(k.Request)
	}
}

var ownerPattern = regexp.MustCompile(`^[A-Za-z0-9_-]{1,64}$`)

// ValidateOwnerID checks an account or person id from a path or body.
func ValidateOwnerID(field, id string) error {
	if !ownerPattern.MatchString(id) {
		return Invalid(field, "must be 1 to 64 letters, digits, '-' or '_'")
	}
	if clienttext.PANShaped(id) {
		// An owner id is kept in clear and in the audit trail forever.
		return Invalid(field, "must not hold a card number")
	}
	return nil
}

// replay returns the stored result of an idempotent request, if there is
// one from within the window. A key reused with a different request is a
// conflict.
func (s *Service) replay(ctx context.Context, idem *IdemKey, out any) (bool, error) {
	if idem == nil {
		return false, nil
	}
	prev, err := s.store.Idempotent(ctx, idem.Scope, idem.Key, s.cfg.Now().UTC().Add(-s.cfg.IdempotencyWindow))
	if errors.Is(err, ErrNotFound) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	if len(prev.RequestHash) < 4 {
		return false, Internal(errors.New("stored idempotent result has no digest version"))
	}
	digest, _, err := s.keys.RequestDigest(ctx, binary.BigEndian.Uint32(prev.RequestHash), idem.Request)
	if err != nil {
		return false, err
	}
	if subtle.ConstantTimeCompare(prev.RequestHash[4:], digest) != 1 {
		return false, Conflict("Idempotency-Key", "was used with a different request")
	}
	if err := json.Unmarshal(prev.Result, out); err != nil {
		return false, Internal(fmt.Errorf("stored idempotent result: %w", err))
	}
	s.cfg.Observer.Replayed(idem.Surface)
	return true, nil
}

// idempotent is the record of a first answer about a card ("" for none):
// the request's keyed digest under the active version, and the result.
func (s *Service) idempotent(ctx context.Context, idem *IdemKey, cardID string, result any) (*IdempotentResult, error) {
	if idem == nil {
		return nil, nil
	}
	digest, version, err := s.keys.RequestDigest(ctx, 0, idem.Request)
	if err != nil {
		return nil, err
	}
	b, err := json.Marshal(result)
	if err != nil {
		return nil, Internal(err)
	}
	now := s.cfg.Now().UTC()
	return &IdempotentResult{Scope: idem.Scope, Key: idem.Key, RequestHash: append(binary.BigEndian.AppendUint32(nil, version), digest...), Result: b,
		CardID: cardID, CreatedAt: now, PruneBefore: now.Add(-s.cfg.IdempotencyWindow)}, nil
}

// idempotently is the request protocol every idempotent path shares: a
// replayed key answers from its first answer and the work never runs;
// otherwise the work runs (and commits its Write with the key), and a
// commit that lost the key to a concurrent twin answers with the twin's
// answer. Refusals inside the work are audited by the work; a duplicate
// is never one (refuseWith and refusedByRule let it through).
func idempotently[T any](ctx context.Context, s *Service, idem *IdemKey, work func() (T, error)) (T, error) {
	var first T
	if ok, err := s.replay(ctx, idem, &first); ok || err != nil {
		return first, err
	}
	out, err := work()
	if errors.Is(err, ErrDuplicateRequest) {
		var twin T
		return twin, s.afterDuplicate(ctx, idem, &twin)
	}
	return out, err
}

// afterDuplicate answers a request that lost an idempotency race with the
// winner's result.
func (s *Service) afterDuplicate(ctx context.Context, idem *IdemKey, out any) error {
	ok, err := s.replay(ctx, idem, out)
	if err != nil {
		return err
	}
	if !ok {
		return Internal(errors.New("idempotent result vanished"))
	}
	return nil
}

// audit builds an entry. What a client chose passes the client-text rule
// here, once for every entry: the owner id, the request id and the
// detail's values (device_data, key_id, …) but the ids the vault made
// itself, which its callers take from the store. The card id is the
// vault's on every path but a refusal, which checks it (refuseWith).
func (s *Service) audit(c Caller, action, cardID, ownerID, outcome string, detail map[string]string) AuditEntry {
	for k, v := range detail {
		if !serverIDs[k] {
			detail[k] = clienttext.Text(v)
		}
	}
	return AuditEntry{At: s.cfg.Now().UTC(), Actor: c.Name, Action: action, CardID: cardID, OwnerID: clienttext.ID(ownerID),
		Outcome: outcome, RequestID: clienttext.ID(c.RequestID), Detail: detail}
}

// serverIDs are the detail keys whose values the vault made and its
// callers read from the store, never from the request.
var serverIDs = map[string]bool{"device_id": true, "challenge_id": true, "order_id": true}

// auditableCardID is what a refusal records of the card id it was asked
// for: the id if it passes the client-text rule or names a card the vault
// holds (ids the vault makes can hold a Luhn-valid run by chance), and
// Withheld otherwise.
func (s *Service) auditableCardID(ctx context.Context, id string) string {
	if clienttext.ID(id) == id {
		return id
	}
	if _, err := s.store.CardByID(ctx, id); err == nil {
		return id
	}
	return clienttext.Withheld
}

// refuse records a refusal on its own and returns the refusal.
func (s *Service) refuse(ctx context.Context, c Caller, action, cardID, ownerID string, err error) error {
	return s.refuseWith(ctx, c, action, cardID, ownerID, nil, err)
}

// refuseWith is refuse with the request's audit detail. A request that
// lost its idempotency key to a concurrent twin is not a refusal: it is
// answered from the twin (idempotently), so it passes through unaudited.
func (s *Service) refuseWith(ctx context.Context, c Caller, action, cardID, ownerID string, detail map[string]string, err error) error {
	if errors.Is(err, ErrDuplicateRequest) {
		return err
	}
	outcome := "refused: " + err.Error()
	if e := new(Error); errors.As(err, &e) && (e.Kind == KindInternal || e.Kind == KindCrypto || e.Kind == KindUnavailable) {
		outcome = "failed: " + e.Msg
	}
	if e := new(Error); errors.As(err, &e) && e.Kind == KindRateLimited {
		s.cfg.Observer.Refused(action, e.Field)
	}
	// The refusal stands whether or not its entry is written: it changed
	// nothing, and a failing database must not turn a refusal into an
	// answer. The failure is logged, without the request's data, and
	// counted, so a gap in the trail is never silent.
	if aerr := s.store.AppendAudit(ctx, s.audit(c, action, s.auditableCardID(ctx, cardID), ownerID, outcome, detail)); aerr != nil {
		s.cfg.Observer.AuditWriteFailed(action)
		s.cfg.Log.Error("audit entry for a refusal not written", "action", action, "request_id", c.RequestID, "error", aerr)
	}
	return err
}

// slot is an event of a kind on a card, by a device if deviceID is set,
// for a caller, to be counted now.
func (s *Service) slot(kind, cardID, deviceID string, c Caller) *Slot {
	b := *budgetKinds[kind].in(&s.cfg)
	return &Slot{Kind: kind, CardID: cardID, DeviceID: deviceID, Caller: c.Name, At: s.cfg.Now().UTC(), Budget: b}
}

// checkBudget refuses a reveal early when its window is already full, so
// no HSM work is spent on it. The store checks again when it commits.
func (s *Service) checkBudget(ctx context.Context, slot *Slot) error {
	use, err := s.store.BudgetUse(ctx, slot)
	if err != nil {
		return err
	}
	return slot.Check(use)
}

// refusedByRule says whether a store error is a refusal worth auditing
// rather than a fault: a conflict or a full budget, but not a duplicate
// idempotent request, which idempotently answers.
func refusedByRule(err error) bool {
	if errors.Is(err, ErrDuplicateRequest) {
		return false
	}
	k := KindOf(err)
	return k == KindConflict || k == KindRateLimited
}

// sealNew fingerprints and seals a record into a new card. The AAD is the
// card id; the sealed format adds the key version.
func (s *Service) sealNew(ctx context.Context, ownerID string, typ CardType, status Status, rec *secretRecord) (*Card, error) {
	fps, err := s.keys.PANFingerprints(ctx, rec.PAN)
	if err != nil {
		return nil, err
	}
	id, err := uuid.NewV7()
	if err != nil {
		return nil, Internal(err)
	}
	plain, err := rec.encode()
	if err != nil {
		return nil, Invalid("name", "is too long")
	}
	defer clear(plain)
	sealed, keyVersion, err := s.keys.Seal(ctx, []byte(id.String()), plain)
	if err != nil {
		return nil, err
	}
	now := s.cfg.Now().UTC()
	return &Card{
		ID: id.String(), OwnerID: ownerID, Type: typ, Status: status,
		Last4:       string(rec.PAN[len(rec.PAN)-4:]),
		ExpiryMonth: rec.ExpiryMonth, ExpiryYear: rec.ExpiryYear, Name: string(rec.Name),
		Fingerprint: fps[0].Sum, FPVersion: fps[0].Version, PriorFingerprints: priorSums(fps),
		Sealed: sealed, KeyVersion: keyVersion,
		CreatedAt: now, UpdatedAt: now,
	}, nil
}

// priorSums are the fingerprints after the active one.
func priorSums(fps []PANFingerprint) [][]byte {
	out := make([][]byte, 0, len(fps)-1)
	for _, f := range fps[1:] {
		out = append(out, f.Sum)
	}
	return out
}

// revealable refuses to reveal a closed card (its record is shredded) or
// a locked one (its holder stopped it).
func revealable(card *Card, field string) error {
	return revealableStatus(card.Status, card.Sealed != nil, field)
}

func revealableStatus(status Status, sealed bool, field string) error {
	switch {
	case status == StatusClosed || !sealed:
		return Conflict(field, "card is closed")
	case status == StatusLocked:
		return Conflict(field, "card is locked")
	}
	return nil
}

// RevealCheck is what a reveal checked of its card before the HSM opened
// the record, to be checked again where the reveal is recorded: a card
// locked, or an owner who bound a device, meanwhile refuses the reveal
// rather than follow it.
type RevealCheck struct {
	CardID string
	Field  string // what a refusal names
	// Gated says the route carries no device signature, so the owner must
	// still have no verified device (the device gate).
	Gated bool
}

// Check judges the card as the recording transaction reads it: its
// status, whether its record is still there, and whether its owner has a
// verified device.
func (r *RevealCheck) Check(status Status, sealed, ownerHasVerifiedDevice bool) error {
	if err := revealableStatus(status, sealed, r.Field); err != nil {
		return err
	}
	if r.Gated && ownerHasVerifiedDevice {
		return errDeviceGate
	}
	return nil
}

// revealCheck is the commit-time check of a reveal of card by a route
// with (gated false) or without a device signature.
func (s *Service) revealCheck(card *Card, field string, gated bool) *RevealCheck {
	return &RevealCheck{CardID: card.ID, Field: field, Gated: gated && s.cfg.DeviceGate}
}

// errDeviceGate refuses a route without a device signature for a card
// whose owner has bound a device.
var errDeviceGate = &Error{Kind: KindForbidden, Field: "card_id", Msg: "the card's owner has a bound device; use the device-signed route"}

// deviceGate keeps a card behind its owner's devices: once the owner has
// bound one, the routes that carry no device signature refuse the card,
// so that an API token alone cannot step around the binding.
func (s *Service) deviceGate(ctx context.Context, card *Card) error {
	if !s.cfg.DeviceGate {
		return nil
	}
	devices, err := s.store.ListDevices(ctx, card.OwnerID, s.cfg.Now().UTC())
	if err != nil {
		return err
	}
	for _, d := range devices {
		if d.Status == DeviceVerified {
			return errDeviceGate
		}
	}
	return nil
}

// openRecord opens a card's sealed record: one HSM operation. The caller
// clears the record.
func (s *Service) openRecord(ctx context.Context, card *Card) (*secretRecord, error) {
	plain, err := s.keys.Open(ctx, []byte(card.ID), card.Sealed)
	if KindOf(err) == KindCrypto {
		// A stored record that does not open is the vault's fault, not the
		// client's: tampering or a bug, and never a detail to share.
		return nil, Internal(fmt.Errorf("card %s: sealed record does not open", card.ID))
	}
	if err != nil {
		return nil, err
	}
	rec, err := decodeRecord(plain)
	if err != nil {
		clear(plain)
		return nil, Internal(fmt.Errorf("card %s: %w", card.ID, err))
	}
	return rec, nil
}
