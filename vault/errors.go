// Package vault is cardvault's domain: cards, their sealed records, the
// client keys card data is revealed to, the audit trail, and the service
// whose few narrow paths are the only code that handles clear card data.
//
// It declares the interfaces it needs (Keys for the HSM, Store for the
// database) in its own words; the adapters in hsm, sqlstore and httpapi
// import vault, never the other way round.
package vault

import (
	"errors"
	"fmt"
	"time"
)

// Kind is the small closed set of error kinds the HTTP layer maps, once, to
// statuses and to each API surface's error shape.
type Kind int

// Error kinds.
const (
	KindInternal     Kind = iota // a bug or an unexpected failure: 500, generic message
	KindInvalid                  // bad input: 4xx naming the field
	KindNotFound                 // absent, or owned by someone else: 404
	KindConflict                 // duplicate, reused key, illegal transition: 409
	KindUnauthorized             // missing or bad credentials: 401
	KindForbidden                // valid credentials without the scope: 403
	KindUnavailable              // the HSM or the database is away: 503
	KindCrypto                   // any cryptographic failure rooted in input, one opaque error
	KindRateLimited              // a budget is spent: 429
	KindUnsupported              // the HSM lacks a mechanism the route needs: 503 naming it
)

// Error is a domain error. Field names the offending input, in the API's
// own spelling; Msg is safe to show to a client and never holds a secret.
type Error struct {
	Kind  Kind
	Field string
	Msg   string
	Err   error // the cause, for logs only
	// RetryAfter says when a rate-limited request may be tried again.
	RetryAfter time.Duration
}

func (e *Error) Error() string {
	if e.Field != "" {
		return fmt.Sprintf("%s: %s", e.Field, e.Msg)
	}
	return e.Msg
}

func (e *Error) Unwrap() error { return e.Err }

// Invalid reports bad input in a named field.
func Invalid(field, msg string) *Error {
	return &Error{Kind: KindInvalid, Field: field, Msg: msg}
}

// ErrNotFound is the one answer for a card that does not exist and for a
// card that belongs to another owner.
var ErrNotFound = &Error{Kind: KindNotFound, Msg: "not found"}

// ErrCrypto is the one answer for every cryptographic failure.
var ErrCrypto = &Error{Kind: KindCrypto, Msg: "cryptographic operation failed"}

// ErrUnavailable is the answer when the HSM or the database cannot serve.
var ErrUnavailable = &Error{Kind: KindUnavailable, Msg: "service temporarily unavailable"}

// Conflict reports a refused duplicate or transition.
func Conflict(field, msg string) *Error {
	return &Error{Kind: KindConflict, Field: field, Msg: msg}
}

// Internal wraps an unexpected failure; the client sees a generic message.
func Internal(err error) *Error {
	return &Error{Kind: KindInternal, Msg: "internal error", Err: err}
}

// KindOf returns the kind of err; errors that are not *Error are internal.
func KindOf(err error) Kind {
	var e *Error
	if errors.As(err, &e) {
		return e.Kind
	}
	return KindInternal
}
