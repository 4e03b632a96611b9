//go:build !amd64 && !arm64

package cleancall

// registerSet says that End clears no registers on this architecture:
// the signal blocking still keeps a call's registers out of the Go heap
// while it runs.
const registerSet = "none"

func clearRegisters() {}
