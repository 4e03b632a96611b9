//go:build faultinject

package hsm

// RestartUnderneath finalises and re-initialises the PKCS#11 library, which
// ends every session and the login, as a restarted HSM looks to its
// client. The adapter is not told: its next calls fail with session-class
// codes and it must recover on its own.
//
// It waits until no call is inside the library. SoftHSM2 runs in this
// process, and finalising it while another thread is inside a call
// crashes the process (measured: SIGSEGV in C_SignInit), which a network
// HSM restarting would never do to its client. It exists for the bench's
// load-under-faults run.
func (m *Module) RestartUnderneath() error {
	c, err := m.current()
	if err != nil {
		return err
	}
	c.inflight.Lock()
	defer c.inflight.Unlock()
	if err := m.raw.Finalize(); err != nil {
		return err
	}
	return m.raw.Initialize()
}
