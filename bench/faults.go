package bench

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"math/big"
	"net/http"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/go-jose/go-jose/v4"
)

// FaultReport is what a load-under-faults run counted. Every write is an
// import of a PAN the run chose, so every answer can be checked.
type FaultReport struct {
	Clients  int     `json:"clients"`
	Seconds  float64 `json:"seconds"`
	Restarts int     `json:"token_restarts"`
	HangUps  int     `json:"hang_up_bursts"`
	// HungUp counts the burst clients' requests that were cut off
	// mid-request by their own hang-up; they are not in Sent.
	HungUp int64 `json:"requests_hung_up"`
	// Sent counts every HTTP request, retries included; Answered those
	// that got any HTTP answer.
	Sent     int64 `json:"requests_sent"`
	Answered int64 `json:"requests_answered"`
	// CutOff counts requests in flight when the run's time ran out; not
	// acknowledged, so never counted as lost.
	CutOff int64 `json:"cut_off_at_end"`
	OK     int64 `json:"ok"`
	// Unavailable counts 503s: the vault failing closed while the token
	// was away. A write that got one is retried with its Idempotency-Key.
	Unavailable int64 `json:"unavailable_503"`
	// Other counts any other status, which a correct vault never gives
	// here.
	Other int64 `json:"other_status"`
	// Wrong counts answers whose content was wrong: a revealed PAN or CVV
	// that is not the card's, or an import answered with the wrong card.
	Wrong int64 `json:"wrong_answers"`
	// Acknowledged writes, and those not found afterwards.
	Acknowledged int64 `json:"writes_acknowledged"`
	Lost         int64 `json:"lost_writes"`
	// Reveals is how many secure views were decrypted and checked.
	Reveals int64 `json:"reveals_checked"`
	// Recovery is, per fault (restarts first, then hang-up bursts, in
	// the order they ran), the time from the fault to the first
	// successful answer to a request sent after it.
	Recovery []float64 `json:"recovery_seconds"`
	// FirstProblem describes the first unexpected answer, by status only.
	FirstProblem string `json:"first_problem,omitempty"`
}

// cardRecord is what the run knows of a card it imported.
type cardRecord struct {
	id, pan, cvv string
}

type faultClient struct {
	person string
	device device
	cards  []cardRecord
	next   int
}

type faultRun struct {
	env     *Env
	rep     FaultReport
	jwks    chan *rsa.PrivateKey
	mu      sync.Mutex
	oks     []okAt // successful requests: when sent and answered
	problem atomic.Pointer[string]
	// Reveals are paced evenly over the run, so that some fall around
	// each restart: reveal n is due at start + n*d/keys.
	start time.Time
	d     time.Duration
	keys  int
	paced atomic.Int64
}

type okAt struct{ sent, answered time.Time }

// Faults is what a load-under-faults run injects, evenly spaced over it:
// the restarts first, then the hang-up bursts.
type Faults struct {
	Restarts int          // token restarts, each made by Restart
	Restart  func() error // restarts the token underneath the server
	// HangUps is the number of bursts of hangUpClients clients that each
	// send an import and hang up a few milliseconds later, mid-request.
	HangUps int
}

// hangUpClients is the size of a hang-up burst: enough to land in every
// group commit in flight.
const hangUpClients = 32

// RunFaults drives imports and secure views with clients clients for d,
// injects the faults f evenly spaced during it, and checks every answer
// to the checked clients: each reveal is decrypted with its real device
// key and compared, and after the run every acknowledged import is looked
// up by its PAN. jwkKeys real RSA-2048 device keys are made first, one per
// reveal.
func RunFaults(ctx context.Context, env *Env, clients int, d time.Duration, f Faults, jwkKeys int, progress io.Writer) (FaultReport, error) {
	r := &faultRun{env: env, rep: FaultReport{Clients: clients, Restarts: f.Restarts, HangUps: f.HangUps}, jwks: make(chan *rsa.PrivateKey, jwkKeys), d: d, keys: jwkKeys}
	say(progress, "faults: making %d RSA-2048 device keys", jwkKeys)
	if err := makeKeys(r.jwks, jwkKeys); err != nil {
		return r.rep, err
	}
	fcs := make([]*faultClient, clients)
	for c := range fcs {
		person := env.owner("fault", c)
		dev, err := env.bindDevice(ctx, person)
		if err != nil {
			return r.rep, err
		}
		fcs[c] = &faultClient{person: person, device: dev}
	}

	say(progress, "faults: %d clients for %s, restarting the token %d times, %d bursts of %d clients hanging up", clients, d, f.Restarts, f.HangUps, hangUpClients)
	runCtx, cancel := context.WithTimeout(ctx, d)
	defer cancel()
	var faultTimes []time.Time
	faultErr := make(chan error, 1)
	go func() {
		defer close(faultErr)
		n := f.Restarts + f.HangUps
		for i := 1; i <= n; i++ {
			select {
			case <-time.After(d / time.Duration(n+1)):
			case <-runCtx.Done():
				return
			}
			r.mu.Lock()
			faultTimes = append(faultTimes, time.Now())
			r.mu.Unlock()
			if i <= f.Restarts {
				say(progress, "faults: restarting the token (%d of %d)", i, f.Restarts)
				if err := f.Restart(); err != nil {
					faultErr <- err
					return
				}
				continue
			}
			say(progress, "faults: %d clients hang up mid-request (%d of %d)", hangUpClients, i-f.Restarts, f.HangUps)
			r.hangUpBurst(runCtx, fcs[0].person, i)
		}
	}()
	start := time.Now()
	r.start = start
	var wg sync.WaitGroup
	for c := range fcs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; runCtx.Err() == nil; i++ {
				r.importCard(runCtx, fcs[c], c, i)
				r.reveal(runCtx, fcs[c])
			}
		}()
	}
	wg.Wait()
	r.rep.Seconds = time.Since(start).Seconds()
	r.rep.CutOff = r.rep.Sent - r.rep.Answered
	if err := <-faultErr; err != nil {
		return r.rep, fmt.Errorf("restart: %w", err)
	}
	say(progress, "faults: looking up %d acknowledged imports", r.rep.Acknowledged)
	for _, fc := range fcs {
		for _, card := range fc.cards {
			if !r.found(ctx, card) {
				r.rep.Lost++
			}
		}
	}
	r.rep.Recovery = recoveryTimes(faultTimes, r.oks)
	if p := r.problem.Load(); p != nil {
		r.rep.FirstProblem = *p
	}
	return r.rep, nil
}

func makeKeys(out chan *rsa.PrivateKey, n int) error {
	var wg sync.WaitGroup
	errs := make(chan error, n)
	var made atomic.Int64
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for made.Add(1) <= int64(n) {
				k, err := rsa.GenerateKey(rand.Reader, 2048)
				if err != nil {
					errs <- err
					return
				}
				out <- k
			}
		}()
	}
	wg.Wait()
	close(errs)
	return <-errs
}

// send is one request, counted.
func (r *faultRun) send(ctx context.Context, method, path string, body []byte, idem string) (Answer, bool) {
	atomic.AddInt64(&r.rep.Sent, 1)
	sent := time.Now()
	a, err := r.env.API.Do(ctx, method, path, body, idem)
	if err != nil {
		return a, false // cut off by the run's end, or the connection
	}
	atomic.AddInt64(&r.rep.Answered, 1)
	switch {
	case a.Status == http.StatusServiceUnavailable:
		atomic.AddInt64(&r.rep.Unavailable, 1)
	case a.Status < 300:
		atomic.AddInt64(&r.rep.OK, 1)
		r.mu.Lock()
		r.oks = append(r.oks, okAt{sent, time.Now()})
		r.mu.Unlock()
	default:
		atomic.AddInt64(&r.rep.Other, 1)
		r.note(fmt.Sprintf("%s %s: status %d: %.200s", method, strings.Split(path, "/")[2], a.Status, a.Body))
	}
	return a, true
}

func (r *faultRun) note(problem string) { r.problem.CompareAndSwap(nil, &problem) }

// importCard imports a new card, retrying a 503 with the same
// Idempotency-Key until it is answered or the run ends.
func (r *faultRun) importCard(ctx context.Context, fc *faultClient, c, i int) {
	pan := luhn(fmt.Sprintf("400000%02d%07d", c%100, i))
	cvv := fmt.Sprintf("%03d", (c*7919+i*104729)%1000)
	body, _ := json.Marshal(map[string]any{"owner_id": fc.person, "type": "VIRTUAL", "pan": pan, "cvv": cvv,
		"expiry_month": 12, "expiry_year": 2030, "name": "FAULT RUN"})
	idem := fmt.Sprintf("fault-%d-%d", c, i)
	for ctx.Err() == nil {
		a, answered := r.send(ctx, http.MethodPost, "/v1/cards", body, idem)
		switch {
		case !answered:
			continue
		case a.Status == http.StatusServiceUnavailable:
			time.Sleep(20 * time.Millisecond)
			continue
		case a.Status != http.StatusCreated:
			return
		}
		var meta struct {
			ID    string `json:"id"`
			Last4 string `json:"last4"`
		}
		if json.Unmarshal(a.Body, &meta) != nil || meta.ID == "" || meta.Last4 != pan[len(pan)-4:] {
			atomic.AddInt64(&r.rep.Wrong, 1)
			r.note("import answered with another card's metadata")
			return
		}
		atomic.AddInt64(&r.rep.Acknowledged, 1)
		fc.cards = append(fc.cards, cardRecord{meta.ID, pan, cvv})
		return
	}
}

// hangUpBurst sends hangUpClients imports at once, each from a client
// that hangs up 0.2 to 4 ms after sending, mostly while the server works
// on it. Their outcomes are the clients' own; what is checked is that the
// checked clients never notice.
func (r *faultRun) hangUpBurst(ctx context.Context, owner string, burst int) {
	var wg sync.WaitGroup
	for c := range hangUpClients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			pan := luhn(fmt.Sprintf("400001%02d%02d%05d", burst%100, c, time.Now().Nanosecond()%100000))
			body, _ := json.Marshal(map[string]any{"owner_id": owner, "type": "VIRTUAL", "pan": pan, "cvv": "123",
				"expiry_month": 12, "expiry_year": 2030, "name": "HANG UP"})
			after := 200*time.Microsecond + time.Duration(c)*(4*time.Millisecond-200*time.Microsecond)/hangUpClients
			hangUp, cancel := context.WithTimeout(ctx, after)
			defer cancel()
			if _, err := r.env.API.Do(hangUp, http.MethodPost, "/v1/cards", body, fmt.Sprintf("hang-up-%d-%d", burst, c)); err != nil && hangUp.Err() != nil {
				atomic.AddInt64(&r.rep.HungUp, 1)
			}
		}()
	}
	wg.Wait()
}

// reveal asks for one of the client's cards as a JWE to a fresh real
// device key, and checks the PAN and CVV in it. With no keys left it
// sends nothing.
func (r *faultRun) reveal(ctx context.Context, fc *faultClient) {
	if len(fc.cards) == 0 || r.keys == 0 {
		return
	}
	n := r.paced.Load()
	if time.Now().Before(r.start.Add(time.Duration(n)*r.d/time.Duration(r.keys))) || !r.paced.CompareAndSwap(n, n+1) {
		return
	}
	var key *rsa.PrivateKey
	select {
	case key = <-r.jwks:
	default:
		return
	}
	card := fc.cards[fc.next%len(fc.cards)]
	fc.next++
	a, answered := r.send(ctx, http.MethodPost, "/v1/cards/"+card.id+"/virtual_card_requests", signedJWKBody(fc.device, &key.PublicKey), "")
	if !answered || a.Status != http.StatusOK {
		return
	}
	var out struct {
		Data string `json:"data"`
	}
	_ = json.Unmarshal(a.Body, &out)
	got, err := openJWE(out.Data, key)
	if err != nil || got.PAN != card.pan || got.CVC != card.cvv {
		atomic.AddInt64(&r.rep.Wrong, 1)
		r.note("secure view revealed data that is not the card's")
		return
	}
	atomic.AddInt64(&r.rep.Reveals, 1)
}

type revealed struct {
	PAN string `json:"pan"`
	CVC string `json:"cvc"`
}

func openJWE(compact string, key *rsa.PrivateKey) (revealed, error) {
	var out revealed
	obj, err := jose.ParseEncrypted(compact, []jose.KeyAlgorithm{jose.RSA_OAEP_256}, []jose.ContentEncryption{jose.A256GCM})
	if err != nil {
		return out, err
	}
	plain, err := obj.Decrypt(key)
	if err != nil {
		return out, err
	}
	defer clear(plain)
	err = json.Unmarshal(plain, &out)
	return out, err
}

// signedJWKBody is a secure view request for pub, signed by the device.
func signedJWKBody(d device, pub *rsa.PublicKey) []byte {
	jwk := map[string]string{
		"kty": "RSA", "use": "enc", "alg": "RS256", "kid": "fault-run",
		"n": base64.RawURLEncoding.EncodeToString(pub.N.Bytes()),
		"e": base64.RawURLEncoding.EncodeToString(big.NewInt(int64(pub.E)).Bytes()),
	}
	return signJWK(d, jwk)
}

// found looks a card up by its PAN after the run; an acknowledged import
// that is not there, or is another card, is a lost write.
func (r *faultRun) found(ctx context.Context, card cardRecord) bool {
	body, _ := json.Marshal(map[string]string{"pan": card.pan})
	a, err := r.env.API.Do(ctx, http.MethodPost, "/v1/cards/lookup", body, "")
	if err != nil || a.Status != http.StatusOK {
		return false
	}
	var meta struct {
		ID string `json:"id"`
	}
	return json.Unmarshal(a.Body, &meta) == nil && meta.ID == card.id
}

// recoveryTimes is, per restart, how long until a request sent after it
// was answered successfully.
func recoveryTimes(restarts []time.Time, oks []okAt) []float64 {
	sort.Slice(oks, func(i, j int) bool { return oks[i].answered.Before(oks[j].answered) })
	out := make([]float64, 0, len(restarts))
	for _, at := range restarts {
		rec := -1.0 // never recovered
		for _, ok := range oks {
			if !ok.sent.Before(at) {
				rec = ok.answered.Sub(at).Seconds()
				break
			}
		}
		out = append(out, rec)
	}
	return out
}

// luhn appends the Luhn check digit to digits.
func luhn(digits string) string {
	sum := 0
	for i := len(digits) - 1; i >= 0; i-- {
		d := int(digits[i] - '0')
		if (len(digits)-1-i)%2 == 0 {
			if d *= 2; d > 9 {
				d -= 9
			}
		}
		sum += d
	}
	return digits + fmt.Sprint((10-sum%10)%10)
}

// WriteFaultReport prints the report for a person.
func WriteFaultReport(w io.Writer, r FaultReport) {
	fmt.Fprintf(w, "load under faults: %d clients, %.1fs, token restarted %d times, %d bursts of clients hanging up (%d requests cut off)\n",
		r.Clients, r.Seconds, r.Restarts, r.HangUps, r.HungUp)
	fmt.Fprintf(w, "  requests sent       %d\n  answered            %d\n  cut off at the end  %d\n  ok                  %d\n  503 (failed closed) %d\n  other status        %d\n",
		r.Sent, r.Answered, r.CutOff, r.OK, r.Unavailable, r.Other)
	fmt.Fprintf(w, "  wrong answers       %d\n  writes acknowledged %d\n  lost writes         %d\n  reveals checked     %d\n",
		r.Wrong, r.Acknowledged, r.Lost, r.Reveals)
	for i, s := range r.Recovery {
		fmt.Fprintf(w, "  recovery after fault %d: %.3fs\n", i+1, s)
	}
	if r.FirstProblem != "" {
		fmt.Fprintf(w, "  first problem: %s\n", r.FirstProblem)
	}
}
