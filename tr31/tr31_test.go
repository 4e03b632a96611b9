package tr31

import (
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/cardvault/cardvault/internal/testsupport/openssltest"
	"github.com/cardvault/cardvault/internal/testsupport/testenv"
)

func mustHex(t *testing.T, s string) []byte {
	t.Helper()
	b, err := hex.DecodeString(strings.ReplaceAll(s, " ", ""))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TR-31:2018 (ANSI X9.143) annex A.7.4: an AES-128 PIN encryption key
// under an AES-256 KBPK.
func TestUnwrapStandardExample(t *testing.T) {
	kbpk := mustHex(t, "88E1AB2A2E3DD38C1FA039A536500CC8A87AB9D62DC92C01058FA79F44657DE6")
	block := "D0112P0AE00E0000B82679114F470F540165EDFBF7E250FCEA43F810D215F8D207E2E417C07156A27E8E31DA05F7425509593D03A457DC34"
	h, key, err := Unwrap(kbpk, block)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(key, mustHex(t, "3F419E1CB7079442AA37474C2EFBF8B8")) {
		t.Errorf("key %X", key)
	}
	if h.Usage != "P0" || h.Algorithm != 'A' || h.ModeOfUse != 'E' || h.KeyVersion != "00" || h.Exportability != 'E' || len(h.Optional) != 0 {
		t.Errorf("header %+v", h)
	}
}

// RFC 4493 section 4's AES-CMAC examples.
func TestCMACRFC4493(t *testing.T) {
	key := mustHex(t, "2b7e1516 28aed2a6 abf71588 09cf4f3c")
	msg := mustHex(t, "6bc1bee2 2e409f96 e93d7e11 7393172a ae2d8a57 1e03ac9c 9eb76fac 45af8e51 30c81c46 a35ce411 e5fbc119 1a0a52ef f69f2445 df4f9b17 ad2b417b e66c3710")
	for n, want := range map[int]string{
		0:  "bb1d6929 e9593728 7fa37d12 9b756746",
		16: "070a16b4 6b4d4144 f79bdd9d d04a287c",
		40: "dfa66747 de9ae630 30ca3261 1497c827",
		64: "51f0bebf 7e3b9d92 fc497417 79363cfe",
	} {
		got, err := cmac(key, msg[:n])
		if err != nil || !bytes.Equal(got, mustHex(t, want)) {
			t.Errorf("CMAC of %d bytes: %x (%v), want %s", n, got, err, want)
		}
	}
}

func random(n int) []byte {
	b := make([]byte, n)
	rand.Read(b)
	return b
}

func TestUnwrapBlocksBuiltByOpenSSL(t *testing.T) {
	testenv.RequireCommand(t, "openssl")
	for _, c := range []struct {
		name         string
		kbpk, key    int
		header       string
		wantOptional []OptionalBlock
	}{
		{"AES-256 zone key under an AES-256 KBPK", 32, 32, "D0000P0AD00N0000", nil},
		{"AES-128 key under an AES-128 KBPK", 16, 16, "D0000P0AB00E0000", nil},
		{"AES-192 key under an AES-192 KBPK", 24, 24, "D0000P0AD01S0000", nil},
		// A key set identifier block and a PB block padding the header to
		// 32 characters.
		{"with optional blocks", 32, 32, "D0000P0AD00N0200KS0CABCDEF01PB04", []OptionalBlock{{"KS", "ABCDEF01"}, {"PB", ""}}},
	} {
		t.Run(c.name, func(t *testing.T) {
			kbpk, key := random(c.kbpk), random(c.key)
			block := openssltest.Block(t, kbpk, c.header, key)
			h, got, err := Unwrap(kbpk, block)
			if err != nil {
				t.Fatalf("%s: %v", block, err)
			}
			if !bytes.Equal(got, key) || h.Usage != "P0" || h.Algorithm != 'A' || h.ModeOfUse != c.header[8] {
				t.Errorf("key equal %v, header %+v", bytes.Equal(got, key), h)
			}
			if fmt.Sprint(h.Optional) != fmt.Sprint(c.wantOptional) {
				t.Errorf("optional blocks %v, want %v", h.Optional, c.wantOptional)
			}
		})
	}
	// CMAC agrees with openssl's on every length around the block size.
	key := random(32)
	for n := 0; n <= 49; n++ {
		msg := random(n)
		if got, _ := cmac(key, msg); !bytes.Equal(got, openssltest.CMAC(t, key, msg)) {
			t.Errorf("CMAC of %d bytes differs from openssl's", n)
		}
	}
}

func TestUnwrapRefusals(t *testing.T) {
	kbpk := mustHex(t, "88E1AB2A2E3DD38C1FA039A536500CC8A87AB9D62DC92C01058FA79F44657DE6")
	good := "D0112P0AE00E0000B82679114F470F540165EDFBF7E250FCEA43F810D215F8D207E2E417C07156A27E8E31DA05F7425509593D03A457DC34"
	flip := func(s string, i int) string {
		c := byte('0')
		if s[i] == '0' {
			c = '1'
		}
		return s[:i] + string(c) + s[i+1:]
	}
	otherKBPK := append([]byte(nil), kbpk...)
	otherKBPK[0] ^= 1
	for _, c := range []struct {
		name, block string
		kbpk        []byte
		want        string // "" for ErrVerify
	}{
		{"a wrong KBPK", good, otherKBPK, ""},
		{"the mode of use changed", good[:8] + "D" + good[9:], kbpk, ""},
		{"the key data changed", flip(good, 20), kbpk, ""},
		{"the MAC changed", flip(good, len(good)-1), kbpk, ""},
		{"version B", "B" + good[1:], kbpk, "only version D"},
		{"a wrong length", "D0113" + good[5:], kbpk, "the header says"},
		{"truncated", good[:len(good)-2], kbpk, "the header says"},
		{"a short header", "D0012P0", kbpk, "shorter than its header"},
		{"not hexadecimal", good[:20] + "ZZ" + good[22:], kbpk, "not hexadecimal"},
		{"an optional block past the end", "D0112P0AE00E0100KS99" + good[20:], kbpk, "optional block 1"},
		{"a KBPK of 20 bytes", good, make([]byte, 20), "a KBPK of 20 bytes"},
		{"a control character", good[:30] + "\n" + good[31:], kbpk, "not printable"},
	} {
		_, key, err := Unwrap(c.kbpk, c.block)
		switch {
		case err == nil:
			t.Errorf("%s: unwrapped %X", c.name, key)
		case c.want == "" && !errors.Is(err, ErrVerify):
			t.Errorf("%s: %v, want ErrVerify", c.name, err)
		case c.want != "" && !strings.Contains(err.Error(), c.want):
			t.Errorf("%s: %v, want %q", c.name, err, c.want)
		}
	}
}
