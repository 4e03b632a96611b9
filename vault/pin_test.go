package vault

import (
	"bytes"
	"crypto/aes"
	"crypto/rand"
	"crypto/subtle"
	"encoding/hex"
	"math/big"
	"testing"

	"github.com/cardvault/cardvault/internal/testsupport/vectors"
)

// ANSI X9.24-3:2017 supplement test vectors (Calculation of AES PIN Block
// Format 4) for the field encodings, and the odd-length and short-PAN
// cases of ISO 9564-1:2017's rules.
func TestFormat4Fields(t *testing.T) {
	zeros := bytes.NewReader(make([]byte, 8))
	for _, c := range []struct{ pin, want string }{
		{"1234", "441234AAAAAAAAAA0000000000000000"},
		{"12345", "4512345AAAAAAAAA0000000000000000"},
		{"123456789012", "4C123456789012AA0000000000000000"},
	} {
		zeros.Reset(make([]byte, 8))
		var f [pinBlockSize]byte
		err := pinField(&f, []byte(c.pin), zeros)
		if err != nil || hex.EncodeToString(f[:]) != lower(c.want) {
			t.Errorf("pinField(%s) = %X, want %s (%v)", c.pin, f, c.want, err)
		}
	}
	for _, c := range []struct{ pan, want string }{
		{"4111111111111111", "44111111111111111000000000000000"},
		{"411111111111111", "34111111111111110000000000000000"},
		{"123456789", "00001234567890000000000000000000"},
		{"1234567890123456789", "71234567890123456789000000000000"},
	} {
		if f := panField([]byte(c.pan)); hex.EncodeToString(f[:]) != lower(c.want) {
			t.Errorf("panField(%s) = %X, want %s", c.pan, f, c.want)
		}
	}
	var a, b [pinBlockSize]byte
	pinField(&a, []byte("1234"), rand.Reader)
	pinField(&b, []byte("1234"), rand.Reader)
	if bytes.Equal(a[8:], b[8:]) {
		t.Fatal("the random half repeated")
	}
}

func lower(s string) string { return string(bytes.ToLower([]byte(s))) }

func TestPINRules(t *testing.T) {
	for pin, want := range map[string]int{
		"1357": 1, "2468": 1, "9024": 1, "1123": 1, "0090": 0,
		"1234": 0, "4321": 0, "0123": 0, "6789": 0, "9876": 0,
		"1111": 0, "7771": 0, "1710": 1, "5055": 0,
		"12a4": 0, "12 4": 0, "/123": 0, ":123": 0,
	} {
		var p [4]byte
		copy(p[:], pin)
		if got := pinAcceptable(p); got != want {
			t.Errorf("pinAcceptable(%q) = %d, want %d", pin, got, want)
		}
	}
}

// pkcs1 encodes msg as RSAES-PKCS1-v1_5 would for a k-byte modulus, with
// padLen nonzero padding bytes.
func pkcs1(k int, msg []byte) []byte {
	em := make([]byte, k)
	em[1] = 2
	for i := 2; i < k-len(msg)-1; i++ {
		em[i] = 0x5a
	}
	copy(em[k-len(msg):], msg)
	return em
}

func TestPINFromPKCS1(t *testing.T) {
	for name, c := range map[string]struct {
		em   []byte
		want string
		ok   int
	}{
		"pin":                {pkcs1(512, []byte("1357")), "1357", 1},
		"pin and newline":    {pkcs1(512, []byte("1357\n")), "1357", 1},
		"weak pin":           {pkcs1(512, []byte("1234\n")), "0000", 0},
		"five digits":        {pkcs1(512, []byte("13579")), "0000", 0},
		"three digits":       {pkcs1(512, []byte("135")), "0000", 0},
		"two newlines":       {pkcs1(512, []byte("135\n\n")), "0000", 0},
		"carriage return":    {pkcs1(512, []byte("1357\r")), "0000", 0},
		"block type 1":       {func() []byte { e := pkcs1(512, []byte("1357")); e[1] = 1; return e }(), "0000", 0},
		"leading byte":       {func() []byte { e := pkcs1(512, []byte("1357")); e[0] = 1; return e }(), "0000", 0},
		"no separator":       {func() []byte { e := pkcs1(512, []byte("1357")); e[512-5] = 0x5a; return e }(), "0000", 0},
		"short padding":      {func() []byte { e := pkcs1(512, []byte("1357")); e[9] = 0; return e }(), "0000", 0},
		"all zero":           {make([]byte, 512), "0000", 0},
		"2048-bit pin":       {pkcs1(256, []byte("2468\n")), "2468", 1},
		"shorter than a pin": {make([]byte, 12), "0000", 0},
	} {
		pin, ok := pinFromPKCS1(c.em)
		if string(pin[:]) != c.want || ok != c.ok {
			t.Errorf("%s: %q %d, want %q %d", name, pin, ok, c.want, c.ok)
		}
	}
}

// Wycheproof's RSAES-PKCS1-v1_5 4096-bit decryption vectors, through the
// constant-time unpadding with the raw RSA done here in Go (the e2e test
// runs them through the HSM and the endpoint): every valid vector unpads
// to its message, and no invalid one unpads.
func TestUnpadPKCS1Wycheproof(t *testing.T) {
	file := vectors.Load(t, "rsa_pkcs1_4096_test.json")
	counts := map[string]int{}
	for _, g := range file.TestGroups {
		priv, _ := g.PrivateKey(t)
		size := (priv.N.BitLen() + 7) / 8
		for _, tc := range g.Tests {
			ct, _ := hex.DecodeString(tc.CT)
			if len(ct) != size || new(big.Int).SetBytes(ct).Cmp(priv.N) >= 0 {
				counts["refused before RSA"]++
				continue
			}
			m := new(big.Int).Exp(new(big.Int).SetBytes(ct), priv.D, priv.N)
			em := m.FillBytes(make([]byte, size))
			index, ok := unpadPKCS1(em)
			msg, _ := hex.DecodeString(tc.Msg)
			switch {
			case tc.Result == "valid" && (ok != 1 || !bytes.Equal(em[index:], msg)):
				t.Errorf("tcId %d: valid vector unpads to ok=%d", tc.TcID, ok)
			case tc.Result == "invalid" && ok == 1:
				t.Errorf("tcId %d: invalid vector unpads", tc.TcID)
			}
			counts[tc.Result]++
		}
	}
	t.Logf("vectors: %v", counts)
	if counts["valid"] == 0 || counts["invalid"] == 0 {
		t.Fatalf("vectors %v: nothing checked", counts)
	}
}

// The PIN view reads back exactly the PIN a format 4 field holds, and a
// field that is not one (length out of range, a non-digit, bad fill) is
// refused rather than read.
func TestPINDigits(t *testing.T) {
	for _, pin := range []string{"1357", "0000", "123456789012"} {
		var f [pinBlockSize]byte
		if err := pinField(&f, []byte(pin), rand.Reader); err != nil {
			t.Fatal(err)
		}
		got, err := pinDigits(f[:])
		if err != nil || string(got) != pin {
			t.Errorf("pinDigits(pinField(%s)) = %q, %v", pin, got, err)
		}
	}
	var good [pinBlockSize]byte
	if err := pinField(&good, []byte("1357"), rand.Reader); err != nil {
		t.Fatal(err)
	}
	for name, mutate := range map[string]func(f []byte){
		"length 3":     func(f []byte) { f[0] = 0x43 },
		"length 13":    func(f []byte) { f[0] = 0x4d },
		"a non-digit":  func(f []byte) { f[1] = 0x1b },
		"fill not 0xA": func(f []byte) { f[7] = 0xab },
	} {
		f := good
		mutate(f[:])
		if got, err := pinDigits(f[:]); err == nil {
			t.Errorf("%s: read %q", name, got)
		}
	}
}

// DecipherPINBlock undoes encipherPIN's two encipherments around the PAN
// field and gives the digits; a block that is not a format 4 PIN for the
// PAN (another PAN, random bytes) gives ErrCrypto and no bytes.
func TestDecipherPINBlock(t *testing.T) {
	key := make([]byte, 32)
	rand.Read(key)
	c, err := aes.NewCipher(key)
	if err != nil {
		t.Fatal(err)
	}
	encrypt := func(b []byte) []byte { out := make([]byte, 16); c.Encrypt(out, b); return out }
	decrypt := func(b []byte) ([]byte, error) { out := make([]byte, 16); c.Decrypt(out, b); return out, nil }
	pan := []byte("4111111111111111")
	var f [pinBlockSize]byte
	if err := pinField(&f, []byte("2468"), rand.Reader); err != nil {
		t.Fatal(err)
	}
	ib := encrypt(f[:])
	pf := panField(pan)
	subtle.XORBytes(ib, ib, pf[:])
	block := encrypt(ib)
	if pin, err := DecipherPINBlock(block, pan, decrypt); err != nil || string(pin) != "2468" {
		t.Fatalf("DecipherPINBlock = %q, %v", pin, err)
	}
	random := make([]byte, 16)
	rand.Read(random)
	for name, c := range map[string]struct{ block, pan []byte }{
		"another PAN":  {block, []byte("5500000000000004")},
		"random block": {random, pan},
		"a PIN field":  {f[:], pan},
	} {
		if pin, err := DecipherPINBlock(c.block, c.pan, decrypt); err == nil || pin != nil {
			t.Errorf("%s: %q, %v", name, pin, err)
		}
	}
}
