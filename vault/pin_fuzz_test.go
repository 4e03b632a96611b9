package vault

import (
	"bytes"
	"testing"
)

// referencePIN decodes a PKCS#1 v1.5 encoded PIN the obvious,
// variable-time way: the oracle pinFromPKCS1 must agree with.
func referencePIN(em []byte) ([4]byte, bool) {
	var pin [4]byte
	if len(em) < 16 || em[0] != 0 || em[1] != 2 {
		return pin, false
	}
	sep := bytes.IndexByte(em[2:], 0)
	if sep < 8 {
		return pin, false
	}
	msg := em[2+sep+1:]
	if len(msg) == 5 && msg[4] == '\n' {
		msg = msg[:4]
	}
	if len(msg) != 4 {
		return pin, false
	}
	copy(pin[:], msg)
	return pin, pinAcceptable(pin) == 1
}

// FuzzPINFromPKCS1 checks the constant-time PIN decode against the
// reference on any decrypted block: the set-PIN path's padding oracle
// defence must accept exactly the well-formed, acceptable PINs.
func FuzzPINFromPKCS1(f *testing.F) {
	good := make([]byte, 64)
	good[1] = 2
	for i := 2; i < 64-6; i++ {
		good[i] = 0x5a
	}
	copy(good[64-6:], "\x001357\n")
	f.Add(good)
	f.Add(append(append([]byte{}, good[:59]...), "\x001357"...))
	f.Add(append(append([]byte{}, good[:59]...), "\x001234"...)) // a run: refused
	f.Add(make([]byte, 64))
	f.Add([]byte{0, 2, 0})
	f.Fuzz(func(t *testing.T, em []byte) {
		pin, ok := pinFromPKCS1(em)
		want, wantOK := referencePIN(em)
		if (ok == 1) != wantOK {
			t.Fatalf("ok=%d, reference says %v for %x", ok, wantOK, em)
		}
		if wantOK && pin != want {
			t.Fatalf("PIN %q, reference %q", pin, want)
		}
		if !wantOK && pin != dummyPIN {
			t.Fatalf("a refused block left PIN %q instead of the dummy", pin)
		}
	})
}

// FuzzPANField checks the format 4 PAN field of any digit string a card
// record can hold: M, then the digits, zero-filled, left-padded to 12.
func FuzzPANField(f *testing.F) {
	f.Add("4111111111111111")
	f.Add("4000001234567899123")
	f.Add("123456789012")
	f.Fuzz(func(t *testing.T, pan string) {
		if len(pan) < 12 || len(pan) > 19 || !allDigits([]byte(pan)) {
			return
		}
		field := panField([]byte(pan))
		nibble := func(i int) byte { return field[i/2] >> (4 * (1 - i%2)) & 0xf }
		if int(nibble(0)) != len(pan)-12 {
			t.Fatalf("M nibble %d for a %d-digit PAN", nibble(0), len(pan))
		}
		for i, d := range []byte(pan) {
			if nibble(1+i) != d-'0' {
				t.Fatalf("digit %d of %s is nibble %d", i, pan, nibble(1+i))
			}
		}
		for i := 1 + len(pan); i < 32; i++ {
			if nibble(i) != 0 {
				t.Fatalf("fill nibble %d is %x", i, nibble(i))
			}
		}
	})
}
