package bench

import (
	"bufio"
	"os"
	"strconv"
	"strings"
)

// resetPeakRSS starts a new peak-resident-memory measurement for this
// process (Linux: writing 5 to clear_refs resets VmHWM).
func resetPeakRSS() {
	_ = os.WriteFile("/proc/self/clear_refs", []byte("5"), 0)
}

// peakRSSMiB is this process's peak resident memory since the last reset,
// in MiB; 0 where /proc does not say.
func peakRSSMiB() float64 {
	f, err := os.Open("/proc/self/status")
	if err != nil {
		return 0
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if rest, ok := strings.CutPrefix(sc.Text(), "VmHWM:"); ok {
			kb, err := strconv.ParseFloat(strings.TrimSuffix(strings.TrimSpace(rest), " kB"), 64)
			if err != nil {
				return 0
			}
			return kb / 1024
		}
	}
	return 0
}
