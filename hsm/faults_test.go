package hsm

import (
	"context"
	"errors"
	"log/slog"
	"os"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cardvault/cardvault/softhsm"
	"github.com/miekg/pkcs11"
)

// faultyP11 passes the adapter's PKCS#11 calls to the real token, except
// that C_Decrypt can be made to fail with a return code for a number of
// calls, or to hang until released.
type faultyP11 struct {
	p11
	mu        sync.Mutex
	code      uint
	remaining int // calls still to fail; -1 until cleared
	hang      chan struct{}
	hung      atomic.Int32
	calls     atomic.Int32
}

// failDecrypt makes the next n calls of C_Decrypt (-1: every call until
// cleared) return code.
func (f *faultyP11) failDecrypt(code uint, n int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.code, f.remaining = code, n
}

func (f *faultyP11) Decrypt(sh pkcs11.SessionHandle, ct []byte) ([]byte, error) {
	f.calls.Add(1)
	f.mu.Lock()
	fail := f.remaining != 0
	if f.remaining > 0 {
		f.remaining--
	}
	code, hang := f.code, f.hang
	f.mu.Unlock()
	if hang != nil {
		f.hung.Add(1)
		<-hang
	}
	if fail {
		// The real call still runs, so the session's operation state is
		// what a failed C_Decrypt leaves: finished.
		_, _ = f.p11.Decrypt(sh, ct)
		return nil, pkcs11.Error(code)
	}
	return f.p11.Decrypt(sh, ct)
}

// openFaultyModule opens a fresh token with a card KEK through faultyP11.
func openFaultyModule(t *testing.T, cfg Config) (*Module, *faultyP11) {
	t.Helper()
	tok := softhsm.TestToken(t)
	cfg.Module, cfg.TokenLabel, cfg.PIN = tok.Module, tok.Label, tok.PIN
	cfg.Logger = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelError}))
	var f *faultyP11
	m, err := openWith(cfg, func(p p11) p11 {
		f = &faultyP11{p11: p}
		return f
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(m.Close)
	if err := m.Generate(context.Background(), CardKEK, 1); err != nil {
		t.Fatal(err)
	}
	return m, f
}

// TestFaultOutcomes injects each PKCS#11 failure a token can return into
// C_Decrypt under a reveal's Open, and checks the documented outcome:
// a lost session is replaced alone and a lost login renewed (a new
// generation logs in again), and the operation retried, so the caller
// sees nothing; a device fault fails closed as
// ErrUnavailable with no retry; a token that stays away fails closed after
// one reconnect. After each, the next Open works.
func TestFaultOutcomes(t *testing.T) {
	m, f := openFaultyModule(t, Config{})
	ctx := context.Background()
	sealed, _, err := m.Seal(ctx, []byte("card-1"), []byte("secret"))
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name       string
		code       uint
		times      int
		want       error // nil: the Open succeeds
		reconnects int64
	}{
		{"session handle invalid: retried on another session", pkcs11.CKR_SESSION_HANDLE_INVALID, 1, nil, 0},
		{"session closed: retried on another session", pkcs11.CKR_SESSION_CLOSED, 1, nil, 0},
		{"sessions keep dying: fails closed", pkcs11.CKR_SESSION_HANDLE_INVALID, -1, ErrUnavailable, 0},
		{"user not logged in: logged in again", pkcs11.CKR_USER_NOT_LOGGED_IN, 1, nil, 1},
		{"device removed once: reconnected", pkcs11.CKR_DEVICE_REMOVED, 1, nil, 1},
		{"token not present once: reconnected", pkcs11.CKR_TOKEN_NOT_PRESENT, 1, nil, 1},
		{"device removed for good: fails closed", pkcs11.CKR_DEVICE_REMOVED, -1, ErrUnavailable, 1},
		{"token not present for good: fails closed", pkcs11.CKR_TOKEN_NOT_PRESENT, -1, ErrUnavailable, 1},
		{"device error: fails closed, no retry", pkcs11.CKR_DEVICE_ERROR, -1, ErrUnavailable, 0},
		{"device memory: fails closed, no retry", pkcs11.CKR_DEVICE_MEMORY, -1, ErrUnavailable, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := m.Reconnects()
			f.failDecrypt(tc.code, tc.times)
			got, err := m.Open(ctx, []byte("card-1"), sealed)
			f.failDecrypt(0, 0)
			switch {
			case tc.want == nil && (err != nil || string(got) != "secret"):
				t.Fatalf("Open = %q, %v; want the plaintext", got, err)
			case tc.want != nil && !errors.Is(err, tc.want):
				t.Fatalf("Open = %v, want %v", err, tc.want)
			}
			if n := m.Reconnects() - before; n != tc.reconnects {
				t.Fatalf("%d reconnects, want %d", n, tc.reconnects)
			}
			if got, err := m.Open(ctx, []byte("card-1"), sealed); err != nil || string(got) != "secret" {
				t.Fatalf("Open after the fault cleared = %v", err)
			}
		})
	}
	// A tag mismatch is the input's fault: ErrCrypto, and no reconnect.
	before := m.Reconnects()
	tampered := append([]byte(nil), sealed...)
	tampered[len(tampered)-1] ^= 1
	if _, err := m.Open(ctx, []byte("card-1"), tampered); !errors.Is(err, ErrCrypto) {
		t.Fatalf("tampered Open = %v, want ErrCrypto", err)
	}
	if m.Reconnects() != before {
		t.Fatal("a tag mismatch caused a reconnect")
	}
}

// TestSlowCallAndSessionExhaustion hangs the token's C_Decrypt. A call
// that outlives the call timeout fails closed while the token still holds
// it; once every session slot is held by a hung call, the next operation
// fails closed too, without reaching the token. Released, the token serves
// again. Nothing here asserts on elapsed time: the outcomes are the errors
// and which calls reached the token.
func TestSlowCallAndSessionExhaustion(t *testing.T) {
	m, f := openFaultyModule(t, Config{MaxSessions: 2, CallTimeout: 200 * time.Millisecond})
	ctx := context.Background()
	sealed, _, err := m.Seal(ctx, []byte("card-1"), []byte("secret"))
	if err != nil {
		t.Fatal(err)
	}
	release := make(chan struct{})
	f.mu.Lock()
	f.hang = release
	f.mu.Unlock()
	for i := range 2 {
		if _, err := m.Open(ctx, []byte("card-1"), sealed); !errors.Is(err, ErrUnavailable) {
			t.Fatalf("hung call %d = %v, want ErrUnavailable", i, err)
		}
	}
	if f.hung.Load() != 2 {
		t.Fatalf("%d calls hung in the token, want 2", f.hung.Load())
	}
	calls := f.calls.Load()
	if _, err := m.Open(ctx, []byte("card-1"), sealed); !errors.Is(err, ErrUnavailable) {
		t.Fatalf("Open with every slot held = %v, want ErrUnavailable", err)
	}
	if f.calls.Load() != calls {
		t.Fatal("an operation reached the token although every session slot was held")
	}
	// A caller that gives up first hears its own context's error.
	cancelled, cancel := context.WithCancel(ctx)
	cancel()
	if _, err := m.Open(cancelled, []byte("card-1"), sealed); !errors.Is(err, context.Canceled) {
		t.Fatalf("Open with a cancelled context = %v", err)
	}

	f.mu.Lock()
	f.hang = nil
	f.mu.Unlock()
	close(release)
	// The hung calls give their slots back as they return.
	var got []byte
	for range 100 {
		if got, err = m.Open(ctx, []byte("card-1"), sealed); err == nil {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if err != nil || string(got) != "secret" {
		t.Fatalf("Open after release = %v", err)
	}
	if m.Reconnects() != 0 {
		t.Fatalf("slow calls caused %d reconnects", m.Reconnects())
	}
}
