package main

import (
	"bytes"
	"encoding/json"
	"net/http"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// TestShutdownDrainsInFlightRequests sends SIGTERM to a server under a
// write load. Every request that got an answer must have been served in
// full (201), including those in flight at the signal; the process exits
// 0 after closing the database and then the HSM, once each; and every
// acknowledged import is there when the vault serves again, with an audit
// trail that verifies.
func TestShutdownDrainsInFlightRequests(t *testing.T) {
	v := newVaultEnv(t)
	if out, err := v.run(t, "ceremony", "init"); err != nil {
		t.Fatalf("init: %v\n%s", err, out)
	}
	token := v.token(t, "platform", "cards:write", "cards:lookup")
	base, logs, cmd := startServerCmd(t, v, envLookupsPerCaller+"=100000")

	type outcome struct {
		pan            string
		status         int
		sent, answered time.Time
	}
	var (
		mu       sync.Mutex
		outcomes []outcome
		next     int
		wg       sync.WaitGroup
	)
	client := &http.Client{Timeout: 20 * time.Second}
	importOne := func() bool {
		mu.Lock()
		next++
		pan := panFor(next)
		mu.Unlock()
		body, _ := json.Marshal(map[string]any{"owner_id": "person-1", "pan": pan, "cvv": "123", "expiry_month": 12, "expiry_year": time.Now().Year() + 2})
		req, _ := http.NewRequest(http.MethodPost, base+"/v1/cards", bytes.NewReader(body))
		req.Header.Set("Authorization", "Bearer "+token)
		req.Header.Set("Content-Type", "application/json")
		sent := time.Now()
		resp, err := client.Do(req)
		if err != nil {
			return false // refused or reset: the server stopped taking requests
		}
		resp.Body.Close()
		mu.Lock()
		outcomes = append(outcomes, outcome{pan, resp.StatusCode, sent, time.Now()})
		mu.Unlock()
		return true
	}
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for importOne() {
			}
		}()
	}
	for {
		mu.Lock()
		n := len(outcomes)
		mu.Unlock()
		if n >= 100 {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	signalled := time.Now()
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	select {
	case err := <-exited:
		if err != nil {
			t.Fatalf("serve exited with %v:\n%s", err, logs)
		}
	case <-time.After(30 * time.Second):
		t.Fatalf("serve did not exit after SIGTERM:\n%s", logs)
	}
	wg.Wait()

	inFlight, acknowledged := 0, []string{}
	for _, o := range outcomes {
		if o.status != http.StatusCreated {
			t.Errorf("import answered %d during shutdown", o.status)
		}
		if o.sent.Before(signalled) && o.answered.After(signalled) {
			inFlight++
		}
		acknowledged = append(acknowledged, o.pan)
	}
	t.Logf("%d imports answered, %d of them in flight at SIGTERM", len(outcomes), inFlight)
	if inFlight == 0 {
		t.Errorf("no request was in flight at SIGTERM; the test proved nothing about draining")
	}
	log := logs.String()
	order := []string{`"msg":"shutting down`, `"msg":"drained"`, `"msg":"database closed"`, `"msg":"hsm closed"`}
	at := 0
	for _, line := range order {
		if n := strings.Count(log, line); n != 1 {
			t.Errorf("%s logged %d times, want once", line, n)
		}
		i := strings.Index(log, line)
		if i < at {
			t.Errorf("%s logged out of order", line)
		}
		at = i
	}

	if out, err := v.run(t, "audit", "verify"); err != nil {
		t.Fatalf("audit verify after shutdown: %v\n%s", err, out)
	}
	base, _ = startServer(t, v, envLookupsPerCaller+"=100000")
	for _, pan := range acknowledged {
		body, _ := json.Marshal(map[string]string{"pan": pan})
		req, _ := http.NewRequest(http.MethodPost, base+"/v1/cards/lookup", bytes.NewReader(body))
		req.Header.Set("Authorization", "Bearer "+token)
		req.Header.Set("Content-Type", "application/json")
		resp, err := client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("acknowledged import %s…: lookup %d after restart", pan[:6], resp.StatusCode)
		}
	}
}
