// Package nsstoken makes a fresh NSS softokn token for a test: the second,
// independently written PKCS#11 implementation cardvault runs on beside
// SoftHSM2.
package nsstoken

import (
	_ "embed"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/cardvault/cardvault/internal/testsupport/testenv"
)

//go:embed nssinit_shim.c.src
var shimSource []byte

// Softokn is where Debian's libnss3 installs NSS's PKCS#11 module.
const Softokn = "/usr/lib/x86_64-linux-gnu/libsoftokn3.so"

// Label is the token NSS's database presents to the user.
const Label = "NSS Certificate DB"

// Token is a fresh NSS database behind the shim module.
type Token struct {
	Module string   // the shim, a PKCS#11 module path
	PIN    string   // the database password
	Env    []string // what a process needs in its environment to use it
}

// New makes an NSS database in a temporary directory with certutil and
// builds the shim that hands softokn its configuration. Under CI=true a
// missing certutil, C compiler or softokn fails the test.
func New(t testing.TB) *Token {
	t.Helper()
	certutil := testenv.RequireCommand(t, "certutil")
	cc := testenv.RequireCommand(t, "cc")
	if _, err := os.Stat(Softokn); err != nil {
		testenv.Require(t, "NSS softokn (libnss3)", err)
	}
	dir := t.TempDir()
	db := filepath.Join(dir, "db")
	if err := os.MkdirAll(db, 0o700); err != nil {
		t.Fatal(err)
	}
	tok := &Token{PIN: "nss-test-password"}
	pw := filepath.Join(dir, "password")
	if err := os.WriteFile(pw, []byte(tok.PIN+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command(certutil, "-N", "-d", "sql:"+db, "-f", pw).CombinedOutput(); err != nil {
		t.Fatalf("certutil -N: %v\n%s", err, out)
	}
	src := filepath.Join(dir, "shim.c")
	if err := os.WriteFile(src, shimSource, 0o600); err != nil {
		t.Fatal(err)
	}
	tok.Module = filepath.Join(dir, "libnssshim.so")
	if out, err := exec.Command(cc, "-shared", "-fPIC", "-O2", "-o", tok.Module, src, "-ldl").CombinedOutput(); err != nil {
		t.Fatalf("cc shim: %v\n%s", err, out)
	}
	tok.Env = []string{
		"CARDVAULT_NSS_SOFTOKN=" + Softokn,
		fmt.Sprintf("CARDVAULT_NSS_INIT=configdir='sql:%s' certPrefix='' keyPrefix='' secmod='secmod.db' flags=", db),
	}
	return tok
}
