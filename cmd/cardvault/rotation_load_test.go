package main

import (
	"fmt"
	"math/rand/v2"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cardvault/cardvault/internal/testsupport/testenv"
)

// TestRotationUnderLoadWithTwoReplicas is scenario 1 of issue 28: two
// servers on one database take imports and secure views, alternating,
// while the card KEK and the PAN HMAC key are rotated and every record is
// rewrapped from another process. Nobody may notice: no answer but
// success, every reveal the card's PAN, and once the rewrap has said it
// is done, no record left under an old version. Before, the replica whose
// key view predated the rotation answered 500 for every record sealed
// under the new version, and went on sealing under the old one after the
// rewrap had finished.
func TestRotationUnderLoadWithTwoReplicas(t *testing.T) {
	for _, db := range []string{"sqlite", "postgres"} {
		t.Run(db, func(t *testing.T) {
			v := newVaultEnv(t)
			if db == "postgres" {
				v.env = append(v.env, envDB+"="+testenv.PostgresDatabase(t))
			}
			// The default key refresh interval, 5 s: the rotation
			// ceremonies finish well within it, so a replica's view is
			// stale while they run; the rewrap waits two intervals.
			v.env = append(v.env, append(lifecycleEnv, envKeyRefresh+"=5s", envImportsPerCaller+"=100000")...)
			if out, err := v.run(t, "ceremony", "init"); err != nil {
				t.Fatalf("init: %v\n%s", err, out)
			}
			token := v.token(t, "platform", pinScopes...)
			var replicas [2]*jikoVault
			for i := range replicas {
				base, logs := startServer(t, v)
				replicas[i] = &jikoVault{vaultEnv: v, base: base, token: token, logs: logs}
			}
			const person = "person-1"
			view := newViewer(t, replicas[0], person)
			views := [2]*viewer{view, {jv: replicas[1], device: view.device, keys: view.keys}}
			view.prepare(t, 200)

			var mu sync.Mutex
			cards := map[string]string{} // id → PAN
			ids := []string{}
			for i := range 20 {
				id := replicas[i%2].importCard(t, person, panFor(i))
				cards[id], ids = panFor(i), append(ids, id)
			}

			var sent, failed atomic.Int64
			var firstFailure atomic.Pointer[string]
			fail := func(what string) {
				failed.Add(1)
				firstFailure.CompareAndSwap(nil, &what)
			}
			stop := make(chan struct{})
			var wg sync.WaitGroup
			wg.Add(2)
			go func() { // imports, alternating replicas
				defer wg.Done()
				for i := 1000; ; i++ {
					select {
					case <-stop:
						return
					default:
					}
					jv := replicas[i%2]
					sent.Add(1)
					r := jv.post(t, jv.base+"/v1/cards", map[string]any{"owner_id": person, "pan": panFor(i), "cvv": "123",
						"expiry_month": 12, "expiry_year": time.Now().Year() + 2, "name": "ADA LOVELACE"}, map[string]string{"Idempotency-Key": fmt.Sprint("rotation-", i)})
					if r.status != 201 {
						fail(fmt.Sprintf("import on replica %d: %d %s", i%2+1, r.status, r.body))
						continue
					}
					id := strings.Split(strings.Split(r.body, `"id":"`)[1], `"`)[0]
					mu.Lock()
					cards[id], ids = panFor(i), append(ids, id)
					mu.Unlock()
					time.Sleep(10 * time.Millisecond) // a steady trickle, not a flood
				}
			}()
			go func() { // secure views of any card, alternating replicas
				defer wg.Done()
				for i := 0; ; i++ {
					select {
					case <-stop:
						return
					default:
					}
					mu.Lock()
					id := ids[rand.IntN(len(ids))]
					pan := cards[id]
					mu.Unlock()
					sent.Add(1)
					if got, err := views[i%2].reveal(t, id); err != nil || got != pan {
						fail(fmt.Sprintf("secure view on replica %d: %q, %v", i%2+1, mask(got), err))
					}
				}
			}()
			time.Sleep(500 * time.Millisecond)
			for _, p := range []string{"card-kek", "pan-hmac"} {
				if out, err := v.run(t, "ceremony", "rotate", "--purpose", p); err != nil {
					t.Errorf("rotate %s: %v\n%s", p, err, out)
				}
			}
			out, err := v.run(t, "ceremony", "rewrap", "--operator", "ops")
			if err != nil {
				t.Errorf("rewrap: %v\n%s", err, out)
			}
			time.Sleep(500 * time.Millisecond) // load after the rewrap too
			close(stop)
			wg.Wait()
			t.Logf("%d requests during rotate and rewrap, %d failed; %d cards", sent.Load(), failed.Load(), len(cards))
			if p := firstFailure.Load(); p != nil {
				t.Fatalf("%d of %d requests failed during the rotation; first: %s", failed.Load(), sent.Load(), *p)
			}
			use, stale := keyUse(t, v)
			if stale != 0 || use["card-kek/v2"] != len(cards) || use["pan-hmac/v2"] != len(cards) {
				t.Fatalf("after the rewrap said it was done: %v, %d stale records for %d cards", use, stale, len(cards))
			}
			for i, view := range views {
				for id, pan := range cards {
					if got, err := view.reveal(t, id); err != nil || got != pan {
						t.Fatalf("after the rotation, replica %d: card %s revealed %q, %v", i+1, id, mask(got), err)
					}
					break // one per replica: the load above read them all
				}
			}
			if out, err := v.run(t, "audit", "verify"); err != nil {
				t.Fatalf("audit verify after the rotation: %v\n%s", err, out)
			}
		})
	}
}
