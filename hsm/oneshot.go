package hsm

/*
#include <stdlib.h>

typedef unsigned long cv_ulong;
typedef cv_ulong (*cv_get_function_list)(void **);
typedef cv_ulong (*cv_crypt_fn)(cv_ulong, unsigned char *, cv_ulong, unsigned char *, cv_ulong *);

// The head of CK_FUNCTION_LIST: a CK_VERSION, then the function pointers
// in the order PKCS#11 fixes. C_Encrypt is the 31st, C_Decrypt the 35th,
// C_Sign the 44th.
struct cv_function_list_head {
	unsigned char version[2];
	void *fns[44];
};

// cv_function returns function number i of the function list miekg/pkcs11
// obtained for its context (struct ctx { HMODULE handle;
// CK_FUNCTION_LIST_PTR sym; }): the list it initialised and opened its
// sessions on. A second C_GetFunctionList would not do: p11-kit-proxy
// hands every caller a list of its own, uninitialised.
static void *cv_function(void *miekg_ctx, int i) {
	if (!miekg_ctx) return 0;
	struct cv_function_list_head *list = ((struct { void *handle; struct cv_function_list_head *sym; } *)miekg_ctx)->sym;
	if (!list) return 0;
	return list->fns[i];
}

static cv_ulong cv_crypt(void *fn, cv_ulong sh, unsigned char *in, cv_ulong inlen, unsigned char *out, cv_ulong *outlen) {
	return ((cv_crypt_fn)fn)(sh, in, inlen, out, outlen);
}
*/
import "C"

import (
	"errors"
	"reflect"
	"unsafe"

	"github.com/miekg/pkcs11"

	"github.com/cardvault/cardvault/internal/cleancall"
)

// clearingP11 is the module's PKCS#11 calls with C_Encrypt, C_Decrypt and
// C_Sign, the calls that carry clear data in or out, made once, straight
// into Go memory, inside a cleancall guard.
//
// miekg/pkcs11 asks the module for the output length first, then has it
// write into a buffer it mallocs, copies that, and frees the buffer
// without wiping it. For C_Decrypt the clear data (an opened card record,
// a PIN block) stayed in freed C memory. For C_Encrypt the length query
// breaks on NSS softokn, which answers an AES-GCM query with the
// plaintext's length, without the tag, and then refuses that buffer
// (CKR_BUFFER_TOO_SMALL). Here each call is made once into a Go buffer
// long enough for every mechanism the vault uses, which the caller clears.
// The guard keeps what the module's code leaves in registers out of the
// Go heap (see package cleancall).
type clearingP11 struct {
	*pkcs11.Ctx
	encrypt, decrypt, sign unsafe.Pointer // the module's C_Encrypt, C_Decrypt, C_Sign
}

// Positions in CK_FUNCTION_LIST, counted from C_Initialize.
const (
	fnEncrypt = 30
	fnDecrypt = 34
	fnSign    = 43
)

// newClearingP11 finds the module's C_Encrypt, C_Decrypt and C_Sign in
// the function list of ctx. A context whose layout is not miekg/pkcs11
// v1.1.2's keeps miekg/pkcs11's calls, and the caller logs it.
func newClearingP11(ctx *pkcs11.Ctx) (p11, error) {
	v := reflect.ValueOf(ctx).Elem()
	if v.NumField() != 1 || v.Field(0).Kind() != reflect.Pointer {
		return ctx, errors.New("hsm: miekg/pkcs11's context is not laid out as expected; C_Encrypt, C_Decrypt and C_Sign go through its length query and unwiped C buffers")
	}
	raw := v.Field(0).UnsafePointer()
	enc, dec, sign := C.cv_function(raw, fnEncrypt), C.cv_function(raw, fnDecrypt), C.cv_function(raw, fnSign)
	if enc == nil || dec == nil || sign == nil {
		return ctx, errors.New("hsm: the module's function list lacks C_Encrypt, C_Decrypt or C_Sign")
	}
	return &clearingP11{Ctx: ctx, encrypt: enc, decrypt: dec, sign: sign}, nil
}

// gcmTagOverhead is the most any mechanism the vault encrypts with adds
// to its input: AES-GCM's 16-byte tag (AES-ECB adds nothing).
const gcmTagOverhead = 16

// Encrypt runs C_Encrypt once, into a buffer 16 bytes longer than the
// plaintext.
func (c *clearingP11) Encrypt(sh pkcs11.SessionHandle, plaintext []byte) ([]byte, error) {
	return c.call(c.encrypt, sh, plaintext, len(plaintext)+gcmTagOverhead)
}

// Decrypt runs C_Decrypt once, into a buffer as long as the ciphertext:
// no mechanism the vault uses (AES-GCM, AES-ECB, raw RSA) yields more.
func (c *clearingP11) Decrypt(sh pkcs11.SessionHandle, ciphertext []byte) ([]byte, error) {
	return c.call(c.decrypt, sh, ciphertext, len(ciphertext))
}

// macMaxLen is the longest MAC the vault asks of C_Sign: HMAC-SHA256's
// 32 bytes, with room for HMAC-SHA512 (CMAC gives 16).
const macMaxLen = 64

// Sign runs C_Sign once, into a buffer as long as any MAC the vault uses.
func (c *clearingP11) Sign(sh pkcs11.SessionHandle, message []byte) ([]byte, error) {
	return c.call(c.sign, sh, message, macMaxLen)
}

func (c *clearingP11) call(fn unsafe.Pointer, sh pkcs11.SessionHandle, in []byte, outLen int) ([]byte, error) {
	if len(in) == 0 {
		// Tokens refuse a NULL input pointer even for no bytes.
		in = make([]byte, 1)[:0:1]
	}
	inPtr := (*C.uchar)(unsafe.Pointer(unsafe.SliceData(in)))
	out := make([]byte, max(outLen, 1))
	n := C.cv_ulong(outLen)
	g := cleancall.Begin()
	rv := C.cv_crypt(fn, C.cv_ulong(sh), inPtr, C.cv_ulong(len(in)), (*C.uchar)(unsafe.Pointer(&out[0])), &n)
	g.End()
	if rv != 0 {
		clear(out)
		return nil, pkcs11.Error(rv)
	}
	return out[:n], nil
}
