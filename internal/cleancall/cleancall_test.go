//go:build linux

package cleancall

import (
	"fmt"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

func blocked(t *testing.T, sig unix.Signal) bool {
	t.Helper()
	var cur unix.Sigset_t
	if err := unix.PthreadSigmask(unix.SIG_BLOCK, nil, &cur); err != nil {
		t.Fatal(err)
	}
	return cur.Val[(sig-1)/64]&(1<<((sig-1)%64)) != 0
}

// Inside a guard the runtime's preemption signal and every other
// asynchronous signal wait; faults do not; afterwards the thread's mask
// is what it was.
func TestGuardBlocksAsynchronousSignalsOnly(t *testing.T) {
	g := Begin()
	for _, sig := range []unix.Signal{unix.SIGURG, unix.SIGPROF, unix.SIGTERM, unix.SIGINT, unix.SIGCHLD, unix.SIGPIPE} {
		if !blocked(t, sig) {
			t.Errorf("%v is not blocked inside a guard", sig)
		}
	}
	for _, sig := range []unix.Signal{unix.SIGSEGV, unix.SIGBUS, unix.SIGFPE, unix.SIGILL, unix.SIGTRAP, unix.SIGSYS} {
		if blocked(t, sig) {
			t.Errorf("%v, a fault, is blocked inside a guard", sig)
		}
	}
	g.End()
	for _, sig := range []unix.Signal{unix.SIGURG, unix.SIGPROF, unix.SIGTERM} {
		if blocked(t, sig) {
			t.Errorf("%v is still blocked after the guard", sig)
		}
	}
}

// A signal sent inside a guard waits, pending on the thread, and is
// delivered after it: the guard delays signals and loses none (the Go
// runtime's preemption depends on them).
func TestGuardDelaysSignalsWithoutLosingThem(t *testing.T) {
	c := make(chan os.Signal, 1)
	signal.Notify(c, unix.SIGUSR1)
	defer signal.Stop(c)
	g := Begin()
	tid := unix.Gettid()
	if err := unix.Tgkill(unix.Getpid(), tid, unix.SIGUSR1); err != nil {
		t.Fatal(err)
	}
	pending := threadStatus(t, tid, "SigPnd")
	g.End()
	if pending&(1<<(unix.SIGUSR1-1)) == 0 {
		t.Fatalf("SIGUSR1 is not pending on the thread inside the guard (SigPnd %x)", pending)
	}
	<-c
}

// threadStatus reads a hex mask field of /proc/self/task/TID/status.
func threadStatus(t *testing.T, tid int, field string) uint64 {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/self/task/%d/status", tid))
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, field+":"); ok {
			n, err := strconv.ParseUint(strings.TrimSpace(v), 16, 64)
			if err != nil {
				t.Fatal(err)
			}
			return n
		}
	}
	t.Fatalf("no %s in the thread's status", field)
	return 0
}

func TestRegistersNamesTheClearedSet(t *testing.T) {
	switch Registers() {
	case "avx512", "avx", "sse", "neon", "none":
	default:
		t.Fatalf("Registers() = %q", Registers())
	}
}

// BenchmarkGuard is the cost a guard adds to each call it wraps: two
// rt_sigprocmask system calls, the thread lock and the register clear.
// hsm's BenchmarkOpen and BenchmarkHMAC are the calls it wraps.
func BenchmarkGuard(b *testing.B) {
	for b.Loop() {
		Begin().End()
	}
}
