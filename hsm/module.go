// Package hsm is cardvault's PKCS#11 adapter. Keys never leave the token:
// the adapter finds them by label ("purpose/vN"), and every operation on
// them runs inside the token.
//
// crypto11 owns the module and the login: it loads the library, finds the
// token by label, logs in on a long-lived session and generates keys. The
// operations run on sessions of the adapter's own through miekg/pkcs11,
// because crypto11 either has no call for them (CMAC, ECB, RSA_X_509, OAEP
// with a separate MGF1 hash, object creation and destruction), panics on a
// device error (cipher.AEAD.Seal, hash.Hash.Sum), or flattens the PKCS#11
// return code the recovery logic needs.
//
// Recovery takes the smallest remedy that repairs a fault (errors.go), once
// per operation, and then retries it; every operation the adapter retries
// is idempotent, since nothing was returned. A lost session is replaced
// alone; a token with no session to give is waited for; a lost login, or
// object handles the token no longer knows, start a new generation of the
// connection (a new crypto11 context logs in again) once the old one's
// calls have returned; only a library or token that is gone is
// re-initialised, never while a call is inside it either, because PKCS#11
// leaves a call concurrent with C_Finalize undefined (SoftHSM2 crashes). Input faults (a GCM tag mismatch, bad padding) never trigger
// any of it.
package hsm

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ThalesGroup/crypto11"
	"github.com/miekg/pkcs11"

	"github.com/cardvault/cardvault/internal/cleancall"
)

// Config selects and unlocks a token.
type Config struct {
	Module string // path of the PKCS#11 library
	// The token: every one of these given must match, and exactly one
	// token may (selector.go).
	TokenLabel  string
	TokenSerial string
	Slot        *uint
	PIN         string // user PIN; from a file or the environment, never a flag
	// MaxSessions caps the sessions the adapter keeps open for
	// operations; 0 means 32. The token's own limit (ulMaxSessionCount)
	// lowers it, less the sessions crypto11 keeps for the login and key
	// generation.
	MaxSessions int
	// KeyRefresh is how long the adapter trusts its view of which versions
	// exist before it lists the token again, so that a version another
	// process created (a rotation ceremony) is picked up by a running
	// server; 0 means 5s.
	KeyRefresh time.Duration
	// CallTimeout bounds an operation: the wait for one of MaxSessions
	// session slots plus the token's work. An operation that exceeds it
	// fails closed (ErrUnavailable, HTTP 503) while the token finishes
	// the call in the background; 0 means 10s.
	CallTimeout time.Duration
	Logger      *slog.Logger
	// Catalog, when set, pins the key catalog (pinning.go): the server and
	// the ceremonies that use keys for data set it; ceremonies that make
	// keys record them in it.
	Catalog KeyRecords
	// Profile forces settings of the token's profile (profile.go) that
	// would otherwise be probed, as key=value pairs separated by commas,
	// e.g. "gcm-iv=refused,raw-rsa=no": for a token whose trials mislead,
	// or to hold a fleet to one path.
	Profile string
}

func (c *Config) validate() error {
	var missing []string
	if c.Module == "" {
		missing = append(missing, "module")
	}
	if c.TokenLabel == "" && c.TokenSerial == "" && c.Slot == nil {
		missing = append(missing, "token label, serial or slot")
	}
	if c.PIN == "" {
		missing = append(missing, "PIN")
	}
	if len(missing) > 0 {
		return fmt.Errorf("hsm config: missing %s", strings.Join(missing, ", "))
	}
	if c.MaxSessions == 0 {
		c.MaxSessions = 32
	}
	if c.KeyRefresh == 0 {
		c.KeyRefresh = 5 * time.Second
	}
	if c.CallTimeout == 0 {
		c.CallTimeout = 10 * time.Second
	}
	if c.MaxSessions < 2 {
		return fmt.Errorf("hsm config: max sessions %d, want at least 2", c.MaxSessions)
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	_, err := parseForced(c.Profile)
	return err
}

// Module is a connection to one token. It is safe for concurrent use.
type Module struct {
	cfg  Config
	raw  *pkcs11.Ctx
	p    p11 // raw, or a fault-injecting wrapper in tests
	rand io.Reader
	log  *slog.Logger

	mu     sync.Mutex // serialises connect, reconnect and Close
	cur    atomic.Pointer[conn]
	closed bool // guarded by mu

	// slots holds one token per operation running in the token, so that
	// at most MaxSessions run at once, whatever the request load.
	slots chan struct{}

	// backupByWrap: the keys the module makes are extractable, only
	// wrapped under a trusted key (SetKeyBackup).
	backupByWrap atomic.Bool
	// forced are the profile settings the configuration forces.
	forced map[string]string
	// oaepSHA256 is where OAEP with SHA-256 runs (oaepUntried, ...):
	// probed on the set_pin key, else learnt on first use, or forced. It
	// outlives connections, as the token's abilities do.
	oaepSHA256 atomic.Int32

	reconnects atomic.Int64
	// obs is told of every operation (observer.go).
	obs atomic.Pointer[Observer]
}

// conn is one generation of the connection: a crypto11 context, the slot,
// a pool of the adapter's own sessions and the handles found so far.
type conn struct {
	c11    *crypto11.Context
	p      p11
	slot   uint
	label  string // the token's label
	serial string // the token's serial number, which key records name
	pool   *sessionPool
	// sessions is how many operations may run at once: MaxSessions, or
	// less where the token allows fewer sessions.
	sessions int

	handleMu sync.RWMutex
	handles  map[handleKey]pkcs11.ObjectHandle
	pubKeys  map[string]*rsa.PublicKey // RSA public halves per key pair label

	versions   atomic.Pointer[versionView]
	refresh    time.Duration
	catalog    KeyRecords  // nil: every vault-labelled object is used
	noCopyable atomic.Bool // the token refuses CKA_COPYABLE in token key templates
	madeKeys   atomic.Bool // a token key was made on this connection

	// The token's behaviour where tokens differ (profile.go), fixed when
	// the connection is made.
	listed        map[uint]bool // the mechanisms the token lists
	gcmIV         string        // honoured, overwritten or refused
	rawRSA        bool          // CKM_RSA_X_509 is offered
	kcvECB        bool          // secret AES keys are checked by ECB, not CMAC
	wrapMech      uint          // the backup wrap mechanism, 0 for none
	untrustedWrap bool          // the token wraps CKA_WRAP_WITH_TRUSTED keys under any key
	log           *slog.Logger
	refreshing    sync.Mutex // one caller lists the token; the rest use the view they have
	// missed is when each label a caller named was last looked for
	// outside the view and not found (lookAgain); guarded by refreshing.
	missed map[string]time.Time

	// inflight lets close wait for calls running on this generation;
	// retired, set under its write lock, turns away a caller that took
	// the generation before it was replaced.
	inflight sync.RWMutex
	retired  atomic.Bool
}

// Open loads the module, logs in to the token and probes its mechanisms.
func Open(cfg Config) (*Module, error) { return openWith(cfg, nil) }

// openWith is Open with the adapter's own PKCS#11 calls passed through
// wrap, which tests use to inject faults.
func openWith(cfg Config, wrap func(p11) p11) (*Module, error) {
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	raw := pkcs11.New(cfg.Module)
	if raw == nil {
		return nil, fmt.Errorf("hsm: cannot load PKCS#11 module %s", cfg.Module)
	}
	m := &Module{cfg: cfg, raw: raw, p: raw, rand: rand.Reader, log: cfg.Logger}
	m.forced, _ = parseForced(cfg.Profile) // validated above
	var err error
	if m.p, err = newClearingP11(raw); err != nil {
		m.log.Warn("plaintext from the token passes through an unwiped C buffer", "error", err)
	}
	if wrap != nil {
		m.p = wrap(m.p)
	}
	c, err := m.current()
	if err != nil {
		raw.Destroy()
		return nil, err
	}
	m.slots = make(chan struct{}, c.sessions)
	if c.sessions < cfg.MaxSessions {
		m.log.Info("the token allows fewer sessions than configured", "sessions", c.sessions, "configured", cfg.MaxSessions)
	}
	if err := m.Probe(context.Background()); err != nil {
		m.Close()
		return nil, err
	}
	if c, err := m.current(); err == nil {
		p := c.profile(m)
		m.log.Info("hsm profile", "token", c.label, "serial", c.serial, "profile", p.Name(), "forced", strings.Join(p.Forced, ","), "cleared_registers", cleancall.Registers())
	}
	return m, nil
}

// Close logs out and unloads the module. It is safe to call once.
func (m *Module) Close() {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return
	}
	m.closed = true
	if c := m.cur.Swap(nil); c != nil {
		c.close()
	}
	m.raw.Destroy()
}

// Label is the label of the token the module serves.
func (m *Module) Label() string {
	if c := m.cur.Load(); c != nil {
		return c.label
	}
	return m.cfg.TokenLabel
}

// KeyRefresh is how long the module, and every server configured alike,
// may go on using its view of the key versions.
func (m *Module) KeyRefresh() time.Duration { return m.cfg.KeyRefresh }

// Reconnects counts how often the adapter re-established its connection.
func (m *Module) Reconnects() int64 { return m.reconnects.Load() }

// current returns the live connection, making one if there is none.
func (m *Module) current() (*conn, error) {
	if c := m.cur.Load(); c != nil {
		return c, nil
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if c := m.cur.Load(); c != nil {
		return c, nil
	}
	if m.closed {
		// The PKCS#11 context is destroyed: connecting through it again
		// would crash the process.
		return nil, errClosed
	}
	c, err := m.connect()
	if err != nil {
		return nil, err
	}
	m.cur.Store(c)
	return c, nil
}

// crypto11Sessions is what crypto11 keeps open beside the adapter's pool:
// the session that holds the login and one for key generation (crypto11
// wants at least two).
const crypto11Sessions = 2

func (m *Module) connect() (*conn, error) {
	c11cfg := &crypto11.Config{
		Path:        m.cfg.Module,
		Pin:         m.cfg.PIN,
		MaxSessions: crypto11Sessions,
		GCMIVLength: 12, // crypto11 defaults to 16; the vault's format uses 12
	}
	m.cfg.crypto11Selector(c11cfg)
	c11, err := crypto11.Configure(c11cfg)
	if errors.Is(err, pkcs11.Error(pkcs11.CKR_CRYPTOKI_NOT_INITIALIZED)) {
		// Another user of the library in this process still holds
		// crypto11's reference to it, so crypto11 did not initialise it
		// again after it was finalised.
		if ierr := m.p.Initialize(); ierr == nil {
			c11, err = crypto11.Configure(c11cfg)
		}
	}
	if err != nil {
		// crypto11's message names the token and the return code, not the PIN.
		return nil, fmt.Errorf("hsm: open %s: %w", m.cfg.selector(), err)
	}
	// crypto11 initialised the library; ours shares it.
	if err := m.p.Initialize(); err != nil && !errors.Is(err, pkcs11.Error(pkcs11.CKR_CRYPTOKI_ALREADY_INITIALIZED)) {
		_ = c11.Close()
		return nil, fmt.Errorf("hsm: C_Initialize: %w", err)
	}
	slot, info, err := findSlot(m.p, &m.cfg)
	if err != nil {
		_ = c11.Close()
		return nil, err
	}
	sessions, err := poolSize(m.cfg.MaxSessions, info.MaxSessionCount)
	if err != nil {
		_ = c11.Close()
		return nil, err
	}
	c := &conn{
		c11:      c11,
		p:        m.p,
		slot:     slot,
		label:    strings.TrimRight(info.Label, " \x00"),
		serial:   strings.TrimRight(info.SerialNumber, " \x00"),
		pool:     newSessionPool(m.p, slot, sessions, m.cfg.CallTimeout),
		sessions: sessions,
		handles:  map[handleKey]pkcs11.ObjectHandle{},
		pubKeys:  map[string]*rsa.PublicKey{},
		refresh:  m.cfg.KeyRefresh,
		catalog:  m.cfg.Catalog,
		log:      m.log,
	}
	if err := m.adapt(c); err != nil {
		c.close()
		return nil, err
	}
	if c.untrustedWrap {
		m.log.Warn("the token ignores CKA_WRAP_WITH_TRUSTED; keys are made never extractable, and backups are the token's own", "token", c.label)
	}
	if err := c.loadVersions(); err != nil {
		c.close()
		return nil, err
	}
	if err := m.probeOAEP(c); err != nil {
		c.close()
		return nil, err
	}
	return c, nil
}

// poolSize is how many sessions the adapter's pool may hold: the
// configured number, within what the token allows beside crypto11's.
// tokenMax is ulMaxSessionCount, where 0 (CK_EFFECTIVELY_INFINITE) and
// all ones (CK_UNAVAILABLE_INFORMATION) say nothing.
func poolSize(configured int, tokenMax uint) (int, error) {
	if tokenMax == 0 || tokenMax == ^uint(0) || tokenMax >= uint(configured+crypto11Sessions) {
		return configured, nil
	}
	if tokenMax <= crypto11Sessions {
		return 0, fmt.Errorf("hsm: the token allows %d sessions; cardvault needs at least %d", tokenMax, crypto11Sessions+1)
	}
	return int(tokenMax) - crypto11Sessions, nil
}

// close waits for the calls on this generation to return, then closes
// its sessions and its crypto11 context.
func (c *conn) close() {
	c.inflight.Lock()
	c.closeDrained()
}

// drain waits, up to d, until no call runs on this generation, and then
// keeps every later one out. It reports whether it got there.
func (c *conn) drain(d time.Duration) bool {
	deadline := time.Now().Add(d)
	for !c.inflight.TryLock() {
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(time.Millisecond)
	}
	return true
}

// closeDrained is close for a generation whose write lock is held.
func (c *conn) closeDrained() {
	defer c.inflight.Unlock()
	c.retired.Store(true)
	c.pool.drain()
	// The last crypto11 context on the library finalises it; an older or
	// newer generation's keeps it alive.
	_ = c.c11.Close()
}

// replace puts a new generation of the connection in place of broken,
// unless another caller already has. It first drains broken's calls,
// within the call timeout, and keeps later ones out: the new generation
// logs in, which makes the old generation's cached object handles usable
// again, and after a token restart a handle may name another object
// (measured on SoftHSM2: an HMAC key's handle reached an AES key,
// CKR_KEY_FUNCTION_NOT_PERMITTED). A call that stays inside the token past
// the bound leaves broken in place, and the next caller to meet the fault
// tries again.
//
// With reinit, the library or the token went away: broken is closed
// first, which finalises the library (its crypto11 context is the last),
// and the new generation initialises it again. Without, the library stays
// initialised: the new generation is made first.
func (m *Module) replace(broken *conn, reinit bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.cur.Load() != broken || m.closed {
		return
	}
	m.cur.Store(nil) // new callers wait on m.mu
	if !broken.drain(m.cfg.CallTimeout) {
		m.cur.Store(broken)
		m.log.Error("hsm: a call is still inside the token; not replacing the connection under it", "timeout", m.cfg.CallTimeout)
		return
	}
	if reinit {
		broken.closeDrained()
	}
	c, err := m.connect()
	if !reinit {
		broken.closeDrained()
	}
	m.reconnects.Add(1)
	if err != nil {
		m.log.Warn("hsm reconnect failed", "error", err)
		return
	}
	m.cur.Store(c)
	m.log.Info("hsm reconnected", "reconnects", m.reconnects.Load(), "reinitialised", reinit)
}

// do runs an idempotent operation within the call timeout: it waits for
// a session slot, then runs the operation, reconnecting and retrying once
// when the session or login was lost. Device faults, a token that stays
// away, no slot free in time and a call that outlives the timeout all
// fail closed as ErrUnavailable. A call left running finishes in the
// background and only then gives its slot back, so a hung token takes
// at most MaxSessions goroutines with it.
func (m *Module) do(ctx context.Context, op string, fn func(*conn) error) (err error) {
	start := time.Now()
	obs := m.observer()
	defer func() { obs.Call(op, outcomeOf(err), time.Since(start)) }()
	callCtx, cancel := context.WithTimeout(ctx, m.cfg.CallTimeout)
	defer cancel()
	select {
	case m.slots <- struct{}{}:
		obs.SlotWait(time.Since(start))
	case <-callCtx.Done():
		if err := ctx.Err(); err != nil {
			return err
		}
		m.log.Warn("hsm busy: no session slot free within the call timeout", "op", op, "sessions", cap(m.slots))
		return errBusy
	}
	done := make(chan error, 1)
	go func() {
		defer func() { <-m.slots }()
		done <- m.attempt(callCtx, op, fn)
	}()
	select {
	case err := <-done:
		return err
	case <-callCtx.Done():
		if err := ctx.Err(); err != nil {
			return err
		}
		m.log.Error("hsm call exceeded the call timeout; failing closed", "op", op, "timeout", m.cfg.CallTimeout)
		return ErrUnavailable
	}
}

// errClosed is the answer of a module used after Close.
var errClosed = errors.New("hsm: module closed")

// errBusy is ErrUnavailable for an operation that found no session slot
// within the call timeout, so that metrics can tell saturation from a
// failing token.
var errBusy = fmt.Errorf("%w: no session slot free", ErrUnavailable)

// attempt runs fn, and again after each remedy recover applies.
func (m *Module) attempt(ctx context.Context, op string, fn func(*conn) error) error {
	var used remedies
	for {
		if err := ctx.Err(); err != nil {
			return err
		}
		c, err := m.current()
		if err != nil {
			m.log.Warn("hsm unavailable", "op", op, "error", err)
			return ErrUnavailable
		}
		c.inflight.RLock()
		if c.retired.Load() {
			// Replaced between current and the lock.
			c.inflight.RUnlock()
			continue
		}
		// A stale view is refreshed first, so that a version another
		// process made and recorded is usable by name within the refresh
		// interval, as the active one is.
		if _, err = c.view(); err == nil {
			err = fn(c)
		}
		c.inflight.RUnlock()
		if code := returnCodeName(err); code != "" {
			m.observer().PKCS11Error(code)
		}
		f := classify(err)
		switch {
		case f == faultNone || f == faultInput:
			return err
		case m.recover(c, f, &used, op, err):
			continue
		}
		m.log.Error("hsm operation failed", "op", op, "error", err)
		if f == faultBusy {
			return errBusy
		}
		return ErrUnavailable
	}
}

// remedies counts what recover has done for one operation: each remedy
// at most once (a lost session twice, the second time with every idle
// session dropped), so a fault that outlives its remedy fails closed.
type remedies struct {
	sessions           int
	renewed, reconnect bool
}

// recover applies the remedy for fault f of an operation on generation c
// and reports whether the operation should run again.
func (m *Module) recover(c *conn, f fault, used *remedies, op string, err error) bool {
	switch f {
	case faultSession:
		if used.sessions == 2 {
			return false
		}
		used.sessions++
		if used.sessions == 2 {
			// Two dead sessions in a row: the idle ones are likely dead
			// too (the token restarted), so the next is a new one.
			c.pool.drain()
		}
		m.log.Debug("hsm session lost; retrying on another", "op", op, "error", err)
		return true
	case faultLogin:
		if used.renewed {
			return false
		}
		used.renewed = true
		m.log.Warn("hsm login or key handles lost; logging in again", "op", op, "error", err)
		m.replace(c, false)
		return true
	case faultToken:
		if used.reconnect {
			return false
		}
		used.reconnect = true
		m.log.Warn("hsm token or library gone; reconnecting", "op", op, "error", err)
		m.replace(c, true)
		return true
	}
	// faultBusy: the pool already waited the call timeout for a session.
	return false
}

// withSession runs fn on one of the connection's own sessions.
func (c *conn) withSession(fn func(pkcs11.SessionHandle) error) error {
	sh, err := c.pool.get()
	if err != nil {
		return describe("C_OpenSession", err)
	}
	err = fn(sh)
	c.pool.put(sh, err)
	return err
}

// Object classes as the handle cache names them.
const (
	classSecret  = pkcs11.CKO_SECRET_KEY
	classPrivate = pkcs11.CKO_PRIVATE_KEY
	classPublic  = pkcs11.CKO_PUBLIC_KEY
)

// handleKey names a cached object handle.
type handleKey struct {
	label string
	class uint
}

// handle finds a key object by label and class, caching the answer for the
// life of the connection. A missing key is ErrKeyNotFound.
func (c *conn) handle(sh pkcs11.SessionHandle, label string, class uint) (pkcs11.ObjectHandle, error) {
	if v := c.versions.Load(); v != nil && v.pinned && !v.usable[label] {
		// A version named explicitly (a sealed record's, a kid) is held
		// to the pinned catalog as much as the active one.
		return 0, fmt.Errorf("%w: %s is not a recorded, matching key", ErrKeyNotFound, label)
	}
	cacheKey := handleKey{label, class}
	c.handleMu.RLock()
	h, ok := c.handles[cacheKey]
	c.handleMu.RUnlock()
	if ok {
		return h, nil
	}
	hs, err := c.findObjects(sh, []*pkcs11.Attribute{
		pkcs11.NewAttribute(pkcs11.CKA_LABEL, label),
		pkcs11.NewAttribute(pkcs11.CKA_CLASS, class),
	})
	if err != nil {
		return 0, err
	}
	switch len(hs) {
	case 0:
		// Private objects are invisible to a session that lost its login;
		// that is a session fault to recover from, not a missing key.
		if info, err := c.p.GetSessionInfo(sh); err != nil {
			return 0, describe("C_GetSessionInfo", err)
		} else if info.State != pkcs11.CKS_RW_USER_FUNCTIONS {
			return 0, describe("C_FindObjects", pkcs11.Error(pkcs11.CKR_USER_NOT_LOGGED_IN))
		}
		return 0, fmt.Errorf("%w: %s", ErrKeyNotFound, label)
	case 1:
	default:
		return 0, fmt.Errorf("hsm: %d objects labelled %s", len(hs), label)
	}
	c.handleMu.Lock()
	c.handles[cacheKey] = hs[0]
	c.handleMu.Unlock()
	return hs[0], nil
}

// Keys lists the vault's keys in the token as of now, each with its check
// value, whether it is active and, with a catalog pinned, why it is
// rejected.
func (m *Module) Keys(ctx context.Context) ([]KeyInfo, error) {
	var out []KeyInfo
	err := m.do(ctx, "list", func(c *conn) error {
		if err := c.loadVersions(); err != nil {
			return err
		}
		out = c.versions.Load().keys
		return nil
	})
	return out, err
}

// TokenInfo identifies the token for transcripts.
type TokenInfo struct {
	Label, Serial, Model, Manufacturer string
	// Profile is the name of the token's profile as the module uses it
	// (profile.go).
	Profile string `json:",omitempty"`
}

// Token reads the token's identity.
func (m *Module) Token(ctx context.Context) (TokenInfo, error) {
	var ti TokenInfo
	err := m.do(ctx, "token info", func(c *conn) error {
		info, err := c.p.GetTokenInfo(c.slot)
		if err != nil {
			return describe("C_GetTokenInfo", err)
		}
		trim := func(s string) string { return strings.TrimRight(s, " \x00") }
		ti = TokenInfo{trim(info.Label), trim(info.SerialNumber), trim(info.Model), trim(info.ManufacturerID), c.profile(m).Name()}
		return nil
	})
	return ti, err
}
