//go:build linux

package cleancall

import (
	"golang.org/x/sys/unix"
)

type signalMask = unix.Sigset_t

// asyncSignals is every signal but the synchronous faults, which a
// thread must never block (the kernel kills a process that faults with
// them blocked, without Go's crash report).
var asyncSignals = func() unix.Sigset_t {
	var set unix.Sigset_t
	for sig := 1; sig <= 64; sig++ {
		switch unix.Signal(sig) {
		case unix.SIGSEGV, unix.SIGBUS, unix.SIGFPE, unix.SIGILL, unix.SIGTRAP, unix.SIGSYS:
			continue
		}
		set.Val[(sig-1)/64] |= 1 << ((sig - 1) % 64)
	}
	return set
}()

func blockSignals() signalMask {
	var old unix.Sigset_t
	// rt_sigprocmask cannot fail with a valid how and set.
	_ = unix.PthreadSigmask(unix.SIG_BLOCK, &asyncSignals, &old)
	return old
}

func restoreSignals(old signalMask) {
	_ = unix.PthreadSigmask(unix.SIG_SETMASK, &old, nil)
}
