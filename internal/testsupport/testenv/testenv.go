// Package testenv holds what tests share about their environment: the rule
// that, under CI=true, a missing dependency fails the test instead of
// skipping it.
package testenv

import (
	"net"
	"os"
	"os/exec"
	"testing"
)

// CI reports whether the tests run in CI, where nothing may be skipped for
// want of a dependency.
func CI() bool { return os.Getenv("CI") == "true" }

// Require fails the test under CI, and skips it elsewhere, when err says a
// dependency is missing.
func Require(t testing.TB, what string, err error) {
	t.Helper()
	if err == nil {
		return
	}
	if CI() {
		t.Fatalf("%s is required under CI=true: %v", what, err)
	}
	t.Skipf("%s not available: %v", what, err)
}

// RequireCommand is Require for a program on PATH; it returns its path.
func RequireCommand(t testing.TB, name string) string {
	t.Helper()
	path, err := exec.LookPath(name)
	Require(t, name, err)
	return path
}

// FreePort finds a loopback port nobody listens on now.
func FreePort(t testing.TB) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}
