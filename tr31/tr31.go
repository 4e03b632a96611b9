// Package tr31 reads ANSI X9.143 (TR-31) key blocks of version D: a key
// wrapped under an AES key-block protection key (KBPK) by the key
// derivation binding method. Two keys are derived from the KBPK with
// AES-CMAC in counter mode (NIST SP 800-108), one to encrypt the key
// data with AES-CBC and one to authenticate the header and the clear key
// data with AES-CMAC; the MAC is the CBC IV.
//
// The module proxy offers no Go TR-31 library, and a vault imports zone
// keys only in a ceremony, so this reads blocks and never writes them.
package tr31

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/subtle"
	"encoding/hex"
	"errors"
	"fmt"
	"strconv"
)

// Header is a key block's clear header.
type Header struct {
	// Usage is the key usage, e.g. "P0" (PIN encryption).
	Usage string
	// Algorithm is the wrapped key's algorithm: 'A' is AES.
	Algorithm byte
	// ModeOfUse says what the key may do: 'E' encrypt, 'D' decrypt, 'B'
	// both, among others.
	ModeOfUse byte
	// KeyVersion is the two-character key version number.
	KeyVersion string
	// Exportability is 'E', 'N' or 'S'.
	Exportability byte
	// Optional are the optional blocks, in order.
	Optional []OptionalBlock
}

// OptionalBlock is one optional header block: its two-character ID and
// its data.
type OptionalBlock struct {
	ID   string
	Data string
}

// ErrVerify is every failure to authenticate a block under the KBPK: a
// wrong KBPK, a changed header or key data, a forged MAC. They are one
// error so that a block cannot be probed for which it was.
var ErrVerify = errors.New("tr31: the key block does not verify under this KBPK")

const (
	headerLen = 16
	macLen    = aes.BlockSize // version D carries the full CMAC
)

// Unwrap authenticates a version D key block under kbpk (an AES key of
// 16, 24 or 32 bytes) and returns its header and the key it carries. The
// caller clears the key.
func Unwrap(kbpk []byte, block string) (*Header, []byte, error) {
	h, headerText, payload, mac, err := parse(block)
	if err != nil {
		return nil, nil, err
	}
	kbek, kbak, err := deriveKeys(kbpk)
	if err != nil {
		return nil, nil, err
	}
	defer clear(kbek)
	defer clear(kbak)
	c, err := aes.NewCipher(kbek)
	if err != nil {
		return nil, nil, err
	}
	plain := make([]byte, len(payload))
	defer clear(plain)
	cipher.NewCBCDecrypter(c, mac).CryptBlocks(plain, payload)
	covered := append([]byte(headerText), plain...)
	defer clear(covered)
	want, err := cmac(kbak, covered)
	if err != nil {
		return nil, nil, err
	}
	if subtle.ConstantTimeCompare(want, mac) != 1 {
		return nil, nil, ErrVerify
	}
	bits := int(plain[0])<<8 | int(plain[1])
	if bits%8 != 0 || bits == 0 || bits/8 > len(plain)-2 {
		return nil, nil, fmt.Errorf("tr31: key length of %d bits does not fit the key data", bits)
	}
	if h.Algorithm == 'A' && bits != 128 && bits != 192 && bits != 256 {
		return nil, nil, fmt.Errorf("tr31: an AES key of %d bits", bits)
	}
	return h, append([]byte(nil), plain[2:2+bits/8]...), nil
}

// parse splits a block into its header, the header's text (which the MAC
// covers), the encrypted key data and the MAC.
func parse(block string) (*Header, string, []byte, []byte, error) {
	if len(block) < headerLen {
		return nil, "", nil, nil, fmt.Errorf("tr31: a key block of %d characters is shorter than its header", len(block))
	}
	for i := 0; i < len(block); i++ {
		if block[i] < 0x20 || block[i] > 0x7e {
			return nil, "", nil, nil, fmt.Errorf("tr31: character %d is not printable ASCII", i+1)
		}
	}
	if block[0] != 'D' {
		return nil, "", nil, nil, fmt.Errorf("tr31: version %q: only version D (AES, key derivation binding) is read", block[0])
	}
	n, err := decimal(block[1:5])
	if err != nil || n != len(block) {
		return nil, "", nil, nil, fmt.Errorf("tr31: the header says %q characters, the block has %d", block[1:5], len(block))
	}
	h := &Header{Usage: block[5:7], Algorithm: block[7], ModeOfUse: block[8], KeyVersion: block[9:11], Exportability: block[11]}
	count, err := decimal(block[12:14])
	if err != nil {
		return nil, "", nil, nil, fmt.Errorf("tr31: optional block count %q is not a number", block[12:14])
	}
	if block[14:16] != "00" {
		return nil, "", nil, nil, fmt.Errorf("tr31: reserved field %q, want 00", block[14:16])
	}
	at := headerLen
	for i := 0; i < count; i++ {
		ob, next, err := optionalBlock(block, at)
		if err != nil {
			return nil, "", nil, nil, fmt.Errorf("tr31: optional block %d: %w", i+1, err)
		}
		h.Optional = append(h.Optional, ob)
		at = next
	}
	if at%aes.BlockSize != 0 {
		return nil, "", nil, nil, fmt.Errorf("tr31: a header of %d characters is not a multiple of %d (a PB block pads it)", at, aes.BlockSize)
	}
	rest := block[at:]
	if len(rest) < 2*(aes.BlockSize+macLen) || (len(rest)-2*macLen)%(2*aes.BlockSize) != 0 {
		return nil, "", nil, nil, fmt.Errorf("tr31: %d characters of key data and MAC do not make whole AES blocks", len(rest))
	}
	raw, err := hex.DecodeString(rest)
	if err != nil {
		return nil, "", nil, nil, errors.New("tr31: the key data and MAC are not hexadecimal")
	}
	return h, block[:at], raw[:len(raw)-macLen], raw[len(raw)-macLen:], nil
}

// optionalBlock reads the optional block at offset at: a two-character
// ID, a two-hex-digit length counting the whole block (or "00", then a
// two-hex-digit count of the length's digits and the length itself), and
// the data.
func optionalBlock(block string, at int) (OptionalBlock, int, error) {
	if len(block) < at+4 {
		return OptionalBlock{}, 0, errors.New("runs past the block")
	}
	id := block[at : at+2]
	length, err := hexNumber(block[at+2 : at+4])
	if err != nil {
		return OptionalBlock{}, 0, fmt.Errorf("%s: length %q is not hexadecimal", id, block[at+2:at+4])
	}
	start := at + 4
	if length == 0 {
		if len(block) < at+6 {
			return OptionalBlock{}, 0, fmt.Errorf("%s: runs past the block", id)
		}
		digits, err := hexNumber(block[at+4 : at+6])
		if err != nil || digits == 0 || len(block) < at+6+digits {
			return OptionalBlock{}, 0, fmt.Errorf("%s: extended length is malformed", id)
		}
		if length, err = hexNumber(block[at+6 : at+6+digits]); err != nil {
			return OptionalBlock{}, 0, fmt.Errorf("%s: extended length is not hexadecimal", id)
		}
		start = at + 6 + digits
	}
	end := at + length
	if end < start || end > len(block) {
		return OptionalBlock{}, 0, fmt.Errorf("%s: length %d does not fit", id, length)
	}
	return OptionalBlock{ID: id, Data: block[start:end]}, end, nil
}

// deriveKeys derives the key block encryption and authentication keys
// from the KBPK: CMAC(KBPK, counter || usage || 00 || algorithm ||
// length) for each 16 bytes of a key as long as the KBPK.
func deriveKeys(kbpk []byte) (kbek, kbak []byte, err error) {
	var algorithm byte
	switch len(kbpk) {
	case 16:
		algorithm = 2
	case 24:
		algorithm = 3
	case 32:
		algorithm = 4
	default:
		return nil, nil, fmt.Errorf("tr31: a KBPK of %d bytes: want an AES key of 16, 24 or 32", len(kbpk))
	}
	bits := len(kbpk) * 8
	derive := func(usage byte) ([]byte, error) {
		var out []byte
		for counter := byte(1); len(out) < len(kbpk); counter++ {
			part, err := cmac(kbpk, []byte{counter, 0, usage, 0, 0, algorithm, byte(bits >> 8), byte(bits)})
			if err != nil {
				return nil, err
			}
			out = append(out, part...)
		}
		return out[:len(kbpk)], nil
	}
	if kbek, err = derive(0); err != nil {
		return nil, nil, err
	}
	if kbak, err = derive(1); err != nil {
		return nil, nil, err
	}
	return kbek, kbak, nil
}

func decimal(s string) (int, error) {
	for _, r := range s {
		if r < '0' || r > '9' {
			return 0, fmt.Errorf("%q is not decimal", s)
		}
	}
	return strconv.Atoi(s)
}

func hexNumber(s string) (int, error) {
	n, err := strconv.ParseUint(s, 16, 32)
	return int(n), err
}
