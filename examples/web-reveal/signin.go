package main

import (
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"net/http"
	"sync"
	"time"
)

// sessionTTL is how long a sign-in lasts.
const sessionTTL = 15 * time.Minute

// session is a signed-in cardholder. The demo origin knows it by its
// cookie; the component's calls by its ticket, a bearer credential that
// the demo page hands the component's frame.
type session struct {
	id, ticket, person string
	expires            time.Time
}

// sessions are held in memory: a restart signs everyone out.
type sessions struct {
	mu       sync.Mutex
	byID     map[string]*session
	byTicket map[string]*session
}

func newSessions() *sessions {
	return &sessions{byID: map[string]*session{}, byTicket: map[string]*session{}}
}

// randomToken is 256 bits from the system's generator, in hex.
func randomToken() string {
	b := make([]byte, 32)
	rand.Read(b)
	return hex.EncodeToString(b)
}

func (ss *sessions) create(person string) *session {
	s := &session{id: randomToken(), ticket: randomToken(), person: person, expires: time.Now().Add(sessionTTL)}
	ss.mu.Lock()
	defer ss.mu.Unlock()
	ss.byID[s.id], ss.byTicket[s.ticket] = s, s
	return s
}

// live returns s if it has not expired, and forgets it if it has.
func (ss *sessions) live(s *session) *session {
	if s == nil || time.Now().Before(s.expires) {
		return s
	}
	delete(ss.byID, s.id)
	delete(ss.byTicket, s.ticket)
	return nil
}

func (ss *sessions) fromCookie(r *http.Request) *session {
	c, err := r.Cookie("session")
	if err != nil {
		return nil
	}
	ss.mu.Lock()
	defer ss.mu.Unlock()
	return ss.live(ss.byID[c.Value])
}

func (ss *sessions) fromTicket(ticket string) *session {
	if ticket == "" {
		return nil
	}
	ss.mu.Lock()
	defer ss.mu.Unlock()
	return ss.live(ss.byTicket[ticket])
}

func (ss *sessions) drop(s *session) {
	ss.mu.Lock()
	defer ss.mu.Unlock()
	delete(ss.byID, s.id)
	delete(ss.byTicket, s.ticket)
}

// cookie is one of the demo origin's: not for scripts, not sent on
// another site's requests.
func cookie(name, value string, maxAge int) *http.Cookie {
	return &http.Cookie{Name: name, Value: value, Path: "/", MaxAge: maxAge, HttpOnly: true, SameSite: http.SameSiteStrictMode}
}

// showSignIn answers the sign-in form, with a fresh CSRF token in a
// cookie and in the form (the double-submit pattern).
func (b *backend) showSignIn(w http.ResponseWriter, status int, problem string) {
	token := randomToken()
	http.SetCookie(w, cookie("csrf", token, 600))
	w.Header().Set("Content-Security-Policy", "default-src 'none'; style-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'")
	secureHeaders(w)
	formPage(w)
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.WriteHeader(status)
	signInPage.Execute(w, map[string]string{"CSRF": token, "Problem": problem})
}

// formPage lets a page's forms send their Origin: under no-referrer a
// browser sends "Origin: null" with a form post, which fromDemoSite
// refuses. No referrer still leaves for other origins (the component's).
func formPage(w http.ResponseWriter) { w.Header().Set("Referrer-Policy", "same-origin") }

// fromDemoSite refuses a form posted from anywhere but the demo page: its
// Origin must be the demo origin, and its CSRF field the cookie's.
func (b *backend) fromDemoSite(w http.ResponseWriter, r *http.Request) bool {
	r.Body = http.MaxBytesReader(w, r.Body, 4<<10)
	c, err := r.Cookie("csrf")
	if r.Header.Get("Origin") != b.demoOrigin || err != nil || r.ParseForm() != nil ||
		subtle.ConstantTimeCompare([]byte(c.Value), []byte(r.PostForm.Get("csrf"))) != 1 {
		writeError(w, http.StatusForbidden, "not from the sign-in page")
		return false
	}
	return true
}

// signIn answers POST /signin: the cardholder's name and password, from
// the demo page's own form.
func (b *backend) signIn(w http.ResponseWriter, r *http.Request) {
	if !b.fromDemoSite(w, r) {
		return
	}
	if !b.credentialsMatch(r.PostForm.Get("username"), r.PostForm.Get("password")) {
		b.log.Warn("sign-in refused")
		b.showSignIn(w, http.StatusUnauthorized, "That name and password do not match.")
		return
	}
	s := b.sessions.create(b.cfg.person)
	http.SetCookie(w, cookie("session", s.id, int(sessionTTL.Seconds())))
	http.SetCookie(w, cookie("csrf", "", -1))
	http.Redirect(w, r, "/", http.StatusSeeOther)
}

// credentialsMatch compares in constant time, whatever the lengths.
func (b *backend) credentialsMatch(user, password string) bool {
	u, wantU := sha256.Sum256([]byte(user)), sha256.Sum256([]byte(b.cfg.person))
	p, wantP := sha256.Sum256([]byte(password)), sha256.Sum256([]byte(b.cfg.password))
	return subtle.ConstantTimeCompare(u[:], wantU[:])&subtle.ConstantTimeCompare(p[:], wantP[:]) == 1
}

// signOut answers POST /signout: the session and its ticket end.
func (b *backend) signOut(w http.ResponseWriter, r *http.Request) {
	if !b.fromDemoSite(w, r) {
		return
	}
	if s := b.sessions.fromCookie(r); s != nil {
		b.sessions.drop(s)
	}
	http.SetCookie(w, cookie("session", "", -1))
	http.Redirect(w, r, "/", http.StatusSeeOther)
}
