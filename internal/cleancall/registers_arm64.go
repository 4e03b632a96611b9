package cleancall

const registerSet = "neon"

func clearRegisters() { clearVectors() }

// clearVectors zeroes v0–v31 and the general registers a C call may
// leave data in.
func clearVectors()
