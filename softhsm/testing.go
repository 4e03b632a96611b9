package softhsm

import (
	"testing"

	"github.com/cardvault/cardvault/internal/testsupport/testenv"
)

// TestToken makes a fresh token in t.TempDir() and points SOFTHSM2_CONF at
// it for the rest of the test. Tests that use it cannot run in parallel:
// SoftHSM2 reads the variable once per C_Initialize.
func TestToken(t testing.TB) *Token {
	t.Helper()
	testenv.Require(t, "SoftHSM2", Available())
	tok, err := NewToken(t.TempDir(), "cardvault-test")
	if err != nil {
		t.Fatal(err)
	}
	t.Setenv("SOFTHSM2_CONF", tok.Conf)
	return tok
}
