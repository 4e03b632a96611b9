// Package openssltest builds what the vault reads from outside with the
// openssl command line, sharing no code with the vault: ANSI X9.143
// (TR-31) version D key blocks (the KBPK derivation and the MAC by
// `openssl mac CMAC`, the key data's encryption by `openssl enc
// -aes-N-cbc -nopad`) and ISO 9564-1 format 4 PIN blocks (`openssl enc
// -aes-N-ecb -nopad`).
package openssltest

import (
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// Block wraps key under kbpk (an AES key of 16, 24 or 32 bytes) with the
// given 16-character or longer header, whose length field it fills in.
func Block(t testing.TB, kbpk []byte, header string, key []byte) string {
	t.Helper()
	alg := map[int]byte{16: 2, 24: 3, 32: 4}[len(kbpk)]
	bits := len(kbpk) * 8
	derive := func(usage byte) []byte {
		var out []byte
		for i := byte(1); len(out) < len(kbpk); i++ {
			out = append(out, CMAC(t, kbpk, []byte{i, 0, usage, 0, 0, alg, byte(bits >> 8), byte(bits)})...)
		}
		return out[:len(kbpk)]
	}
	kbek, kbak := derive(0), derive(1)
	// The key's length in bits, the key, random padding to whole blocks.
	plain := append([]byte{byte(len(key) * 8 >> 8), byte(len(key) * 8)}, key...)
	pad := make([]byte, (16-len(plain)%16)%16)
	if _, err := rand.Read(pad); err != nil {
		t.Fatal(err)
	}
	plain = append(plain, pad...)
	total := len(header) + 2*len(plain) + 32
	header = header[:1] + fmt.Sprintf("%04d", total) + header[5:]
	mac := CMAC(t, kbak, append([]byte(header), plain...))
	ct := run(t, plain, "enc", fmt.Sprintf("-aes-%d-cbc", len(kbek)*8), "-nopad", "-K", hex.EncodeToString(kbek), "-iv", hex.EncodeToString(mac))
	return header + strings.ToUpper(hex.EncodeToString(ct)+hex.EncodeToString(mac))
}

// CMAC is `openssl mac -cipher AES-N-CBC CMAC` of msg under key.
func CMAC(t testing.TB, key, msg []byte) []byte {
	t.Helper()
	in := filepath.Join(t.TempDir(), "msg")
	if err := os.WriteFile(in, msg, 0o600); err != nil {
		t.Fatal(err)
	}
	out := run(t, nil, "mac", "-cipher", fmt.Sprintf("AES-%d-CBC", len(key)*8), "-macopt", "hexkey:"+hex.EncodeToString(key), "-in", in, "CMAC")
	b, err := hex.DecodeString(strings.TrimSpace(string(out)))
	if err != nil {
		t.Fatalf("openssl mac printed %q", out)
	}
	return b
}

// ECB is `openssl enc -aes-N-ecb -nopad` of whole blocks under key.
func ECB(t testing.TB, key, plain []byte) []byte {
	t.Helper()
	return run(t, plain, "enc", fmt.Sprintf("-aes-%d-ecb", len(key)*8), "-nopad", "-K", hex.EncodeToString(key))
}

// Format4PINBlock is an ISO 9564-1 format 4 PIN block for pin and pan
// under key: the PIN field 4|N|PIN|A fill|8 random bytes enciphered, the
// PAN field (M = PAN length - 12, the PAN, 0 fill) added, enciphered
// again.
func Format4PINBlock(t testing.TB, key []byte, pin, pan string) []byte {
	t.Helper()
	field, err := hex.DecodeString("4" + fmt.Sprintf("%X", len(pin)) + pin + strings.Repeat("A", 14-len(pin)))
	if err != nil {
		t.Fatalf("PIN %q: %v", pin, err)
	}
	random := make([]byte, 8)
	if _, err := rand.Read(random); err != nil {
		t.Fatal(err)
	}
	field = append(field, random...)
	m := len(pan) - 12
	if m < 0 {
		pan, m = strings.Repeat("0", -m)+pan, 0
	}
	panField, err := hex.DecodeString(fmt.Sprintf("%X", m) + pan + strings.Repeat("0", 31-len(pan)))
	if err != nil {
		t.Fatalf("PAN field: %v", err)
	}
	intermediate := ECB(t, key, field)
	for i := range intermediate {
		intermediate[i] ^= panField[i]
	}
	return ECB(t, key, intermediate)
}

func run(t testing.TB, stdin []byte, args ...string) []byte {
	t.Helper()
	cmd := exec.Command("openssl", args...)
	cmd.Stdin = bytes.NewReader(stdin)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("openssl %s: %v\n%s", strings.Join(args, " "), err, stderr.String())
	}
	return out
}
