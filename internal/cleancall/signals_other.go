//go:build !linux

package cleancall

// signalMask is empty where the thread's signal mask is not reached
// through rt_sigprocmask: only the registers are cleared there.
type signalMask struct{}

func blockSignals() signalMask { return signalMask{} }

func restoreSignals(signalMask) {}
