package hsm

import (
	"errors"
	"fmt"

	"github.com/cardvault/cardvault/vault"
	"regexp"
	"strconv"

	"github.com/miekg/pkcs11"
)

// ErrCrypto is the one error a caller sees when a cryptographic operation
// fails for a reason rooted in its input: a tag mismatch, bad padding, an
// unknown key version, a malformed ciphertext. It never says which, so that
// no caller can build an oracle on the difference. It is the vault's own
// ErrCrypto, so the kind reaches the HTTP layer unchanged.
var ErrCrypto = vault.ErrCrypto

// ErrUnavailable reports that the token could not serve the operation even
// after the adapter re-opened its sessions and logged in again. Callers fail
// closed (HTTP 503); nothing about the input is implied.
var ErrUnavailable = vault.ErrUnavailable

// ErrKeyNotFound reports that no key with the requested purpose and version
// exists in the token. It is never answered by generating one; to a client
// it is the vault being unavailable.
var ErrKeyNotFound = &vault.Error{Kind: vault.KindUnavailable, Msg: "hsm: key not found"}

// ErrNoOAEPSHA256 reports a token that offers neither RSA-OAEP with
// SHA-256 nor raw RSA to decode it from: the Solaris PIN route cannot
// serve there, and says why; every other route can.
var ErrNoOAEPSHA256 = &vault.Error{Kind: vault.KindUnsupported, Msg: "the HSM offers neither CKM_RSA_PKCS_OAEP with SHA-256 nor CKM_RSA_X_509, which opening a PIN JWE (RSA-OAEP-256) needs"}

// fault is how the adapter classifies a PKCS#11 return code. Each
// recoverable class has its own remedy (Module.recover), the smallest that
// repairs it: a network HSM drops single sessions and caps their number far
// more often than it loses the login or goes away.
type fault int

const (
	faultNone    fault = iota
	faultInput         // the input or the key: surfaces as ErrCrypto
	faultSession       // this session is gone (dropped, closed): retry on another
	faultLogin         // the login or the object handles are gone (the token restarted): log in again on a new generation
	faultBusy          // the token has no session to give (CKR_SESSION_COUNT): wait for one
	faultToken         // the library or the token is gone: drain, re-initialise, log in
	faultDevice        // the device itself failed: fail closed
)

// recoverable reports the classes a retry can cure.
func (f fault) recoverable() bool {
	return f == faultSession || f == faultLogin || f == faultBusy || f == faultToken
}

// errRenew marks a failure that only a new generation repairs although
// its code says less: crypto11 keeps dead sessions in its pool, so a lost
// session under a crypto11 call needs a new crypto11 context.
type errRenew struct{ err error }

func (e errRenew) Error() string { return e.err.Error() }
func (e errRenew) Unwrap() error { return e.err }

// renewIfLost marks err, from a crypto11 call, as errRenew when its
// session was lost.
func renewIfLost(err error) error {
	if classify(err) == faultSession {
		return errRenew{err}
	}
	return err
}

// ckrPattern recovers a return code from an error that crypto11 flattened
// to text with %v; its GCM and HMAC paths do that, and recovery depends on
// the code.
var ckrPattern = regexp.MustCompile(`pkcs11: 0x([0-9A-Fa-f]+):`)

// returnCode extracts the PKCS#11 CKR_ code from err, if it carries one.
func returnCode(err error) (uint, bool) {
	var p11err pkcs11.Error
	if errors.As(err, &p11err) {
		return uint(p11err), true
	}
	if err == nil {
		return 0, false
	}
	m := ckrPattern.FindStringSubmatch(err.Error())
	if m == nil {
		return 0, false
	}
	code, perr := strconv.ParseUint(m[1], 16, 64)
	if perr != nil {
		return 0, false
	}
	return uint(code), true
}

// classify maps an error from the token onto the adapter's fault classes.
// Decryption calls first pass their error through decryptFault, because a
// failed authentication is not a device fault.
func classify(err error) fault {
	if err == nil {
		return faultNone
	}
	if errors.As(err, new(errRenew)) {
		return faultLogin
	}
	code, ok := returnCode(err)
	if !ok {
		return faultInput
	}
	switch code {
	case pkcs11.CKR_SESSION_HANDLE_INVALID,
		pkcs11.CKR_SESSION_CLOSED:
		return faultSession
	case pkcs11.CKR_USER_NOT_LOGGED_IN,
		pkcs11.CKR_OBJECT_HANDLE_INVALID,
		pkcs11.CKR_KEY_HANDLE_INVALID:
		return faultLogin
	case pkcs11.CKR_SESSION_COUNT:
		return faultBusy
	case pkcs11.CKR_CRYPTOKI_NOT_INITIALIZED,
		pkcs11.CKR_DEVICE_REMOVED,
		pkcs11.CKR_TOKEN_NOT_PRESENT,
		pkcs11.CKR_TOKEN_NOT_RECOGNIZED:
		return faultToken
	case pkcs11.CKR_DEVICE_ERROR,
		pkcs11.CKR_DEVICE_MEMORY,
		pkcs11.CKR_HOST_MEMORY,
		pkcs11.CKR_GENERAL_ERROR,
		pkcs11.CKR_FUNCTION_FAILED:
		return faultDevice
	default:
		return faultInput
	}
}

// describe names a PKCS#11 failure for operators' logs. It carries the call
// and the return code, never data.
func describe(call string, err error) error {
	return fmt.Errorf("%s: %w", call, err)
}

// describeIf is describe for a possibly nil error.
func describeIf(call string, err error) error {
	if err == nil {
		return nil
	}
	return describe(call, err)
}

// decryptFault classifies the error of C_Decrypt itself. SoftHSM2 reports a
// GCM tag mismatch as CKR_GENERAL_ERROR (measured on 2.6.1), and other
// tokens use CKR_ENCRYPTED_DATA_INVALID or CKR_ENCRYPTED_DATA_LEN_RANGE, so
// once C_DecryptInit has accepted the key, anything but a lost session or
// an unambiguous device failure is taken as the input's fault: ErrCrypto,
// never a reconnect or a 503.
func decryptFault(call string, err error) error {
	if err == nil {
		return nil
	}
	if classify(err).recoverable() || deviceFailure(err) {
		return describe(call, err)
	}
	return ErrCrypto
}

// deviceFailure reports the device-class codes no input can cause; the
// ambiguous CKR_GENERAL_ERROR and CKR_FUNCTION_FAILED are left out.
func deviceFailure(err error) bool {
	code, ok := returnCode(err)
	return ok && (code == pkcs11.CKR_DEVICE_ERROR || code == pkcs11.CKR_DEVICE_MEMORY || code == pkcs11.CKR_HOST_MEMORY)
}
