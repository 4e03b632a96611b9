package hsm

import (
	"github.com/miekg/pkcs11"
)

// p11 is the inward seam: the PKCS#11 calls this package makes on its own
// sessions. *pkcs11.Ctx satisfies it; tests wrap it to inject faults.
type p11 interface {
	Initialize(opts ...pkcs11.InitializeOption) error
	Finalize() error
	GetSlotList(tokenPresent bool) ([]uint, error)
	GetTokenInfo(slotID uint) (pkcs11.TokenInfo, error)
	GetMechanismList(slotID uint) ([]*pkcs11.Mechanism, error)
	OpenSession(slotID uint, flags uint) (pkcs11.SessionHandle, error)
	CloseSession(sh pkcs11.SessionHandle) error
	GetSessionInfo(sh pkcs11.SessionHandle) (pkcs11.SessionInfo, error)
	FindObjectsInit(sh pkcs11.SessionHandle, temp []*pkcs11.Attribute) error
	FindObjects(sh pkcs11.SessionHandle, max int) ([]pkcs11.ObjectHandle, bool, error)
	FindObjectsFinal(sh pkcs11.SessionHandle) error
	GetAttributeValue(sh pkcs11.SessionHandle, o pkcs11.ObjectHandle, a []*pkcs11.Attribute) ([]*pkcs11.Attribute, error)
	SetAttributeValue(sh pkcs11.SessionHandle, o pkcs11.ObjectHandle, a []*pkcs11.Attribute) error
	CreateObject(sh pkcs11.SessionHandle, temp []*pkcs11.Attribute) (pkcs11.ObjectHandle, error)
	GenerateKey(sh pkcs11.SessionHandle, m []*pkcs11.Mechanism, temp []*pkcs11.Attribute) (pkcs11.ObjectHandle, error)
	DestroyObject(sh pkcs11.SessionHandle, oh pkcs11.ObjectHandle) error
	EncryptInit(sh pkcs11.SessionHandle, m []*pkcs11.Mechanism, o pkcs11.ObjectHandle) error
	Encrypt(sh pkcs11.SessionHandle, message []byte) ([]byte, error)
	DecryptInit(sh pkcs11.SessionHandle, m []*pkcs11.Mechanism, o pkcs11.ObjectHandle) error
	Decrypt(sh pkcs11.SessionHandle, cypher []byte) ([]byte, error)
	Login(sh pkcs11.SessionHandle, userType uint, pin string) error
	Logout(sh pkcs11.SessionHandle) error
	WrapKey(sh pkcs11.SessionHandle, m []*pkcs11.Mechanism, wrappingkey, key pkcs11.ObjectHandle) ([]byte, error)
	UnwrapKey(sh pkcs11.SessionHandle, m []*pkcs11.Mechanism, unwrappingkey pkcs11.ObjectHandle, wrappedkey []byte, a []*pkcs11.Attribute) (pkcs11.ObjectHandle, error)
	SignInit(sh pkcs11.SessionHandle, m []*pkcs11.Mechanism, o pkcs11.ObjectHandle) error
	Sign(sh pkcs11.SessionHandle, message []byte) ([]byte, error)
}

// sessionPool holds idle sessions on one slot. Unlike crypto11's pool it
// evicts a session whose call failed with a session-class code, so a dead
// session is never handed out twice.
type sessionPool struct {
	p    p11
	slot uint
	idle chan pkcs11.SessionHandle
}

func newSessionPool(p p11, slot uint, size int) *sessionPool {
	return &sessionPool{p: p, slot: slot, idle: make(chan pkcs11.SessionHandle, size)}
}

func (sp *sessionPool) get() (pkcs11.SessionHandle, error) {
	select {
	case sh := <-sp.idle:
		return sh, nil
	default:
		// Login state is per application, so a new session inherits it.
		return sp.p.OpenSession(sp.slot, pkcs11.CKF_SERIAL_SESSION|pkcs11.CKF_RW_SESSION)
	}
}

// put returns a session after use; callErr is the error of the call made on
// it, which decides whether the session is still worth keeping.
func (sp *sessionPool) put(sh pkcs11.SessionHandle, callErr error) {
	if classify(callErr) >= faultSession {
		_ = sp.p.CloseSession(sh)
		return
	}
	select {
	case sp.idle <- sh:
	default:
		_ = sp.p.CloseSession(sh)
	}
}

// drain closes every idle session.
func (sp *sessionPool) drain() {
	for {
		select {
		case sh := <-sp.idle:
			_ = sp.p.CloseSession(sh)
		default:
			return
		}
	}
}
