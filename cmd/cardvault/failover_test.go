package main

import (
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cardvault/cardvault/internal/testsupport/testenv"
)

// TestPostgresFailoverUnderLoad is scenario 3 of issue 28: a server on a
// PostgreSQL primary with a synchronous standby takes imports and secure
// views; the primary crashes, stays away, and the standby is promoted.
// The server names both hosts (target_session_attrs=read-write) and finds
// the new primary by itself. What must hold: only 503 while there is no
// primary, never another error or a wrong answer; every acknowledged
// import is there afterwards, and the audit chain verifies on the new
// primary. The figures (answers per phase, time to recover) are logged.
func TestPostgresFailoverUnderLoad(t *testing.T) {
	pair := testenv.StartPostgresPair(t)
	onPrimary, err := url.Parse(testenv.CreateDatabase(t, pair.AdminDSN()))
	if err != nil {
		t.Fatal(err)
	}
	v := newVaultEnv(t)
	v.env = append(v.env, append(lifecycleEnv, envDB+"="+pair.DSN(strings.TrimPrefix(onPrimary.Path, "/")), envImportsPerCaller+"=100000")...)
	if out, err := v.run(t, "ceremony", "init"); err != nil {
		t.Fatalf("init: %v\n%s", err, out)
	}
	token := v.token(t, "platform", pinScopes...)
	base, logs := startServer(t, v)
	jv := &jikoVault{vaultEnv: v, base: base, token: token, logs: logs}
	const person = "person-1"
	view := newViewer(t, jv, person)
	view.prepare(t, 150)
	first := jv.importCard(t, person, panFor(0))

	// phase 0 before the crash, 1 while there is no primary, 2 after the
	// first success that followed the promotion.
	var phase atomic.Int32
	type counts struct{ ok, unavailable, other atomic.Int64 }
	var by [3]counts
	var firstProblem atomic.Pointer[string]
	var promoted, recovered atomic.Pointer[time.Time]
	answer := func(status int, what string) {
		p := phase.Load()
		switch {
		case status < 300:
			by[p].ok.Add(1)
			if p == 1 && promoted.Load() != nil {
				now := time.Now()
				if recovered.CompareAndSwap(nil, &now) {
					phase.Store(2)
				}
			}
		case status == http.StatusServiceUnavailable:
			by[p].unavailable.Add(1)
		default:
			by[p].other.Add(1)
			firstProblem.CompareAndSwap(nil, &what)
		}
	}
	var mu sync.Mutex
	acknowledged := map[string]string{first: panFor(0)}
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(2)
	go func() { // imports; a 503 is retried with the same Idempotency-Key
		defer wg.Done()
		for i := 1; ; i++ {
			for {
				select {
				case <-stop:
					return
				default:
				}
				r := jv.post(t, base+"/v1/cards", map[string]any{"owner_id": person, "pan": panFor(i), "cvv": "123",
					"expiry_month": 12, "expiry_year": time.Now().Year() + 2, "name": "ADA LOVELACE"}, map[string]string{"Idempotency-Key": fmt.Sprint("failover-", i)})
				answer(r.status, fmt.Sprintf("import: %d %s", r.status, r.body))
				if r.status == 201 {
					id := strings.Split(strings.Split(r.body, `"id":"`)[1], `"`)[0]
					mu.Lock()
					acknowledged[id] = panFor(i)
					mu.Unlock()
					break
				}
				time.Sleep(20 * time.Millisecond)
			}
			time.Sleep(10 * time.Millisecond)
		}
	}()
	go func() { // secure views of the first card, checked
		defer wg.Done()
		for {
			select {
			case <-stop:
				return
			default:
			}
			got, err := view.reveal(t, first)
			switch {
			case err == nil && got == panFor(0):
				answer(200, "")
			case err != nil && strings.Contains(err.Error(), ": 503 "):
				answer(503, "")
			default:
				answer(0, fmt.Sprintf("secure view: %q, %v", mask(got), err))
			}
			time.Sleep(10 * time.Millisecond)
		}
	}()
	time.Sleep(time.Second)
	crashed := time.Now()
	phase.Store(1)
	pair.StopPrimary()
	time.Sleep(3 * time.Second) // no primary at all
	pair.Promote()
	now := time.Now()
	promoted.Store(&now)
	for range 100 {
		if recovered.Load() != nil {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	time.Sleep(2 * time.Second) // load on the new primary
	close(stop)
	wg.Wait()

	for p, name := range []string{"before the crash", "without a primary", "after recovery"} {
		t.Logf("%s: %d ok, %d 503, %d other", name, by[p].ok.Load(), by[p].unavailable.Load(), by[p].other.Load())
	}
	if rec := recovered.Load(); rec != nil {
		t.Logf("recovered %v after the promotion (%v after the crash)", rec.Sub(*promoted.Load()).Round(time.Millisecond), rec.Sub(crashed).Round(time.Millisecond))
	} else {
		t.Fatalf("no request succeeded in 10 s after the standby was promoted\n%s", logs)
	}
	if p := firstProblem.Load(); p != nil {
		t.Fatalf("an answer other than success or 503: %s", *p)
	}
	if n := by[2].unavailable.Load(); n != 0 {
		t.Errorf("%d answers 503 after the server had recovered", n)
	}
	for id := range acknowledged {
		if r := jv.do(t, http.MethodGet, base+"/v1/cards/"+id, nil, nil); r.status != 200 {
			t.Fatalf("acknowledged card %s after the failover: %d %s", id, r.status, r.body)
		}
	}
	t.Logf("%d acknowledged imports all there", len(acknowledged))
	if out, err := v.run(t, "audit", "verify"); err != nil {
		t.Fatalf("audit verify on the new primary: %v\n%s", err, out)
	}
}
