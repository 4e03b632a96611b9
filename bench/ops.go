package bench

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"math/big"
	"net/http"
	"sort"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/cardvault/cardvault/hsm"
	"github.com/cardvault/cardvault/internal/libcrypto"
	"github.com/cardvault/cardvault/jwe"
)

// Op is one operation of the bench.
type Op interface {
	Name() string
	// Target is the least ratio of service throughput to the operation's
	// limit (limit.go), or to its reference rate if it has one.
	Target() float64
	// Setup makes what every client needs (cards, devices), once per client.
	Setup(ctx context.Context, clients int) error
	// Prepare makes n requests ready, so that the timed phase spends no
	// CPU on making them; a step that runs out returns ErrExhausted.
	Prepare(ctx context.Context, n int) error
	// Step sends one request as client c and checks the answer.
	Step(ctx context.Context, c int) error
	// Bound does the operation's crypto work once, in-process.
	Bound(ctx context.Context) error
}

// Referenced is an Op whose target is set against a reference rate other
// than its crypto bound: PIN set against the raw RSA-4096 decrypt.
type Referenced interface {
	Reference() (name string, step func(ctx context.Context) error)
}

// Env is what operations run against: the served API and, for the bounds,
// the same token in-process.
type Env struct {
	API  *Client
	Keys *hsm.Module
	// run sets this run's owners apart from an earlier run's on the same
	// database (a target serves on): a person holds at most five devices.
	run string
}

// NewEnv returns the environment of one bench run.
func NewEnv(api *Client, keys *hsm.Module) *Env {
	var b [4]byte
	_, _ = rand.Read(b[:]) // crypto/rand does not fail on supported platforms
	return &Env{API: api, Keys: keys, run: hex.EncodeToString(b[:])}
}

// owner names client c's owner of a kind ("jiko", "sv2048", "fault"): one
// per client, so that no two clients contend for one card's budget row.
func (e *Env) owner(kind string, c int) string {
	return fmt.Sprintf("bench-%s-%s-%d", e.run, kind, c)
}

// fakeModulus is a distinct odd modulus of bits bits with the top bit
// set. The vault only encrypts to client and device keys, so it cannot
// tell these from real ones, and a real 4096-bit key costs about a second
// to generate. Nobody can decrypt what is sent to them, which is the point
// of a bench that must leave no readable card data behind.
func fakeModulus(bits int) *big.Int {
	n, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), uint(bits-1)))
	if err != nil {
		panic(err) // crypto/rand does not fail on supported platforms
	}
	return n.SetBit(n, bits-1, 1).SetBit(n, 0, 1)
}

func fakePublicKey(bits int) *rsa.PublicKey {
	return &rsa.PublicKey{N: fakeModulus(bits), E: 65537}
}

func publicKeyPEM(pub *rsa.PublicKey) string {
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		panic(err)
	}
	return string(pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der}))
}

// keyBody is a request body {"public_key": PEM} with a fresh fake 4096-bit
// key: the vault burns every Jiko client key.
func keyBody() []byte {
	b, _ := json.Marshal(map[string]string{"public_key": publicKeyPEM(fakePublicKey(4096))})
	return b
}

// prepareKeyBodies gives each client its share of n key bodies.
func prepareKeyBodies(clients, n, workers int) []queue {
	per := n/clients + 1
	qs := make([]queue, clients)
	for c := range qs {
		qs[c].fill(per, workers, func(int) []byte { return keyBody() })
	}
	return qs
}

// issue creates a virtual card for an account and returns its id.
func (e *Env) issue(ctx context.Context, acct string, body []byte) (string, error) {
	a, err := e.API.Expect(ctx, http.MethodPost, "/api/v1/jiko-accounts/"+acct+"/virtual-cards", body, "", "create card", http.StatusCreated)
	if err != nil {
		return "", err
	}
	var out struct {
		CardID string `json:"card_id"`
	}
	if err := json.Unmarshal(a.Body, &out); err != nil || out.CardID == "" {
		return "", fmt.Errorf("create card: no card_id in the answer")
	}
	return out.CardID, nil
}

// issuePerClient gives each client a card of its own.
func (e *Env) issuePerClient(ctx context.Context, clients int) ([]string, error) {
	cards := make([]string, clients)
	for c := range cards {
		id, err := e.issue(ctx, e.owner("jiko", c), keyBody())
		if err != nil {
			return nil, err
		}
		cards[c] = id
	}
	return cards, nil
}

// boundPAN stands in for a PAN in the bounds, which only need its length.
// It fails the Luhn check on purpose: no card has it.
const boundPAN = "4000001234567890"

// pkcs1Fields is the client-side encryption a Jiko answer carries: PAN,
// CVV and expiry, each RSA-4096 PKCS#1 v1.5, done as the vault does it.
func pkcs1Fields(pub *rsa.PublicKey) error {
	key, err := libcrypto.NewPublicKey(pub)
	if err != nil {
		return err
	}
	defer key.Close()
	for _, v := range []string{boundPAN, "123", "12/29"} {
		if _, err := key.EncryptPKCS1v15([]byte(v)); err != nil {
			return err
		}
	}
	return nil
}

// recordSize is about a sealed card record's plaintext: PAN, CVV, expiry
// and the cardholder name.
const recordSize = 64

// jikoCreate is POST /api/v1/jiko-accounts/:account/virtual-cards.
type jikoCreate struct {
	env     *Env
	workers int
	clients int
	bodies  []queue // per client
	pub     *rsa.PublicKey
}

func (o *jikoCreate) Name() string    { return "jiko_create" }
func (o *jikoCreate) Target() float64 { return 0.50 }

func (o *jikoCreate) Setup(ctx context.Context, clients int) error {
	o.clients, o.pub = clients, fakePublicKey(4096)
	return nil
}

func (o *jikoCreate) Prepare(_ context.Context, n int) error {
	o.bodies = prepareKeyBodies(o.clients, n, o.workers)
	return nil
}

func (o *jikoCreate) Step(ctx context.Context, c int) error {
	body, err := o.bodies[c].take()
	if err != nil {
		return err
	}
	_, err = o.env.issue(ctx, o.env.owner("jiko", c), body)
	return err
}

// Costs: the seal and the PAN fingerprint in the token, and the three
// field encryptions to the client's RSA-4096 key.
func (o *jikoCreate) Costs() []Cost {
	return []Cost{{PrimSeal, 1}, {PrimHMAC, 1}, {PrimRSA4096Pub, 3}}
}

// Bound: the HSM seal and PAN HMAC, and the three client encryptions.
func (o *jikoCreate) Bound(ctx context.Context) error {
	if _, _, err := o.env.Keys.Seal(ctx, []byte("card-id"), make([]byte, recordSize)); err != nil {
		return err
	}
	if _, _, err := o.env.Keys.FingerprintPAN(ctx, []byte(boundPAN)); err != nil {
		return err
	}
	return pkcs1Fields(o.pub)
}

// jikoRead is POST /api/v1/jiko-accounts/:account/virtual-cards/:card.
type jikoRead struct {
	env     *Env
	workers int
	bodies  []queue // per client
	cards   []string
	pub     *rsa.PublicKey
	sealed  []byte
}

func (o *jikoRead) Name() string    { return "jiko_read" }
func (o *jikoRead) Target() float64 { return 0.50 }

func (o *jikoRead) Setup(ctx context.Context, clients int) error {
	o.pub = fakePublicKey(4096)
	var err error
	if o.cards, err = o.env.issuePerClient(ctx, clients); err != nil {
		return err
	}
	o.sealed, _, err = o.env.Keys.Seal(ctx, []byte("card-id"), make([]byte, recordSize))
	return err
}

func (o *jikoRead) Prepare(_ context.Context, n int) error {
	o.bodies = prepareKeyBodies(len(o.cards), n, o.workers)
	return nil
}

func (o *jikoRead) Step(ctx context.Context, c int) error {
	body, err := o.bodies[c].take()
	if err != nil {
		return err
	}
	path := "/api/v1/jiko-accounts/" + o.env.owner("jiko", c) + "/virtual-cards/" + o.cards[c]
	_, err = o.env.API.Expect(ctx, http.MethodPost, path, body, "", "read card", http.StatusOK)
	return err
}

// Bound: the HSM open and the three client encryptions.
// Costs: the record opened in the token, three field encryptions.
func (o *jikoRead) Costs() []Cost { return []Cost{{PrimOpen, 1}, {PrimRSA4096Pub, 3}} }

func (o *jikoRead) Bound(ctx context.Context) error {
	if _, err := o.env.Keys.Open(ctx, []byte("card-id"), o.sealed); err != nil {
		return err
	}
	return pkcs1Fields(o.pub)
}

// queue hands out prepared request bodies, each once.
type queue struct {
	items [][]byte
	next  atomic.Int64
}

func (q *queue) take() ([]byte, error) {
	i := q.next.Add(1) - 1
	if i >= int64(len(q.items)) {
		return nil, ErrExhausted
	}
	b := q.items[i]
	q.items[i] = nil // let the collector have it
	return b, nil
}

// fill makes n items with gen, spread over workers goroutines.
func (q *queue) fill(n int, workers int, gen func(i int) []byte) {
	q.items = make([][]byte, n)
	q.next.Store(0)
	var wg sync.WaitGroup
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := w; i < n; i += workers {
				q.items[i] = gen(i)
			}
		}()
	}
	wg.Wait()
}

// device is a bound Solaris device: its id, its person's card, and its
// unrestricted signing key.
type device struct {
	id, card string
	key      *ecdsa.PrivateKey
}

// secureView is POST /v1/cards/:id/virtual_card_requests with a fresh
// device JWK of bits bits per request: the vault burns each JWK.
type secureView struct {
	env     *Env
	bits    int
	devices []device
	bodies  []queue // per client
	workers int
	sealed  []byte
	pub     *rsa.PublicKey
	sig     []byte
	signed  []byte
	verify  *ecdsa.PublicKey
}

func (o *secureView) Name() string { return fmt.Sprintf("secure_view_%d", o.bits) }
func (o *secureView) Target() float64 {
	// The 4096-bit key's heavier public operation leaves less of the
	// request to the service, so more of its limit is within reach.
	if o.bits >= 4096 {
		return 0.60
	}
	return 0.40
}

func (o *secureView) Setup(ctx context.Context, clients int) error {
	o.devices = make([]device, clients)
	for c := range o.devices {
		person := o.env.owner(fmt.Sprint("sv", o.bits), c)
		card, err := o.env.issue(ctx, person, keyBody())
		if err != nil {
			return err
		}
		d, err := o.env.bindDevice(ctx, person)
		if err != nil {
			return err
		}
		d.card = card
		o.devices[c] = d
	}
	var err error
	if o.sealed, _, err = o.env.Keys.Seal(ctx, []byte("card-id"), make([]byte, recordSize)); err != nil {
		return err
	}
	o.pub = fakePublicKey(o.bits)
	o.verify = &o.devices[0].key.PublicKey
	o.signed = []byte("e:AQAB;kid:bench;kty:RSA;n:...;use:enc")
	digest := sha256.Sum256(o.signed)
	o.sig, err = ecdsa.SignASN1(rand.Reader, o.devices[0].key, digest[:])
	return err
}

// bindDevice registers a device for person and answers its challenge.
func (e *Env) bindDevice(ctx context.Context, person string) (device, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return device{}, err
	}
	point, err := key.PublicKey.Bytes()
	if err != nil {
		return device{}, err
	}
	body, _ := json.Marshal(map[string]string{"person_id": person, "key_type": "ecdsa-p256", "key": hex.EncodeToString(point), "key_purpose": "unrestricted"})
	a, err := e.API.Expect(ctx, http.MethodPost, "/v1/mfa/devices", body, "", "register device", http.StatusAccepted)
	if err != nil {
		return device{}, err
	}
	var reg struct {
		ID        string `json:"id"`
		Challenge struct {
			ID           string `json:"id"`
			StringToSign string `json:"string_to_sign"`
		} `json:"challenge"`
	}
	if err := json.Unmarshal(a.Body, &reg); err != nil {
		return device{}, fmt.Errorf("register device: %w", err)
	}
	body, _ = json.Marshal(map[string]string{"signature": signHex(key, reg.Challenge.StringToSign)})
	if _, err := e.API.Expect(ctx, http.MethodPut, "/v1/mfa/challenges/signatures/"+reg.Challenge.ID, body, "", "verify device", http.StatusNoContent); err != nil {
		return device{}, err
	}
	return device{id: reg.ID, key: key}, nil
}

func signHex(key *ecdsa.PrivateKey, msg string) string {
	digest := sha256.Sum256([]byte(msg))
	sig, err := ecdsa.SignASN1(rand.Reader, key, digest[:])
	if err != nil {
		panic(err)
	}
	return hex.EncodeToString(sig)
}

// Prepare signs n fresh JWKs, shared out among the clients.
func (o *secureView) Prepare(_ context.Context, n int) error {
	per := n/len(o.devices) + 1
	o.bodies = make([]queue, len(o.devices))
	for c := range o.bodies {
		d := o.devices[c]
		o.bodies[c].fill(per, max(1, o.workers), func(i int) []byte { return secureViewBody(d, o.bits, c*per+i) })
	}
	return nil
}

// secureViewBody is a request with a fresh fake JWK of bits bits.
func secureViewBody(d device, bits, i int) []byte {
	return signJWK(d, map[string]string{
		"kty": "RSA", "use": "enc", "alg": "RS256", "kid": fmt.Sprint("bench-", i),
		"n": base64.RawURLEncoding.EncodeToString(fakeModulus(bits).Bytes()), "e": "AQAB",
	})
}

// signJWK is a secure view request for jwk, signed by the device over the
// JWK's members as "name:value" pairs in name order, joined by ";".
func signJWK(d device, jwk map[string]string) []byte {
	names := make([]string, 0, len(jwk))
	for k := range jwk {
		names = append(names, k)
	}
	sort.Strings(names)
	pairs := make([]string, len(names))
	for j, k := range names {
		pairs[j] = k + ":" + jwk[k]
	}
	body, _ := json.Marshal(map[string]any{
		"device_id": d.id, "signature": signHex(d.key, strings.Join(pairs, ";")), "jwk": jwk,
		"jwe": map[string]string{"alg": "RSA_OAEP_256", "enc": "A256GCM"},
	})
	return body
}

func (o *secureView) Step(ctx context.Context, c int) error {
	body, err := o.bodies[c].take()
	if err != nil {
		return err
	}
	_, err = o.env.API.Expect(ctx, http.MethodPost, "/v1/cards/"+o.devices[c].card+"/virtual_card_requests", body, "", "secure view", http.StatusOK)
	return err
}

// secureViewPayload is the size of the JWE's plaintext.
var secureViewPayload = []byte(`{"pan":"` + boundPAN + `","cvc":"123","expires_at":"2029-12-31","line_1":"BENCH CARDHOLDER"}`)

// Bound: the HSM open, the JWE (RSA-OAEP-256 key encryption and A256GCM
// content encryption) and the ECDSA verify of the device's signature.
// Costs: the record opened in the token, the content key wrapped to the
// device's RSA key, the device's P-256 signature verified.
func (o *secureView) Costs() []Cost {
	pub := PrimRSA2048Pub
	if o.bits == 4096 {
		pub = PrimRSA4096Pub
	}
	return []Cost{{PrimOpen, 1}, {pub, 1}, {PrimP256Verify, 1}}
}

func (o *secureView) Bound(ctx context.Context) error {
	if _, err := o.env.Keys.Open(ctx, []byte("card-id"), o.sealed); err != nil {
		return err
	}
	if _, err := jwe.Encrypt(jwe.Recipient{Key: o.pub, KeyID: "bench", HasKeyID: true}, jwe.RSAOAEP256, jwe.A256GCM, secureViewPayload); err != nil {
		return err
	}
	digest := sha256.Sum256(o.signed)
	if !ecdsa.VerifyASN1(o.verify, digest[:], o.sig) {
		return fmt.Errorf("bound: signature does not verify")
	}
	return nil
}

// pinSet is Jiko's POST /api/v1/jiko-accounts/:account/cards/:card/pin.
type pinSet struct {
	env     *Env
	cards   []string
	pub     *rsa.PublicKey
	version uint32
	bodies  []queue
	workers int
	ct      []byte
}

// benchPIN is the PIN every request sets, in Jiko's plaintext form.
const benchPIN = "1357\n"

func (o *pinSet) Name() string    { return "pin_set" }
func (o *pinSet) Target() float64 { return 0.92 }

func (o *pinSet) Setup(ctx context.Context, clients int) error {
	var err error
	if o.cards, err = o.env.issuePerClient(ctx, clients); err != nil {
		return err
	}
	if o.pub, o.version, err = o.env.Keys.SetPINPublicKey(ctx, 0); err != nil {
		return err
	}
	o.ct, err = rsaEncryptPIN(o.pub)
	return err
}

// Prepare encrypts n PINs to the published set_pin key, as a client would.
func (o *pinSet) Prepare(_ context.Context, n int) error {
	per := n/len(o.cards) + 1
	o.bodies = make([]queue, len(o.cards))
	for c := range o.bodies {
		o.bodies[c].fill(per, max(1, o.workers), func(int) []byte {
			ct, err := rsa.EncryptPKCS1v15(rand.Reader, o.pub, []byte(benchPIN))
			if err != nil {
				panic(err)
			}
			b, _ := json.Marshal(map[string]string{"encrypted_pin": base64.StdEncoding.EncodeToString(ct)})
			return b
		})
	}
	return nil
}

func (o *pinSet) Step(ctx context.Context, c int) error {
	body, err := o.bodies[c].take()
	if err != nil {
		return err
	}
	_, err = o.env.API.Expect(ctx, http.MethodPost, "/api/v1/jiko-accounts/"+o.env.owner("jiko", c)+"/cards/"+o.cards[c]+"/pin", body, "", "set PIN", http.StatusOK)
	return err
}

// Costs: the RSA-4096 private operation and the two PEK block
// encryptions, all in the token.
func (o *pinSet) Costs() []Cost { return []Cost{{PrimRSA4096Priv, 1}, {PrimPEKBlock, 2}} }

// Bound: the HSM RSA-4096 decrypt and the two PEK block encryptions of
// ISO 9564 format 4.
func (o *pinSet) Bound(ctx context.Context) error {
	if _, err := o.env.Keys.SetPINDecryptPKCS1(ctx, o.version, o.ct); err != nil {
		return err
	}
	block := make([]byte, 16)
	ib, v, err := o.env.Keys.PEKEncryptBlock(ctx, 0, block)
	if err != nil {
		return err
	}
	_, _, err = o.env.Keys.PEKEncryptBlock(ctx, v, ib)
	return err
}

// Reference is the raw HSM RSA-4096 private operation, which the target is
// set against.
func (o *pinSet) Reference() (string, func(ctx context.Context) error) {
	return "hsm_rsa4096_decrypt", func(ctx context.Context) error {
		_, err := o.env.Keys.SetPINDecryptPKCS1(ctx, o.version, o.ct)
		return err
	}
}

// Ops are the bench's operations in the order they run.
func Ops(env *Env, workers int) []Op {
	return []Op{
		&jikoCreate{env: env, workers: workers},
		&jikoRead{env: env, workers: workers},
		&secureView{env: env, bits: 2048, workers: workers},
		&secureView{env: env, bits: 4096, workers: workers},
		&pinSet{env: env, workers: workers},
	}
}
