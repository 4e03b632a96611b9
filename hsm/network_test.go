package hsm

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/cardvault/cardvault/internal/testsupport/netshim"
	"github.com/cardvault/cardvault/softhsm"
)

// codeCounter is an Observer that counts PKCS#11 return codes and
// operation outcomes.
type codeCounter struct {
	mu       sync.Mutex
	codes    map[string]int
	outcomes map[string]int
}

func (c *codeCounter) Call(_, outcome string, _ time.Duration) {
	c.mu.Lock()
	c.outcomes[outcome]++
	c.mu.Unlock()
}
func (c *codeCounter) SlotWait(time.Duration) {}
func (c *codeCounter) PKCS11Error(code string) {
	c.mu.Lock()
	c.codes[code]++
	c.mu.Unlock()
}

func (c *codeCounter) count(code string) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.codes[code]
}

// TestNetworkHSM runs the adapter on SoftHSM2 behind netshim, a
// pass-through PKCS#11 module that behaves as a network HSM (issue 28):
// 500 µs on every call, a partition capped at 8 sessions (3, when the cap
// is hidden from the token info), and a session
// dropped every 300 calls. Sixteen callers seal, open and MAC at once.
// Every operation must succeed: a dropped session is replaced alone and
// its operation retried on another, the pool stays within the cap, and
// nothing re-initialises the module while calls are inside it (which
// crashed the process, SIGSEGV in C_SignInit).
func TestNetworkHSM(t *testing.T) {
	if onNSS() {
		t.Skip("the network is simulated over SoftHSM2; NSS softokn runs the rest of the package")
	}
	for _, tc := range []struct {
		name string
		net  netshim.Network
	}{
		{"the cap in the token info", netshim.Network{Delay: 500 * time.Microsecond, MaxSessions: 8, DropEvery: 300}},
		// Three sessions, two of them crypto11's: any two operations at
		// once meet the hidden cap, however fast the machine runs them.
		{"the cap learnt from CKR_SESSION_COUNT", netshim.Network{Delay: 500 * time.Microsecond, MaxSessions: 3, HideMax: true, DropEvery: 300}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tok := softhsm.TestToken(t)
			tc.net.Module = tok.Module
			dir := t.TempDir()
			shim, err := netshim.Build(dir, tc.net)
			if err != nil {
				t.Fatal(err)
			}
			m, err := Open(Config{
				Module: shim, TokenLabel: tok.Label, PIN: tok.PIN,
				Logger: slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelError})),
			})
			if err != nil {
				t.Fatal(err)
			}
			defer m.Close()
			ctx := context.Background()
			for _, p := range []Purpose{CardKEK, PANHMAC} {
				if err := m.Generate(ctx, p, 1); err != nil {
					t.Fatal(err)
				}
			}
			obs := &codeCounter{codes: map[string]int{}, outcomes: map[string]int{}}
			m.SetObserver(obs)

			const callers, rounds = 16, 60
			errs := make(chan error, callers*rounds)
			var wg sync.WaitGroup
			for c := range callers {
				wg.Add(1)
				go func() {
					defer wg.Done()
					for r := range rounds {
						errs <- roundTrip(ctx, m, fmt.Sprintf("card-%d-%d", c, r))
					}
				}()
			}
			wg.Wait()
			close(errs)
			failed := 0
			for err := range errs {
				if err != nil {
					if failed == 0 {
						t.Errorf("first failure: %v", err)
					}
					failed++
				}
			}
			reconnects, sessions := m.Reconnects(), m.Slots()
			m.Close() // finalises the library, which writes the shim's stats
			stats, err := netshim.ReadStats(dir)
			if err != nil {
				t.Fatal(err)
			}
			t.Logf("outcomes %v, return codes %v, reconnects %d, sessions %d, shim %+v", obs.outcomes, obs.codes, reconnects, sessions, stats)
			if failed > 0 {
				t.Fatalf("%d of %d round trips failed", failed, callers*rounds)
			}
			if stats.Dropped == 0 || obs.count("CKR_SESSION_HANDLE_INVALID") == 0 {
				t.Fatal("no session was dropped: the shim is not beneath the adapter")
			}
			if reconnects != 0 {
				t.Fatalf("%d new generations for dropped sessions, want 0", reconnects)
			}
			switch {
			case !tc.net.HideMax && stats.Refused != 0:
				t.Fatalf("the pool asked for a session past the cap the token reported %d times", stats.Refused)
			case tc.net.HideMax && stats.Refused == 0:
				t.Fatal("the token never refused a session: the hidden cap was not reached")
			}
		})
	}
}

// roundTrip seals, opens and MACs one value.
func roundTrip(ctx context.Context, m *Module, id string) error {
	sealed, _, err := m.Seal(ctx, []byte(id), []byte("secret "+id))
	if err != nil {
		return fmt.Errorf("seal: %w", err)
	}
	got, err := m.Open(ctx, []byte(id), sealed)
	if err != nil {
		return fmt.Errorf("open: %w", err)
	}
	if !bytes.Equal(got, []byte("secret "+id)) {
		return fmt.Errorf("open: got another plaintext")
	}
	if _, _, err := m.MAC(ctx, PANHMAC, []byte(id)); err != nil {
		return fmt.Errorf("mac: %w", err)
	}
	return nil
}
