package hsm

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/miekg/pkcs11"
)

// Observer is told how the module's operations go, for metrics. Its
// methods must be cheap and must not block. They get operation names,
// outcomes and PKCS#11 return-code names, never key material or data.
type Observer interface {
	// Call is one operation: its name, its outcome (Outcome*) and its
	// time, including the wait for a session slot.
	Call(op, outcome string, took time.Duration)
	// SlotWait is the time an operation waited for a session slot.
	SlotWait(took time.Duration)
	// PKCS11Error is a PKCS#11 call that failed, by return-code name.
	PKCS11Error(code string)
}

// The outcomes an Observer is told.
const (
	OutcomeOK          = "ok"
	OutcomeRefused     = "refused"     // the input's fault: a tag or padding that does not check
	OutcomeUnavailable = "unavailable" // the token failed or could not be reached
	OutcomeBusy        = "busy"        // no session slot within the call timeout
	OutcomeCanceled    = "canceled"    // the caller gave up
)

type nopObserver struct{}

func (nopObserver) Call(string, string, time.Duration) {}
func (nopObserver) SlotWait(time.Duration)             {}
func (nopObserver) PKCS11Error(string)                 {}

// SetObserver sends the module's operation reports to o from now on.
func (m *Module) SetObserver(o Observer) {
	if o == nil {
		o = nopObserver{}
	}
	m.obs.Store(&o)
}

func (m *Module) observer() Observer {
	if o := m.obs.Load(); o != nil {
		return *o
	}
	return nopObserver{}
}

// SlotsInUse is how many operations hold a session slot now; Slots is how
// many there are (MaxSessions).
func (m *Module) SlotsInUse() int { return len(m.slots) }

// Slots is the number of session slots.
func (m *Module) Slots() int { return cap(m.slots) }

// outcomeOf names how an operation ended.
func outcomeOf(err error) string {
	switch {
	case err == nil:
		return OutcomeOK
	case errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded):
		return OutcomeCanceled
	case errors.Is(err, errBusy):
		return OutcomeBusy
	case errors.Is(err, ErrUnavailable):
		return OutcomeUnavailable
	}
	return OutcomeRefused
}

// returnCodeName is the CKR_ name of the PKCS#11 return code err
// carries, or "" if it carries none.
func returnCodeName(err error) string {
	code, ok := returnCode(err)
	if !ok {
		return ""
	}
	// miekg/pkcs11 prints "pkcs11: 0x<hex>: CKR_NAME"; a code it has no
	// name for keeps its hex form.
	msg := pkcs11.Error(code).Error()
	if i := strings.LastIndex(msg, ": "); i >= 0 && strings.HasPrefix(msg[i+2:], "CKR_") {
		return msg[i+2:]
	}
	return fmt.Sprintf("0x%X", code)
}
