//go:build faultinject

package main

import (
	"fmt"
	"os"
	"strconv"
	"syscall"

	"github.com/cardvault/cardvault/hsm"
)

// This file is built only with -tags faultinject: the bench's
// load-under-faults run and the rewrap crash test use it, and the product
// (Dockerfile, scripts/dev.sh, a plain go build) carries none of it.

// faultInjection says this binary can inject faults.
const faultInjection = true

// envRewrapKillAfter makes a rewrap SIGKILL itself after moving this many
// records in memory, before storing their batch, so the crash-resume test
// can show that a resumed run loses nothing.
const envRewrapKillAfter = "CARDVAULT_TEST_REWRAP_KILL_AFTER"

// restartUnderneath restarts the PKCS#11 library under the running server.
func restartUnderneath(m *hsm.Module) error { return m.RestartUnderneath() }

// rewrapKillHook is the AfterMove hook envRewrapKillAfter asks for, or nil.
func rewrapKillHook() (func(int), error) {
	killAfter := 0
	if v := os.Getenv(envRewrapKillAfter); v != "" {
		var err error
		if killAfter, err = strconv.Atoi(v); err != nil {
			return nil, fmt.Errorf("%s: want a whole number: %w", envRewrapKillAfter, err)
		}
	}
	if killAfter == 0 {
		return nil, nil
	}
	moved := 0
	return func(int) {
		if moved++; moved == killAfter {
			_ = syscall.Kill(os.Getpid(), syscall.SIGKILL)
			select {} // the signal arrives; nothing after it runs
		}
	}, nil
}
