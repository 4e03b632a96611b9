// Package netshim builds a pass-through PKCS#11 module (c/netshim.c) that
// makes a local token behave as a network HSM does to its client: a delay
// on every call, a cap on open sessions and sessions dropped now and then.
// It sits below C_GetFunctionList, so the adapter's real C calls, and
// crypto11's, are what meets the faults. It is for tests and the chaos
// scenarios; the settings are compiled into each build, so two shims in
// one process keep separate state.
package netshim

import (
	_ "embed"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"time"
)

//go:embed c/netshim.c
var source []byte

// Network describes the network HSM the shim pretends to be.
type Network struct {
	Module      string        // the real PKCS#11 module beneath
	Delay       time.Duration // added to every call that crosses the network
	MaxSessions int           // open sessions the partition allows; 0: no cap
	// HideMax keeps the cap out of C_GetTokenInfo's ulMaxSessionCount,
	// as some vendors' client libraries do: the client then learns it
	// only from CKR_SESSION_COUNT.
	HideMax bool
	// DropEvery drops the session of every DropEvery-th call on a
	// session; 0 never.
	DropEvery int
}

// Stats is what the shim did, as it wrote it when the library was
// finalised.
type Stats struct {
	Refused int // C_OpenSession calls answered CKR_SESSION_COUNT
	Dropped int // sessions dropped beneath their client
}

// ReadStats reads the stats of the shim built into dir; the library must
// have been finalised (every client closed).
func ReadStats(dir string) (Stats, error) {
	var s Stats
	b, err := os.ReadFile(filepath.Join(dir, "stats"))
	if err != nil {
		return s, fmt.Errorf("netshim: no stats (was the library finalised?): %w", err)
	}
	_, err = fmt.Sscanf(string(b), "refused=%d dropped=%d", &s.Refused, &s.Dropped)
	return s, err
}

// Build compiles the shim for n into dir and returns the module's path.
func Build(dir string, n Network) (string, error) {
	if n.Module == "" {
		return "", fmt.Errorf("netshim: no module beneath")
	}
	src := filepath.Join(dir, "netshim.c")
	if err := os.WriteFile(src, source, 0o600); err != nil {
		return "", err
	}
	out := filepath.Join(dir, "libnetshim.so")
	hide := 0
	if n.HideMax {
		hide = 1
	}
	cmd := exec.Command("gcc", "-shared", "-fPIC", "-O2", "-Wall", "-Werror",
		"-I/usr/include/p11-kit-1",
		fmt.Sprintf("-DNETSHIM_MODULE=%q", n.Module),
		fmt.Sprintf("-DNETSHIM_STATS=%q", filepath.Join(dir, "stats")),
		fmt.Sprintf("-DNETSHIM_DELAY_US=%d", n.Delay.Microseconds()),
		fmt.Sprintf("-DNETSHIM_MAX_SESSIONS=%d", n.MaxSessions),
		fmt.Sprintf("-DNETSHIM_HIDE_MAX=%d", hide),
		fmt.Sprintf("-DNETSHIM_DROP_EVERY=%d", n.DropEvery),
		"-o", out, src, "-ldl", "-lpthread")
	if msg, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("netshim: gcc: %v: %s (the p11-kit header comes with libp11-kit-dev)", err, msg)
	}
	return out, nil
}
