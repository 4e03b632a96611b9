package hsm

import (
	"crypto/subtle"
	"hash"
)

// decodeOAEP is EME-OAEP decoding (RFC 8017 §7.1.2, steps 3a–3g) of an
// encoded message em = RSADP(c), left-padded to k bytes. It is the second
// half of the RSA_X_509 path used where the token refuses OAEP with
// SHA-256 (SoftHSM2 2.6.1). The RSA private operation still runs inside the
// token; only the unpadding runs here.
//
// It runs in time independent of where and whether the padding is invalid,
// as Go's crypto/rsa does, so that it is no Manger oracle: every failure is
// the same ok == false.
func decodeOAEP(oaepHash, mgfHash hash.Hash, em, label []byte) (msg []byte, ok bool) {
	k := len(em)
	hLen := oaepHash.Size()
	if k < 2*hLen+2 {
		return nil, false
	}
	oaepHash.Reset()
	oaepHash.Write(label)
	lHash := oaepHash.Sum(nil)

	firstByteIsZero := subtle.ConstantTimeByteEq(em[0], 0)
	seed := make([]byte, hLen)
	copy(seed, em[1:1+hLen])
	db := make([]byte, k-hLen-1)
	copy(db, em[1+hLen:])
	defer clear(db)
	defer clear(seed)

	mgf1XOR(seed, mgfHash, db)
	mgf1XOR(db, mgfHash, seed)

	lHash2Good := subtle.ConstantTimeCompare(lHash, db[:hLen])

	// The rest of db must be zero or more 0x00, then 0x01, then the
	// message. Scan all of it, whatever is found where.
	var lookingForIndex, index, invalid int
	lookingForIndex = 1
	rest := db[hLen:]
	for i := 0; i < len(rest); i++ {
		equals0 := subtle.ConstantTimeByteEq(rest[i], 0)
		equals1 := subtle.ConstantTimeByteEq(rest[i], 1)
		index = subtle.ConstantTimeSelect(lookingForIndex&equals1, i, index)
		lookingForIndex = subtle.ConstantTimeSelect(equals1, 0, lookingForIndex)
		invalid = subtle.ConstantTimeSelect(lookingForIndex&^equals0, 1, invalid)
	}
	if firstByteIsZero&lHash2Good&^invalid&^lookingForIndex != 1 {
		return nil, false
	}
	out := make([]byte, len(rest)-index-1)
	copy(out, rest[index+1:])
	return out, true
}

// mgf1XOR XORs out with MGF1(seed) using h (RFC 8017 B.2.1).
func mgf1XOR(out []byte, h hash.Hash, seed []byte) {
	var counter [4]byte
	var digest []byte
	done := 0
	for done < len(out) {
		h.Reset()
		h.Write(seed)
		h.Write(counter[:])
		digest = h.Sum(digest[:0])
		for i := 0; i < len(digest) && done < len(out); i++ {
			out[done] ^= digest[i]
			done++
		}
		for i := 3; i >= 0; i-- {
			counter[i]++
			if counter[i] != 0 {
				break
			}
		}
	}
}
