package cleancall

import "golang.org/x/sys/cpu"

var registerSet = func() string {
	switch {
	case cpu.X86.HasAVX512F:
		return "avx512"
	case cpu.X86.HasAVX:
		return "avx"
	}
	return "sse"
}()

func clearRegisters() { clearVectors(cpu.X86.HasAVX512F, cpu.X86.HasAVX) }

// clearVectors zeroes every vector register the CPU has (zmm0–31 and the
// opmask registers with AVX-512; ymm0–15 with AVX; xmm0–15 otherwise)
// and the general registers a C call may leave data in.
func clearVectors(avx512, avx bool)
