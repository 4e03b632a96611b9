package tr31

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/subtle"
)

// cmac is AES-CMAC (NIST SP 800-38B, RFC 4493) of msg under key, the full
// 16 bytes. The standard library has no CMAC, and the key block needs
// only this one function, so it is written here rather than imported.
func cmac(key, msg []byte) ([]byte, error) {
	b, err := aes.NewCipher(key)
	if err != nil {
		return nil, err
	}
	k1, k2 := cmacSubkeys(b)
	n := (len(msg) + aes.BlockSize - 1) / aes.BlockSize
	complete := n > 0 && len(msg)%aes.BlockSize == 0
	if n == 0 {
		n = 1
	}
	last := make([]byte, aes.BlockSize)
	copy(last, msg[(n-1)*aes.BlockSize:])
	if complete {
		subtle.XORBytes(last, last, k1)
	} else {
		last[len(msg)-(n-1)*aes.BlockSize] = 0x80
		subtle.XORBytes(last, last, k2)
	}
	x := make([]byte, aes.BlockSize)
	for i := 0; i < n-1; i++ {
		subtle.XORBytes(x, x, msg[i*aes.BlockSize:(i+1)*aes.BlockSize])
		b.Encrypt(x, x)
	}
	subtle.XORBytes(x, x, last)
	b.Encrypt(x, x)
	clear(last)
	return x, nil
}

// cmacSubkeys derives K1 and K2 from the encryption of the zero block.
func cmacSubkeys(b cipher.Block) (k1, k2 []byte) {
	l := make([]byte, aes.BlockSize)
	b.Encrypt(l, l)
	k1 = double(l)
	k2 = double(k1)
	clear(l)
	return k1, k2
}

// double is multiplication by x in GF(2^128) with the CMAC polynomial.
func double(in []byte) []byte {
	out := make([]byte, len(in))
	var carry byte
	for i := len(in) - 1; i >= 0; i-- {
		out[i] = in[i]<<1 | carry
		carry = in[i] >> 7
	}
	out[len(out)-1] ^= 0x87 & -carry
	return out
}
