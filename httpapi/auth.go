package httpapi

import (
	"bufio"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/cardvault/cardvault/vault"
	"github.com/labstack/echo/v4"
)

// API scopes (docs/design.md).
const (
	ScopeCardsWrite  = "cards:write"
	ScopeCardsRead   = "cards:read"
	ScopeCardsReveal = "cards:reveal"
	// ScopeCardsLookup finds a card by its PAN: whether a PAN is in the
	// vault is itself card data, so it is granted apart from cards:read.
	ScopeCardsLookup = "cards:lookup"
	// ScopeCardsVerify checks a CVV and expiry against a card (the
	// authorization host's): it learns match or no match, never a value.
	ScopeCardsVerify = "cards:verify"
	ScopePINWrite    = "pin:write"
	// ScopePINView reveals a card's PIN to the cardholder's single-use key or bound device.
	ScopePINView      = "pin:view"
	ScopeDevicesWrite = "devices:write"
	ScopeSandbox      = "sandbox"
)

// Scopes is the allow-list of scope names.
var Scopes = []string{ScopeCardsWrite, ScopeCardsRead, ScopeCardsReveal, ScopeCardsLookup, ScopeCardsVerify, ScopePINWrite, ScopePINView, ScopeDevicesWrite, ScopeSandbox}

// tokenPrefix marks cardvault API tokens, so a leaked one is recognisable
// by secret scanners.
const tokenPrefix = "cvt_"

// apiToken is one line of the tokens file: the SHA-256 of the token (tokens
// are 256-bit random, so a fast hash is enough), its name and scopes.
type apiToken struct {
	hash   []byte
	name   string
	scopes []string
}

var tokenNamePattern = regexp.MustCompile(`^[A-Za-z0-9_.-]{1,64}$`)

// NewToken makes a token and the tokens-file line that holds only its hash.
func NewToken(name string, scopes []string) (token, line string, err error) {
	if !tokenNamePattern.MatchString(name) {
		return "", "", fmt.Errorf("token name %q: want 1 to 64 letters, digits, '.', '_' or '-'", name)
	}
	if len(scopes) == 0 {
		return "", "", errors.New("a token needs at least one scope")
	}
	for _, s := range scopes {
		if !slices.Contains(Scopes, s) {
			return "", "", fmt.Errorf("unknown scope %q (want some of %s)", s, strings.Join(Scopes, ","))
		}
	}
	raw := make([]byte, 32)
	if _, err := rand.Read(raw); err != nil {
		return "", "", err
	}
	token = tokenPrefix + base64.RawURLEncoding.EncodeToString(raw)
	sum := sha256.Sum256([]byte(token))
	return token, fmt.Sprintf("sha256:%s %s %s", hex.EncodeToString(sum[:]), name, strings.Join(scopes, ",")), nil
}

func parseTokenLine(line string) (apiToken, error) {
	f := strings.Fields(line)
	if len(f) != 3 || !strings.HasPrefix(f[0], "sha256:") {
		return apiToken{}, errors.New("want: sha256:HEX NAME SCOPE[,SCOPE...]")
	}
	h, err := hex.DecodeString(strings.TrimPrefix(f[0], "sha256:"))
	if err != nil || len(h) != sha256.Size {
		return apiToken{}, errors.New("bad hash")
	}
	scopes := strings.Split(f[2], ",")
	for _, s := range scopes {
		if !slices.Contains(Scopes, s) {
			return apiToken{}, fmt.Errorf("unknown scope %q", s)
		}
	}
	return apiToken{hash: h, name: f[1], scopes: scopes}, nil
}

// Tokens verifies bearer tokens against a file of hashes. It re-reads the
// file every second, so a new token works and a revoked one stops within a
// second, without a restart. It fails closed: a missing file, or one that
// others could write, holds no tokens; a malformed line and every line of
// a repeated name are refused, each named in the log, and the rest load.
type Tokens struct {
	path string
	log  *slog.Logger

	mu      sync.RWMutex
	tokens  []apiToken
	checked time.Time
	read    fileStamp // the file as it was when tokens were read from it
}

// fileStamp tells a changed file from the one read: a new token written by
// `cardvault token create` is accepted at once, not at the next reload.
type fileStamp struct {
	mod  time.Time
	size int64
}

// tokenReload is how often the file is read again.
const tokenReload = time.Second

// LoadTokens reads a tokens file. At start a missing or unsafe file is an
// error: a vault with no way to authenticate callers should not start.
func LoadTokens(path string, log *slog.Logger) (*Tokens, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	t := &Tokens{path: path, log: log}
	tokens, stamp, err := t.load()
	if err != nil {
		return nil, err
	}
	t.tokens, t.checked, t.read = tokens, time.Now(), stamp
	return t, nil
}

// ReadTokenNames returns the names in a tokens file, for `token create`
// to refuse a repeated one; malformed lines are skipped.
func ReadTokenNames(path string) ([]string, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	tokens, _ := parseTokens(f)
	names := make([]string, len(tokens))
	for i, t := range tokens {
		names[i] = t.name
	}
	return names, nil
}

// read opens and parses the file, refusing one that is not a regular
// file or that its group or others may write.
func (t *Tokens) load() ([]apiToken, fileStamp, error) {
	f, err := os.Open(t.path)
	if err != nil {
		return nil, fileStamp{}, fmt.Errorf("tokens file: %w", err)
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, fileStamp{}, fmt.Errorf("tokens file: %w", err)
	}
	stamp := fileStamp{mod: st.ModTime(), size: st.Size()}
	if !st.Mode().IsRegular() {
		return nil, stamp, fmt.Errorf("tokens file %s is not a regular file", t.path)
	}
	if err := safeFile(t.path, st); err != nil {
		return nil, stamp, fmt.Errorf("tokens file %s: %w; refusing it", t.path, err)
	}
	tokens, problems := parseTokens(f)
	for _, p := range problems {
		t.log.Error("tokens file line refused", "file", t.path, "problem", p)
	}
	return tokens, stamp, nil
}

// safeFile judges a file as OpenSSH's StrictModes judges
// authorized_keys: the file, and every directory above it, both as named
// and once links are resolved, is owned by root or by this process's
// user, and none may be written by group or others, but a sticky
// directory (/tmp), where others cannot replace what they do not own.
func safeFile(path string, st os.FileInfo) error {
	if err := safeOwner(st); err != nil {
		return err
	}
	if st.Mode().Perm()&0o022 != 0 {
		return fmt.Errorf("writable by group or others (mode %04o)", st.Mode().Perm())
	}
	real, err := filepath.EvalSymlinks(path)
	if err != nil {
		return err
	}
	for _, p := range []string{path, real} {
		abs, err := filepath.Abs(p)
		if err != nil {
			return err
		}
		for dir := filepath.Dir(abs); ; dir = filepath.Dir(dir) {
			ds, err := os.Stat(dir)
			if err != nil {
				return err
			}
			if err := safeOwner(ds); err != nil {
				return fmt.Errorf("directory %s is %w", dir, err)
			}
			if ds.Mode().Perm()&0o022 != 0 && ds.Mode()&os.ModeSticky == 0 {
				return fmt.Errorf("directory %s is writable by group or others (mode %04o)", dir, ds.Mode().Perm())
			}
			if dir == filepath.Dir(dir) {
				break
			}
		}
	}
	return nil
}

// safeOwner refuses a file owned by anyone but root or this process's
// user.
func safeOwner(st os.FileInfo) error {
	sys, ok := st.Sys().(*syscall.Stat_t)
	if !ok {
		return nil // no owners on this system
	}
	if uid := int(sys.Uid); uid != 0 && uid != os.Geteuid() {
		return fmt.Errorf("owned by uid %d, neither root nor this process's user (%d)", uid, os.Geteuid())
	}
	return nil
}

// parseTokens reads every line; a malformed line, and every line whose
// name another line also has, is left out and described.
func parseTokens(r io.Reader) ([]apiToken, []string) {
	var tokens []apiToken
	var lines []int
	var problems []string
	sc := bufio.NewScanner(r)
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		tok, err := parseTokenLine(line)
		if err != nil {
			problems = append(problems, fmt.Sprintf("line %d: %v", n, err))
			continue
		}
		tokens, lines = append(tokens, tok), append(lines, n)
	}
	if err := sc.Err(); err != nil {
		problems = append(problems, err.Error())
	}
	count := map[string]int{}
	for _, tok := range tokens {
		count[tok.name]++
	}
	kept := tokens[:0]
	for i, tok := range tokens {
		if count[tok.name] > 1 {
			problems = append(problems, fmt.Sprintf("line %d: name %q repeats; every line of it is refused", lines[i], tok.name))
			continue
		}
		kept = append(kept, tok)
	}
	return kept, problems
}

// refresh re-reads the file at most once per tokenReload, or at once when
// changed is set and the file is not the one read. A file that is gone,
// unreadable or unsafe leaves no tokens.
func (t *Tokens) refresh(changed bool) {
	t.mu.Lock()
	due := time.Since(t.checked) >= tokenReload
	if !due && changed {
		st, err := os.Stat(t.path)
		// A missing file waits for the periodic reload, which logs it.
		due = err == nil && (fileStamp{mod: st.ModTime(), size: st.Size()}) != t.read
	}
	if !due {
		t.mu.Unlock()
		return
	}
	t.checked = time.Now()
	t.mu.Unlock()
	tokens, stamp, err := t.load()
	if err != nil {
		t.log.Error("tokens file refused; no token is accepted until it is fixed", "error", err)
	}
	t.mu.Lock()
	t.tokens, t.read = tokens, stamp
	t.mu.Unlock()
}

// verify returns the token entry a presented token matches. Every entry is
// compared in constant time and the loop never stops early, so timing says
// nothing about which entry or how much of it matched. A token that
// matches none is looked for again if the file changed since it was read.
func (t *Tokens) verify(presented string) (apiToken, bool) {
	t.refresh(false)
	sum := sha256.Sum256([]byte(presented))
	if tok, ok := t.match(sum[:]); ok {
		return tok, true
	}
	t.refresh(true)
	return t.match(sum[:])
}

func (t *Tokens) match(sum []byte) (apiToken, bool) {
	t.mu.RLock()
	defer t.mu.RUnlock()
	var found apiToken
	match := 0
	for _, tok := range t.tokens {
		eq := subtle.ConstantTimeCompare(sum, tok.hash)
		if eq == 1 {
			found = tok
		}
		match |= eq
	}
	return found, match == 1
}

// callerKey is where the authenticated token's entry lives on the context.
const callerKey = "cardvault.caller"

// authenticate identifies the caller on every route it wraps: by a
// verified client certificate whose subject is mapped to scopes, or else by
// a bearer token.
func (s *Server) authenticate(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		if tok, ok := s.certCaller(c.Request()); ok {
			c.Set(callerKey, tok)
			return next(c)
		}
		// RFC 7235: the scheme is case-insensitive.
		scheme, presented, ok := strings.Cut(c.Request().Header.Get(echo.HeaderAuthorization), " ")
		if !ok || !strings.EqualFold(scheme, "Bearer") || presented == "" {
			return &vault.Error{Kind: vault.KindUnauthorized, Field: "Authorization", Msg: "a bearer token is required"}
		}
		tok, ok := s.tokens.verify(presented)
		if !ok {
			return &vault.Error{Kind: vault.KindUnauthorized, Field: "Authorization", Msg: "invalid bearer token"}
		}
		c.Set(callerKey, tok)
		return next(c)
	}
}

// certCaller maps the request's verified client certificate to a caller.
// Only a chain the TLS layer verified against the client CA counts.
func (s *Server) certCaller(r *http.Request) (apiToken, bool) {
	if r.TLS == nil || len(r.TLS.VerifiedChains) == 0 || len(r.TLS.VerifiedChains[0]) == 0 {
		return apiToken{}, false
	}
	leaf := r.TLS.VerifiedChains[0][0]
	scopes, ok := s.subjects[leaf.Subject.String()]
	if !ok {
		return apiToken{}, false
	}
	return apiToken{name: "cert:" + leaf.Subject.CommonName, scopes: scopes}, true
}

// require wraps a handler with a scope check.
func require(scopes ...string) echo.MiddlewareFunc {
	return func(next echo.HandlerFunc) echo.HandlerFunc {
		return func(c echo.Context) error {
			tok, _ := c.Get(callerKey).(apiToken)
			for _, want := range scopes {
				if !slices.Contains(tok.scopes, want) {
					return &vault.Error{Kind: vault.KindForbidden, Field: "Authorization", Msg: "token lacks scope " + want}
				}
			}
			return next(c)
		}
	}
}

// caller is the audit identity of a request.
func caller(c echo.Context) vault.Caller {
	tok, _ := c.Get(callerKey).(apiToken)
	return vault.Caller{Name: tok.name, RequestID: c.Response().Header().Get(echo.HeaderXRequestID)}
}
