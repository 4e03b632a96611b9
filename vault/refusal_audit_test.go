package vault_test

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cardvault/cardvault/vault"
)

// failingAudit is a store whose stand-alone audit writes (refusals) fail.
type failingAudit struct{ vault.Store }

func (failingAudit) AppendAudit(context.Context, vault.AuditEntry) error {
	return errors.New("database is locked")
}

type recordingObserver struct {
	mu     sync.Mutex
	failed []string
}

func (o *recordingObserver) Refused(string, string)  {}
func (o *recordingObserver) Replayed(string)         {}
func (o *recordingObserver) Verified(string, string) {}
func (o *recordingObserver) AuditWriteFailed(action string) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.failed = append(o.failed, action)
}

// A refusal whose audit entry cannot be written still stands, and the
// failure is neither silent nor leaky: it is logged (without the card
// data of the request) and counted.
func TestRefusalAuditFailureIsLoggedAndCounted(t *testing.T) {
	ctx := context.Background()
	m, store, _ := newKeyedStore(t, make([]byte, 32))
	var logs bytes.Buffer
	obs := &recordingObserver{}
	svc, err := vault.NewService(m, failingAudit{store}, vault.Config{BIN: "400000", ExpiryYears: 3,
		Imports: vault.Budget{Window: time.Hour, PerCaller: 2},
		Log:     slog.New(slog.NewJSONHandler(&logs, nil)), Observer: obs})
	if err != nil {
		t.Fatal(err)
	}
	caller := vault.Caller{Name: "test", RequestID: "req-7"}
	// Two cards spend the caller's import budget of two PANs: a repeat of
	// one costs nothing more (409, audited with its own write); a third
	// PAN is refused by the budget, and that refusal is audited on its
	// own.
	pans := []string{"4111111111111111", "5500000000000004"}
	imp := func(pan string) error {
		_, err := svc.Import(ctx, caller, vault.ImportRequest{OwnerID: "acct-1", PAN: []byte(pan), CVV: []byte("123"), ExpiryMonth: 12, ExpiryYear: 2035}, nil)
		return err
	}
	for _, pan := range pans {
		if err := imp(pan); err != nil {
			t.Fatal(err)
		}
	}
	if err := imp(pans[0]); vault.KindOf(err) != vault.KindConflict {
		t.Fatalf("a repeated PAN within the import budget: %v, want the conflict", err)
	}
	if err := imp("4000056655665556"); vault.KindOf(err) != vault.KindRateLimited {
		t.Fatalf("a third PAN past the import budget: %v, want the budget's refusal", err)
	}
	if len(obs.failed) != 1 || obs.failed[0] != "card.import" {
		t.Errorf("audit write failures counted: %q, want one for card.import", obs.failed)
	}
	if !strings.Contains(logs.String(), "audit entry for a refusal not written") || !strings.Contains(logs.String(), "req-7") {
		t.Errorf("the failure is not logged with its request id: %s", logs.String())
	}
	for _, pan := range pans {
		if strings.Contains(logs.String(), pan[6:]) {
			t.Errorf("the log carries card data: %s", logs.String())
		}
	}
}
