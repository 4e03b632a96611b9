// Package libcrypto does RSA public-key encryption with OpenSSL's libcrypto.
//
// Every client key cardvault encrypts to is fresh (Jiko's single-use keys,
// a new device JWK per secure view), so nothing can be precomputed across
// requests and the public operation is paid in full on every reveal; a
// Jiko reveal's three fields share one loaded key (PublicKey), so the
// key's setup is paid once per request. On the machines
// measured (docs/performance.md) OpenSSL 3's RSA-4096 public operation is
// 6–11× faster than Go's: its Montgomery multiplication is hand-written
// assembly. cgo is already required for PKCS#11, and libcrypto is already on
// every host that runs SoftHSM2 or openssl.
//
// The message is secret (card data or a content key). What that means for
// timing: OpenSSL's RSA public operation pads into a buffer it clears
// (OPENSSL_clear_free), converts it to a number and exponentiates with the
// public exponent. On x86-64 and arm64 the Montgomery multiplication and
// the final conditional subtraction run in time independent of the
// operands' values; the padded block starts 0x00 0x02 (PKCS#1 v1.5) or
// 0x00 followed by a masked seed (OAEP), so its length in words, the one
// value-dependent step, carries nothing secret. The padding's randomness
// comes from OpenSSL's DRBG, seeded from the kernel.
package libcrypto

/*
#cgo LDFLAGS: -lcrypto
#include <openssl/core_names.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/param_build.h>
#include <openssl/rsa.h>
#include <stdlib.h>

// cv_rsa_public_key builds an RSA public key from its big-endian modulus
// and exponent. NULL on any failure.
static EVP_PKEY *cv_rsa_public_key(const unsigned char *n, size_t nlen, unsigned long e) {
	EVP_PKEY *pkey = NULL;
	BIGNUM *bn = BN_bin2bn(n, (int)nlen, NULL);
	BIGNUM *be = BN_new();
	OSSL_PARAM_BLD *bld = OSSL_PARAM_BLD_new();
	OSSL_PARAM *params = NULL;
	EVP_PKEY_CTX *ctx = NULL;
	if (bn == NULL || be == NULL || bld == NULL || !BN_set_word(be, e)
	    || !OSSL_PARAM_BLD_push_BN(bld, OSSL_PKEY_PARAM_RSA_N, bn)
	    || !OSSL_PARAM_BLD_push_BN(bld, OSSL_PKEY_PARAM_RSA_E, be)
	    || (params = OSSL_PARAM_BLD_to_param(bld)) == NULL
	    || (ctx = EVP_PKEY_CTX_new_from_name(NULL, "RSA", NULL)) == NULL
	    || EVP_PKEY_fromdata_init(ctx) <= 0
	    || EVP_PKEY_fromdata(ctx, &pkey, EVP_PKEY_PUBLIC_KEY, params) <= 0) {
		pkey = NULL;
	}
	EVP_PKEY_CTX_free(ctx);
	OSSL_PARAM_free(params);
	OSSL_PARAM_BLD_free(bld);
	BN_free(be);
	BN_free(bn);
	return pkey;
}

// cv_rsa_encrypt encrypts in to pkey, whose modulus is nlen bytes, with
// the padding: RSA_PKCS1_PADDING, or RSA_PKCS1_OAEP_PADDING with the named
// OAEP and MGF1 digests. out has room for nlen bytes. 1 on success, 0 on
// any failure; the error queue is cleared either way so nothing of this
// call lingers on the thread.
static int cv_rsa_encrypt(EVP_PKEY *pkey, size_t nlen,
                          int padding, const char *oaep_md, const char *mgf1_md,
                          const unsigned char *in, size_t inlen,
                          unsigned char *out, size_t *outlen) {
	int ok = 0;
	EVP_PKEY_CTX *ctx = NULL;
	if ((ctx = EVP_PKEY_CTX_new_from_pkey(NULL, pkey, NULL)) == NULL
	    || EVP_PKEY_encrypt_init(ctx) <= 0
	    || EVP_PKEY_CTX_set_rsa_padding(ctx, padding) <= 0) {
		goto done;
	}
	if (padding == RSA_PKCS1_OAEP_PADDING
	    && (EVP_PKEY_CTX_set_rsa_oaep_md_name(ctx, oaep_md, NULL) <= 0
	        || EVP_PKEY_CTX_set_rsa_mgf1_md_name(ctx, mgf1_md, NULL) <= 0)) {
		goto done;
	}
	*outlen = nlen;
	ok = EVP_PKEY_encrypt(ctx, out, outlen, in, inlen) > 0;
done:
	EVP_PKEY_CTX_free(ctx);
	ERR_clear_error();
	return ok;
}
*/
import "C"

import (
	"crypto"
	"crypto/rsa"
	"errors"
	"fmt"
	"runtime"
	"unsafe"

	"github.com/cardvault/cardvault/internal/cleancall"
)

// errEncrypt is every failure inside libcrypto: which step failed says
// nothing a caller could act on, and the key is the client's.
var errEncrypt = errors.New("libcrypto: RSA encryption failed")

// PublicKey is an RSA public key loaded into libcrypto, for the several
// encryptions one reveal makes to it (Jiko's three fields): the key is
// built, and its Montgomery context computed, once. Close frees it.
type PublicKey struct {
	pkey *C.EVP_PKEY
	size int
}

// NewPublicKey loads pub into libcrypto.
func NewPublicKey(pub *rsa.PublicKey) (*PublicKey, error) {
	if pub == nil || pub.N == nil || pub.E < 3 || pub.N.Bit(0) == 0 {
		return nil, errors.New("libcrypto: not an RSA public key")
	}
	n := pub.N.Bytes()
	pkey := C.cv_rsa_public_key((*C.uchar)(unsafe.Pointer(&n[0])), C.size_t(len(n)), C.ulong(pub.E))
	C.ERR_clear_error()
	if pkey == nil {
		return nil, errEncrypt
	}
	return &PublicKey{pkey: pkey, size: len(n)}, nil
}

// Close frees the key; it may be called more than once.
func (k *PublicKey) Close() {
	if k.pkey != nil {
		C.EVP_PKEY_free(k.pkey)
		k.pkey = nil
	}
}

// EncryptPKCS1v15 is RSAES-PKCS1-v1_5 encryption (RFC 8017, 7.2.1).
func (k *PublicKey) EncryptPKCS1v15(msg []byte) ([]byte, error) {
	return k.encrypt(C.RSA_PKCS1_PADDING, nil, nil, msg)
}

// EncryptOAEP is RSAES-OAEP encryption (RFC 8017, 7.1.1) with an empty
// label, the OAEP digest hash and the MGF1 digest mgfHash, each SHA-1 or
// SHA-256.
func (k *PublicKey) EncryptOAEP(hash, mgfHash crypto.Hash, msg []byte) ([]byte, error) {
	md, ok := digestNames[hash]
	mgf, ok2 := digestNames[mgfHash]
	if !ok || !ok2 {
		return nil, fmt.Errorf("libcrypto: OAEP digests %v/%v not allowed", hash, mgfHash)
	}
	return k.encrypt(C.RSA_PKCS1_OAEP_PADDING, md, mgf, msg)
}

// digestNames are the OAEP and MGF1 digests allowed, by OpenSSL's names,
// made C strings once: they live as long as the process.
var digestNames = map[crypto.Hash]*C.char{
	crypto.SHA1:   C.CString("SHA1"),
	crypto.SHA256: C.CString("SHA256"),
}

func (k *PublicKey) encrypt(padding C.int, md, mgf *C.char, msg []byte) ([]byte, error) {
	if k.pkey == nil {
		return nil, errors.New("libcrypto: key is closed")
	}
	out := make([]byte, k.size)
	var in *C.uchar
	if len(msg) > 0 {
		in = (*C.uchar)(unsafe.Pointer(&msg[0]))
	}
	var outLen C.size_t
	// The message is card data or a content key: libcrypto's padding and
	// conversion hold it in registers (see package cleancall).
	g := cleancall.Begin()
	ok := C.cv_rsa_encrypt(k.pkey, C.size_t(k.size), padding, md, mgf, in, C.size_t(len(msg)),
		(*C.uchar)(unsafe.Pointer(&out[0])), &outLen)
	g.End()
	runtime.KeepAlive(msg)
	if ok != 1 || int(outLen) != k.size {
		return nil, errEncrypt
	}
	return out, nil
}

// EncryptPKCS1v15 encrypts one message to pub: NewPublicKey, encrypt,
// Close.
func EncryptPKCS1v15(pub *rsa.PublicKey, msg []byte) ([]byte, error) {
	k, err := NewPublicKey(pub)
	if err != nil {
		return nil, err
	}
	defer k.Close()
	return k.EncryptPKCS1v15(msg)
}

// EncryptOAEP encrypts one message to pub: NewPublicKey, encrypt, Close.
func EncryptOAEP(pub *rsa.PublicKey, hash, mgfHash crypto.Hash, msg []byte) ([]byte, error) {
	k, err := NewPublicKey(pub)
	if err != nil {
		return nil, err
	}
	defer k.Close()
	return k.EncryptOAEP(hash, mgfHash, msg)
}
