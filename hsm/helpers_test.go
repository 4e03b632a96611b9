package hsm

import (
	"context"
	"log/slog"
	"os"
	"testing"

	"github.com/cardvault/cardvault/softhsm"
)

// openTestModule opens a fresh token with no keys.
func openTestModule(t testing.TB) (*Module, *softhsm.Token) {
	t.Helper()
	tok := softhsm.TestToken(t)
	m, err := Open(Config{
		Module:     tok.Module,
		TokenLabel: tok.Label,
		PIN:        tok.PIN,
		Logger:     slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn})),
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(m.Close)
	return m, tok
}

// openKeyedModule opens a fresh token holding version 1 of the symmetric
// keys (RSA generation takes about a second, so it is opt-in).
func openKeyedModule(t testing.TB, purposes ...Purpose) *Module {
	t.Helper()
	m, _ := openTestModule(t)
	if len(purposes) == 0 {
		purposes = []Purpose{CardKEK, PANHMAC, PEK, Audit}
	}
	for _, p := range purposes {
		if err := m.Generate(context.Background(), p, 1); err != nil {
			t.Fatal(err)
		}
	}
	return m
}
