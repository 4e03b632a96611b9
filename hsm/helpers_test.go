package hsm

import (
	"bytes"
	"context"
	"log/slog"
	"os"
	"strings"
	"testing"

	"github.com/cardvault/cardvault/internal/testsupport/nsstoken"
	"github.com/cardvault/cardvault/softhsm"
)

// testToken is the token a test runs on: SoftHSM2, or NSS softokn when
// CARDVAULT_TEST_PKCS11=nss (scripts/test.sh runs this package on both).
type testToken struct {
	Module, Label, PIN string
	Env                []string // what another process needs to reach it
}

// onNSS says whether this run of the package is on NSS softokn.
func onNSS() bool { return os.Getenv("CARDVAULT_TEST_PKCS11") == "nss" }

func newTestToken(t testing.TB) *testToken {
	t.Helper()
	if onNSS() {
		tok := nsstoken.New(t)
		for _, e := range tok.Env {
			k, v, _ := strings.Cut(e, "=")
			t.Setenv(k, v)
		}
		return &testToken{Module: tok.Module, Label: nsstoken.Label, PIN: tok.PIN, Env: tok.Env}
	}
	tok := softhsm.TestToken(t)
	return &testToken{Module: tok.Module, Label: tok.Label, PIN: tok.PIN, Env: []string{"SOFTHSM2_CONF=" + tok.Conf}}
}

// openTestModule opens a fresh token with no keys.
func openTestModule(t testing.TB) (*Module, *testToken) {
	t.Helper()
	tok := newTestToken(t)
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

// keyedToken is a fresh token holding version 1 of the symmetric keys,
// for tests that open it more than once.
type keyedToken struct {
	module, label, pin string
}

func openKeyedModuleToken(t *testing.T) *keyedToken {
	t.Helper()
	m, tok := openTestModule(t)
	for _, p := range []Purpose{CardKEK, PANHMAC, PEK, Audit} {
		if err := m.Generate(context.Background(), p, 1); err != nil {
			t.Fatal(err)
		}
	}
	m.Close()
	return &keyedToken{module: tok.Module, label: tok.Label, pin: tok.PIN}
}

// open opens the token with a catalog pinned, or none.
func (k *keyedToken) open(t *testing.T, catalog KeyRecords) *Module {
	t.Helper()
	cfg := Config{Module: k.module, TokenLabel: k.label, PIN: k.pin}
	if catalog != nil {
		cfg.Catalog = catalog
	}
	m, err := Open(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(m.Close)
	return m
}

// implicitRejection says whether the token answers a PKCS#1 v1.5
// ciphertext with bad padding with a stand-in message instead of an error,
// as NSS softokn does (its countermeasure to Bleichenbacher-style
// oracles). The vault never needs that error: the PIN path decrypts with
// raw RSA and decodes in constant time.
func implicitRejection(pad RSAPadding) bool { return onNSS() && pad == PKCS1v15 }

// refused checks a decryption of a bad ciphertext: ErrCrypto, or on a
// token with implicit rejection, a stand-in that is not the message.
func refused(pad RSAPadding, got []byte, err error, msg []byte) bool {
	if implicitRejection(pad) && err == nil {
		return !bytes.Equal(got, msg)
	}
	return err == ErrCrypto
}
