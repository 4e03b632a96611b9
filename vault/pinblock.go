package vault

import (
	"crypto/subtle"
	"errors"
	"io"
)

// PIN blocks are ISO 9564-1:2017 format 4: an AES block cipher's 16-byte
// plain-text PIN field, enciphered, XORed with the PAN field, and
// enciphered again, both times under the PEK inside the HSM.

const pinBlockSize = 16

// pinField is the format 4 plain-text PIN field: control 4, the PIN
// length, the PIN digits, fill nibbles 0xA to nibble 15, then 8 random
// bytes. pin is 4 to 12 ASCII digits. The caller clears the field.
func pinField(f *[pinBlockSize]byte, pin []byte, r io.Reader) error {
	if len(pin) < 4 || len(pin) > 12 {
		return errors.New("PIN must be 4 to 12 digits")
	}
	nibbles := make([]byte, 16)
	defer clear(nibbles)
	nibbles[0], nibbles[1] = 0x4, byte(len(pin))
	for i := 2; i < 16; i++ {
		nibbles[i] = 0xA
	}
	for i, d := range pin {
		nibbles[2+i] = d - '0'
	}
	for i := 0; i < 8; i++ {
		f[i] = nibbles[2*i]<<4 | nibbles[2*i+1]
	}
	_, err := io.ReadFull(r, f[8:])
	return err
}

// panField is the format 4 PAN field: M = PAN length − 12 (0 for shorter
// PANs, which are left-padded with zeros to 12 digits), the PAN digits,
// then zero nibbles.
func panField(pan []byte) [pinBlockSize]byte {
	var f [pinBlockSize]byte
	digits := pan
	m := len(pan) - 12
	if m < 0 {
		digits = append(make([]byte, 12-len(pan)), pan...)
		for i := 0; i < 12-len(pan); i++ {
			digits[i] = '0'
		}
		m = 0
	}
	nibbles := make([]byte, 32)
	nibbles[0] = byte(m)
	for i, d := range digits {
		nibbles[1+i] = d - '0'
	}
	for i := range f {
		f[i] = nibbles[2*i]<<4 | nibbles[2*i+1]
	}
	return f
}

// unpadPKCS1 checks the RSAES-PKCS1-v1_5 encoding of em = RSADP(c) (RFC
// 8017 §7.2.2 step 3): 0x00 0x02, at least 8 nonzero padding bytes, 0x00,
// then the message, which starts at index. It runs in time independent of
// em's content and returns ok as 1 or 0.
func unpadPKCS1(em []byte) (index, ok int) {
	k := len(em)
	if k < 11 {
		return 0, 0 // k is the public modulus length
	}
	good := subtle.ConstantTimeByteEq(em[0], 0) & subtle.ConstantTimeByteEq(em[1], 2)
	lookingForIndex, zeroAt := 1, 0
	for i := 2; i < k; i++ {
		zero := subtle.ConstantTimeByteEq(em[i], 0)
		zeroAt = subtle.ConstantTimeSelect(lookingForIndex&zero, i, zeroAt)
		lookingForIndex = subtle.ConstantTimeSelect(zero, 0, lookingForIndex)
	}
	good &= 1 &^ lookingForIndex
	good &= subtle.ConstantTimeLessOrEq(10, zeroAt) // 8 bytes of padding at least
	return zeroAt + 1, good
}

// pinFromPKCS1 reads a PIN from a PKCS#1 v1.5 encoded message whose
// message is 4 digits with an optional "\n" (the guide's `echo` adds
// one). Every test runs, in time independent of em's content, and ok is 1
// only if all pass; the PIN is dummyPIN otherwise. With the HSM's raw RSA,
// which cannot fail on padding, it is the set-PIN path's defence against
// a Bleichenbacher oracle.
func pinFromPKCS1(em []byte) (pin [4]byte, ok int) {
	k := len(em)
	if k < 11+5 {
		return dummyPIN, 0
	}
	index, good := unpadPKCS1(em)
	msgLen := k - index
	four := subtle.ConstantTimeEq(int32(msgLen), 4)
	five := subtle.ConstantTimeEq(int32(msgLen), 5) & subtle.ConstantTimeByteEq(em[k-1], '\n')
	good &= four | five
	tail := em[k-5:]
	subtle.ConstantTimeCopy(four, pin[:], tail[1:5])
	subtle.ConstantTimeCopy(five, pin[:], tail[0:4])
	good &= pinAcceptable(pin)
	subtle.ConstantTimeCopy(1^good, pin[:], dummyPIN[:])
	return pin, good
}

// dummyPIN stands in for an unusable PIN, so the PIN block is built the
// same way whether or not the PIN was good.
var dummyPIN = [4]byte{'0', '0', '0', '0'}

// pinAcceptable applies Solaris's PIN rules in constant time: exactly 4
// digits, not a run of consecutive digits up or down, no digit three or
// more times. It returns 1 or 0.
func pinAcceptable(pin [4]byte) int {
	ok := 1
	var d [4]int32
	for i, b := range pin {
		ok &= subtle.ConstantTimeLessOrEq('0', int(b)) & subtle.ConstantTimeLessOrEq(int(b), '9')
		d[i] = int32(b) - '0'
	}
	up, down := 1, 1
	for i := 1; i < 4; i++ {
		up &= subtle.ConstantTimeEq(d[i]-d[i-1], 1)
		down &= subtle.ConstantTimeEq(d[i-1]-d[i], 1)
	}
	triple := 0
	for i := 0; i < 4; i++ {
		n := 0
		for j := 0; j < 4; j++ {
			n += subtle.ConstantTimeEq(d[i], d[j])
		}
		triple |= subtle.ConstantTimeLessOrEq(3, n)
	}
	return ok &^ up &^ down &^ triple
}

// errNotFormat4 is a block that deciphers to no well-formed format 4 PIN
// field: to every client the one crypto failure (ErrCrypto's kind and
// words), and to PIN verification a wrong PIN, which a failure of the
// token itself is not.
var errNotFormat4 = &Error{Kind: KindCrypto, Msg: ErrCrypto.Msg}

// plainPINField undoes a format 4 PIN block with decrypt (one AES block
// under the PEK, in the token): decrypt undoes the second encipherment,
// the PAN field comes off, decrypt again yields the plain-text PIN field,
// which the caller clears. A block that does not decode to a format 4
// field is ErrCrypto.
func plainPINField(block, pan []byte, decrypt func([]byte) ([]byte, error)) ([]byte, error) {
	ib, err := decrypt(block)
	if err != nil {
		return nil, err
	}
	defer clear(ib)
	pf := panField(pan)
	defer clear(pf[:])
	subtle.XORBytes(ib, ib, pf[:])
	field, err := decrypt(ib)
	if err != nil {
		return nil, err
	}
	if len(field) != pinBlockSize || field[0]>>4 != 4 {
		clear(field)
		return nil, errNotFormat4
	}
	return field, nil
}

// DecipherPINBlock is the PIN view's one use of PEK decryption: the
// digits of a format 4 PIN block for pan, and nothing else. A block that
// does not decode to a well-formed format 4 PIN field (control 4, a
// length of 4 to 12, digits, fill 0xA) is ErrCrypto, so the request path
// holds no way to decipher arbitrary blocks under the PEK. The caller
// clears the digits.
func DecipherPINBlock(block, pan []byte, decrypt func([]byte) ([]byte, error)) ([]byte, error) {
	field, err := plainPINField(block, pan, decrypt)
	if err != nil {
		return nil, err
	}
	defer clear(field)
	pin, err := pinDigits(field)
	if err != nil {
		return nil, errNotFormat4
	}
	return pin, nil
}

// pinDigits reads the PIN from a format 4 plain-text PIN field: the
// length nibble, then that many digit nibbles, then fill nibbles 0xA.
func pinDigits(field []byte) ([]byte, error) {
	nibble := func(i int) byte {
		if i%2 == 0 {
			return field[i/2] >> 4
		}
		return field[i/2] & 0x0f
	}
	n := int(nibble(1))
	if n < 4 || n > 12 {
		return nil, errors.New("PIN field: length out of range")
	}
	pin := make([]byte, n)
	for i := range n {
		d := nibble(2 + i)
		if d > 9 {
			clear(pin)
			return nil, errors.New("PIN field: not a digit")
		}
		pin[i] = '0' + d
	}
	for i := 2 + n; i < 16; i++ {
		if nibble(i) != 0xA {
			clear(pin)
			return nil, errors.New("PIN field: fill is not 0xA")
		}
	}
	return pin, nil
}
