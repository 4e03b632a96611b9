package hsm

import (
	"sync/atomic"
	"time"

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
// session is never handed out twice, and it meets a token with no session
// to give (CKR_SESSION_COUNT) by waiting for one.
type sessionPool struct {
	p    p11
	slot uint
	idle chan pkcs11.SessionHandle
	// wait bounds how long get waits for a session the token refuses to
	// open: the call timeout, after which the operation fails closed.
	wait time.Duration
	// open counts the sessions the pool has open, idle or in use; limit
	// is how many were open when the token last refused one (0: never),
	// so that callers past it wait for an idle session instead of asking
	// the token again at once.
	open, limit atomic.Int64
}

func newSessionPool(p p11, slot uint, size int, wait time.Duration) *sessionPool {
	return &sessionPool{p: p, slot: slot, idle: make(chan pkcs11.SessionHandle, size), wait: wait}
}

// get hands out an idle session or opens one. A token at its session
// limit is back-pressure, not a fault: a partition's limit is shared with
// other clients, so get waits for one of ours to come back, asking the
// token again after a growing pause, up to sp.wait.
func (sp *sessionPool) get() (pkcs11.SessionHandle, error) {
	select {
	case sh := <-sp.idle:
		return sh, nil
	default:
	}
	deadline := time.Now().Add(sp.wait)
	pause := time.Millisecond
	if l := sp.limit.Load(); l > 0 && sp.open.Load() >= l {
		pause = 20 * time.Millisecond // at the limit learnt: one of ours will come back first
	} else if sh, err := sp.openSession(); classify(err) != faultBusy {
		return sh, err
	}
	for {
		t := time.NewTimer(pause)
		select {
		case sh := <-sp.idle:
			t.Stop()
			return sh, nil
		case <-t.C:
		}
		sh, err := sp.openSession()
		if classify(err) != faultBusy || time.Now().After(deadline) {
			return sh, err
		}
		pause = min(2*pause, 100*time.Millisecond)
	}
}

// openSession opens a session and keeps the pool's counts.
func (sp *sessionPool) openSession() (pkcs11.SessionHandle, error) {
	// Login state is per application, so a new session inherits it.
	sh, err := sp.p.OpenSession(sp.slot, pkcs11.CKF_SERIAL_SESSION|pkcs11.CKF_RW_SESSION)
	switch {
	case err == nil:
		sp.open.Add(1)
	case classify(err) == faultBusy:
		sp.limit.Store(sp.open.Load())
	}
	return sh, err
}

// closeSession closes a session of the pool's.
func (sp *sessionPool) closeSession(sh pkcs11.SessionHandle) {
	sp.open.Add(-1)
	_ = sp.p.CloseSession(sh)
}

// put returns a session after use; callErr is the error of the call made on
// it, which decides whether the session is still worth keeping.
func (sp *sessionPool) put(sh pkcs11.SessionHandle, callErr error) {
	if f := classify(callErr); f == faultSession || f == faultToken || f == faultDevice {
		sp.closeSession(sh)
		return
	}
	select {
	case sp.idle <- sh:
	default:
		sp.closeSession(sh)
	}
}

// drain closes every idle session.
func (sp *sessionPool) drain() {
	for {
		select {
		case sh := <-sp.idle:
			sp.closeSession(sh)
		default:
			return
		}
	}
}
