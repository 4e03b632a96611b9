package stacktest_test

import (
	"context"
	"database/sql"
	"encoding/json"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cardvault/cardvault/internal/testsupport/stacktest"
	"github.com/cardvault/cardvault/internal/testsupport/testenv"
	"github.com/google/uuid"
	_ "github.com/jackc/pgx/v5/stdlib" // the pgx database/sql driver
)

var scopes = []string{"cards:write", "cards:read", "cards:reveal", "pin:write", "devices:write", "sandbox"}

// TestStackServesJikoAndSolaris drives the guide's Jiko flow (openssl and
// curl) and a Solaris secure view (python3-jwcrypto) over HTTP against the
// vault image, on PostgreSQL in a container.
func TestStackServesJikoAndSolaris(t *testing.T) {
	stacktest.Require(t, stacktest.PostgresImage, stacktest.VaultImage)
	for _, tool := range []string{"openssl", "curl", "jq", "base64"} {
		testenv.RequireCommand(t, tool)
	}
	python := "/usr/bin/python3"
	testenv.Require(t, "Debian python3 with jwcrypto", exec.Command(python, "-c", "import jwcrypto, cryptography").Run())
	nw := stacktest.Network(t)
	pg := stacktest.StartPostgres(t, nw)
	_, inner := pg.Database(t)
	stack := stacktest.StartStack(t, nw, inner, 1, scopes...)
	base := stack.Replicas[0].Base

	script, _ := filepath.Abs("../../../cmd/cardvault/testdata/jiko-card-flow.sh")
	cmd := exec.Command("bash", script, base+"/api/v1/jiko-accounts/person-1/virtual-cards")
	cmd.Dir = t.TempDir()
	cmd.Env = append(os.Environ(), "TOKEN="+stack.Token)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("guide flow: %v\n%s", err, out)
	}
	issued := map[string]string{}
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		k, v, _ := strings.Cut(line, "=")
		issued[k] = v
	}
	if len(issued["encrypted_pan"]) != 16 || len(issued["encrypted_cvv"]) != 3 || issued["card_id"] == "" {
		t.Fatalf("guide flow output: %v", issued)
	}

	client, _ := filepath.Abs("../../../examples/solaris_client.py")
	cmd = exec.Command(python, client, base, "person-1", issued["card_id"], `[["RSA_OAEP_256","A256GCM"],["RSA1_5","A256CBC_HS512"]]`)
	cmd.Env = append(os.Environ(), "TOKEN="+stack.Token)
	out, err = cmd.Output()
	if err != nil {
		t.Fatalf("solaris client: %v\n%s", err, out)
	}
	var res struct {
		Results []struct {
			Payload map[string]string `json:"payload"`
		} `json:"results"`
	}
	lines := strings.Split(strings.TrimSpace(string(out)), "\n")
	if err := json.Unmarshal([]byte(lines[len(lines)-1]), &res); err != nil || len(res.Results) != 2 {
		t.Fatalf("solaris client output: %v", err)
	}
	for i, r := range res.Results {
		if r.Payload["pan"] != issued["encrypted_pan"] || r.Payload["cvc"] != issued["encrypted_cvv"] {
			t.Errorf("secure view %d differs from the Jiko read", i)
		}
	}
}

// load is the outcome of the replica-failure run's requests.
type load struct {
	mu       sync.Mutex
	created  map[string]string // idempotency key → card id, for creates answered 2xx
	pans     map[string]string // card id → PAN imported
	sent     atomic.Int64      // logical requests
	answered atomic.Int64      // logical requests answered 2xx
	failed   atomic.Int64      // logical requests never answered 2xx
	retries  atomic.Int64      // transport failures retried on the other replica
	reveals  atomic.Int64      // reveals answered 200
	wrong    atomic.Int64      // reveals whose PAN was not the card's
}

// TestReplicaFailure runs creates and reveals through two replicas on one
// PostgreSQL, kills one mid-run (SIGKILL) and restarts it. Clients retry a
// request that got no answer on the other replica with the same
// idempotency key, as a client of a vault should. Afterwards every answered
// create is readable, no card exists twice, no idempotency key has two
// cards, and the audit trail has an entry for every answered request.
func TestReplicaFailure(t *testing.T) {
	stacktest.Require(t, stacktest.PostgresImage, stacktest.VaultImage)
	const creates, workers = 240, 4
	keys := newReadKeys(t, 24) // RSA-4096 generation takes a while; start it first
	nw := stacktest.Network(t)
	pg := stacktest.StartPostgres(t, nw)
	hostDSN, inner := pg.Database(t)
	stack := stacktest.StartStack(t, nw, inner, 2, scopes...)
	c := newClient(stack.Token)
	l := &load{created: map[string]string{}, pans: map[string]string{}}

	var next atomic.Int64
	var wg sync.WaitGroup
	killAt := int64(creates / 3)
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := next.Add(1)
				if i > creates {
					return
				}
				if i == killAt {
					go func() {
						stacktest.Kill(t, stack.Replicas[1].DockerContainer)
						time.Sleep(500 * time.Millisecond)
						if err := stack.Replicas[1].Start(context.Background()); err != nil {
							t.Errorf("restart replica: %v", err)
						}
					}()
				}
				l.create(c, stack, int(i)+w)
				if i%10 == 0 {
					select {
					case k := <-keys:
						l.reveal(c, stack, int(i), k)
					default: // no key ready yet: skip this reveal
					}
				}
			}
		}()
	}
	wg.Wait()
	stacktest.WaitReady(t, stack.Replicas[1].Base, 60*time.Second)

	db, err := sql.Open("pgx", hostDSN)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	count := func(q string, args ...any) int {
		t.Helper()
		var n int
		if err := db.QueryRow(q, args...).Scan(&n); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
		return n
	}
	lost := 0
	for key, id := range l.created {
		if count(`SELECT COUNT(*) FROM cards WHERE id = $1`, id) != 1 {
			lost++
			t.Errorf("create %s answered card %s, which is not stored", key, id)
		}
		if count(`SELECT COUNT(*) FROM audit WHERE card_id = $1 AND action = 'card.import' AND outcome = 'ok'`, id) != 1 {
			t.Errorf("card %s lacks its one import audit entry", id)
		}
	}
	cards := count(`SELECT COUNT(*) FROM cards WHERE owner_id = 'acct-load'`)
	if cards != len(l.created) {
		t.Errorf("%d cards stored for %d creates answered: a card exists twice or unanswered creates left cards", cards, len(l.created))
	}
	if n := count(`SELECT COUNT(*) FROM (SELECT fingerprint FROM cards GROUP BY fingerprint HAVING COUNT(*) > 1) d`); n != 0 {
		t.Errorf("%d PANs stored twice", n)
	}
	// Idempotency scopes end with the route and the owner.
	if n := count(`SELECT COUNT(*) FROM idempotency WHERE scope LIKE '% POST /v1/cards acct-load'`); n != len(l.created) {
		t.Errorf("%d create idempotency keys stored for %d answered creates", n, len(l.created))
	}
	if n := count(`SELECT COUNT(*) FROM audit WHERE action = 'card.reveal' AND outcome = 'ok'`); n != int(l.reveals.Load()) {
		t.Errorf("%d reveal audit entries for %d answered reveals", n, l.reveals.Load())
	}
	if l.wrong.Load() != 0 || lost != 0 || l.failed.Load() != 0 {
		t.Errorf("wrong answers %d, lost writes %d, failed requests %d", l.wrong.Load(), lost, l.failed.Load())
	}
	t.Logf("replica failure: %d requests sent (%d creates, %d reveals attempted), %d answered, %d failed, %d lost, %d wrong; %d transport failures retried on the other replica",
		l.sent.Load(), creates, l.sent.Load()-creates, l.answered.Load(), l.failed.Load(), lost, l.wrong.Load(), l.retries.Load())
}

// send tries a request on replica i, then on the others, until one
// answers; a transport failure (the replica died) moves on.
func (l *load) send(s *stacktest.Stack, i int, try func(base string) (int, error)) (int, bool) {
	for attempt := range 2 * len(s.Replicas) {
		status, err := try(s.Replicas[(i+attempt)%len(s.Replicas)].Base)
		if err == nil && status != http.StatusServiceUnavailable {
			return status, true
		}
		l.retries.Add(1)
		time.Sleep(100 * time.Millisecond)
	}
	return 0, false
}

func (l *load) create(c *client, s *stacktest.Stack, i int) {
	l.sent.Add(1)
	key, pan := uuid.NewString(), testPAN()
	body := map[string]any{"owner_id": "acct-load", "pan": pan, "cvv": "123", "expiry_month": 12, "expiry_year": 2031}
	var card struct {
		ID string `json:"id"`
	}
	status, ok := l.send(s, i, func(base string) (int, error) {
		status, out, err := c.call("POST", base+"/v1/cards", body, map[string]string{"Idempotency-Key": key})
		if err == nil && status/100 == 2 {
			err = json.Unmarshal(out, &card)
		}
		return status, err
	})
	if !ok || status/100 != 2 || card.ID == "" {
		l.failed.Add(1)
		return
	}
	l.answered.Add(1)
	l.mu.Lock()
	l.created[key], l.pans[card.ID] = card.ID, pan
	l.mu.Unlock()
}

func (l *load) reveal(c *client, s *stacktest.Stack, i int, k readKey) {
	l.mu.Lock()
	var id, pan string
	for cid, p := range l.pans {
		id, pan = cid, p
		break
	}
	l.mu.Unlock()
	if id == "" {
		return
	}
	l.sent.Add(1)
	var got string
	idem := uuid.NewString()
	status, ok := l.send(s, i, func(base string) (int, error) {
		status, p, err := c.readPAN(base, "acct-load", id, idem, k)
		got = p
		return status, err
	})
	if !ok || status != http.StatusOK {
		l.failed.Add(1)
		return
	}
	l.answered.Add(1)
	l.reveals.Add(1)
	if got != pan {
		l.wrong.Add(1)
	}
}

// TestPostgresOutage stops PostgreSQL under a serving replica: the vault
// answers 503 with /readyz false, writes nothing half-way, and recovers by
// itself when the database returns.
func TestPostgresOutage(t *testing.T) {
	stacktest.Require(t, stacktest.PostgresImage, stacktest.VaultImage)
	nw := stacktest.Network(t)
	pg := stacktest.StartPostgres(t, nw)
	hostDSN, inner := pg.Database(t)
	stack := stacktest.StartStack(t, nw, inner, 1, scopes...)
	base := stack.Replicas[0].Base
	c := newClient(stack.Token)
	create := func(key string) (int, string) {
		status, out, err := c.call("POST", base+"/v1/cards", map[string]any{"owner_id": "acct-outage", "pan": testPAN(), "cvv": "123", "expiry_month": 12, "expiry_year": 2031},
			map[string]string{"Idempotency-Key": key})
		if err != nil {
			t.Fatalf("create: no answer: %v", err)
		}
		return status, string(out)
	}
	if status, out := create(uuid.NewString()); status != http.StatusCreated {
		t.Fatalf("create before the outage: %d %s", status, out)
	}

	stop := 5 * time.Second
	if err := pg.Stop(context.Background(), &stop); err != nil {
		t.Fatal(err)
	}
	var during []string
	var slowest time.Duration
	for range 5 {
		key := uuid.NewString()
		start := time.Now()
		status, out := create(key)
		slowest = max(slowest, time.Since(start))
		if status != http.StatusServiceUnavailable {
			t.Errorf("create during the outage: %d %s, want 503", status, out)
		}
		during = append(during, key)
	}
	status, ready, err := c.call("GET", base+"/readyz", nil, nil)
	if err != nil || status != http.StatusServiceUnavailable || !strings.Contains(string(ready), `"database"`) {
		t.Errorf("/readyz during the outage: %d %s %v", status, ready, err)
	}
	t.Logf("during the outage: 5 creates answered 503, the slowest in %v; /readyz %d %s", slowest.Round(time.Millisecond), status, strings.TrimSpace(string(ready)))

	if err := pg.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	back := time.Now()
	stacktest.WaitReady(t, base, 60*time.Second)
	t.Logf("ready again %v after PostgreSQL restarted", time.Since(back).Round(time.Millisecond))

	// The refused creates wrote nothing: retried with their keys, each
	// creates its card now, exactly once.
	for _, key := range during {
		if status, out := create(key); status != http.StatusCreated {
			t.Errorf("retry of a refused create: %d %s", status, out)
		}
	}
	db, err := sql.Open("pgx", hostDSN)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	var cards, audits int
	db.QueryRow(`SELECT COUNT(*) FROM cards WHERE owner_id = 'acct-outage'`).Scan(&cards)
	db.QueryRow(`SELECT COUNT(*) FROM audit WHERE owner_id = 'acct-outage' AND action = 'card.import' AND outcome = 'ok'`).Scan(&audits)
	if cards != 1+len(during) || audits != cards {
		t.Errorf("%d cards and %d import audit entries, want %d of each", cards, audits, 1+len(during))
	}
}

// TestComposeFileValidates checks compose.yaml with the Compose tool.
func TestComposeFileValidates(t *testing.T) {
	compose := testenv.RequireCommand(t, "docker-compose")
	if out, err := exec.Command(compose, "-f", "../../../compose.yaml", "config", "-q").CombinedOutput(); err != nil {
		t.Fatalf("docker-compose config: %v\n%s", err, out)
	}
}
