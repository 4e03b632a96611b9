package hsm

/*
#cgo LDFLAGS: -ldl
#include <dlfcn.h>
#include <stdlib.h>

typedef unsigned long cv_ulong;
typedef cv_ulong (*cv_get_function_list)(void **);
typedef cv_ulong (*cv_decrypt_fn)(cv_ulong, unsigned char *, cv_ulong, unsigned char *, cv_ulong *);

// The head of CK_FUNCTION_LIST: a CK_VERSION, then the function pointers
// in the order PKCS#11 fixes. C_Decrypt is the 35th.
struct cv_function_list_head {
	unsigned char version[2];
	void *fns[35];
};

// cv_decrypt_symbol returns the module's C_Decrypt from its function list.
// The module is already loaded (miekg/pkcs11 loaded it), so dlopen hands
// back the same instance, whose sessions the caller's handles name.
static void *cv_decrypt_symbol(const char *path) {
	void *h = dlopen(path, RTLD_NOW | RTLD_LOCAL);
	if (!h) return 0;
	cv_get_function_list gfl = (cv_get_function_list)dlsym(h, "C_GetFunctionList");
	if (!gfl) return 0;
	void *list = 0;
	if (gfl(&list) != 0 || !list) return 0;
	return ((struct cv_function_list_head *)list)->fns[34];
}

static cv_ulong cv_decrypt(void *fn, cv_ulong sh, unsigned char *in, cv_ulong inlen, unsigned char *out, cv_ulong *outlen) {
	return ((cv_decrypt_fn)fn)(sh, in, inlen, out, outlen);
}
*/
import "C"

import (
	"errors"
	"unsafe"

	"github.com/miekg/pkcs11"
)

// clearingP11 is the module's PKCS#11 calls with C_Decrypt made straight
// into Go memory. miekg/pkcs11's Decrypt has the module write the
// plaintext (an opened card record, a PIN block) into a buffer it
// mallocs, copies it, and frees the buffer without wiping it: the clear
// data stays in freed C memory. Here the module writes into a Go buffer
// the caller clears, and no copy is made.
type clearingP11 struct {
	*pkcs11.Ctx
	decrypt unsafe.Pointer // the module's C_Decrypt
}

// newClearingP11 finds the module's C_Decrypt. A module that does not
// publish a function list this way keeps miekg/pkcs11's path, and the
// caller logs it.
func newClearingP11(ctx *pkcs11.Ctx, module string) (p11, error) {
	path := C.CString(module)
	defer C.free(unsafe.Pointer(path))
	fn := C.cv_decrypt_symbol(path)
	if fn == nil {
		return ctx, errors.New("hsm: the module's C_Decrypt could not be found through C_GetFunctionList; decrypted data passes through a C buffer that is not wiped")
	}
	return &clearingP11{Ctx: ctx, decrypt: fn}, nil
}

// Decrypt runs C_Decrypt once, into a buffer as long as the ciphertext:
// no mechanism the vault uses (AES-GCM, AES-ECB, raw RSA) yields more.
func (c *clearingP11) Decrypt(sh pkcs11.SessionHandle, ciphertext []byte) ([]byte, error) {
	if len(ciphertext) == 0 {
		return c.Ctx.Decrypt(sh, ciphertext)
	}
	out := make([]byte, len(ciphertext))
	n := C.cv_ulong(len(out))
	rv := C.cv_decrypt(c.decrypt, C.cv_ulong(sh), (*C.uchar)(unsafe.Pointer(&ciphertext[0])), C.cv_ulong(len(ciphertext)),
		(*C.uchar)(unsafe.Pointer(&out[0])), &n)
	if rv != 0 {
		clear(out)
		return nil, pkcs11.Error(rv)
	}
	return out[:n], nil
}
