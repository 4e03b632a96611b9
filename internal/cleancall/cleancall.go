// Package cleancall runs the C calls that carry clear card data (the
// token's C_Encrypt, C_Decrypt and C_Sign; libcrypto's RSA encryption)
// so that none of that data is left in the Go heap by signal delivery.
//
// A signal that arrives on a thread is handled on the Go runtime's signal
// stack, which is Go heap, and the kernel first saves the interrupted
// registers there, vector registers included. The Go runtime sends its own
// preemption signal (SIGURG) to threads as a matter of course. Two things
// follow. A signal during a C call saves whatever the library's memcpy or
// cipher code holds at that instant: a PIN block, an opened card record.
// And registers the C code filled keep their contents after it returns
// (Go code never touches zmm16–31), so any later signal on the thread
// saves them again. Nothing ever clears the signal stack: a PIN block
// sat in the Go heap after a PIN set (TestLeakScan, and
// hsm.TestTokenCallsLeaveNoClearDataInSignalFrames, which sees it on
// every run without this package).
//
// A Guard keeps the call on one thread with asynchronous signals blocked,
// and clears the registers before it lets them in again: a signal that
// came meanwhile is delivered after the clear, onto registers that hold
// nothing. Faults (SIGSEGV, SIGBUS, SIGFPE, SIGILL, SIGTRAP, SIGSYS)
// stay unblocked: they must still crash the process with a report.
package cleancall

import "runtime"

// Guard is one guarded call: Begin before the C call, End right after.
type Guard struct {
	saved signalMask
}

// Begin locks the goroutine to its thread and blocks asynchronous signals
// on it.
func Begin() Guard {
	runtime.LockOSThread()
	return Guard{saved: blockSignals()}
}

// End clears the registers the call may have left clear data in, then
// restores the thread's signals and unlocks it.
func (g Guard) End() {
	clearRegisters()
	restoreSignals(g.saved)
	runtime.UnlockOSThread()
}

// Registers names the registers End clears on this machine, for the
// server's start-up log.
func Registers() string { return registerSet }
