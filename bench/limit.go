package bench

import (
	"bufio"
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"fmt"
	"io"
	"os/exec"
	"strconv"
	"strings"
	"time"
)

// The limit of an operation is the rate its crypto work would reach with
// the fastest primitive this machine has for each step, all measured in the
// same run: the token's own rate for what only the token may do (its keys
// never leave it), OpenSSL's for RSA public operations, Go's for P-256
// verification. Where an operation costs n_i of primitive i, running at
// r_i per second with every client busy, its limit is 1 / Σ n_i/r_i.

// Cost is n uses of a primitive in one operation.
type Cost struct {
	Primitive string
	N         int
}

// Limited is an Op that says what its crypto work is made of.
type Limited interface {
	Costs() []Cost
}

// Primitives the limits are made of.
const (
	PrimSeal        = "token AES-GCM seal"
	PrimOpen        = "token AES-GCM open"
	PrimHMAC        = "token HMAC-SHA256"
	PrimPEKBlock    = "token AES block"
	PrimRSA4096Priv = "token RSA-4096 private"
	PrimRSA4096Pub  = "openssl RSA-4096 public"
	PrimRSA2048Pub  = "openssl RSA-2048 public"
	PrimP256Verify  = "go P-256 verify"
)

// Limits holds the rates of the primitives, per second.
type Limits map[string]float64

// Of is an operation's limit: 0 if a primitive was not measured.
func (l Limits) Of(costs []Cost) float64 {
	var seconds float64
	for _, c := range costs {
		r := l[c.Primitive]
		if r <= 0 {
			return 0
		}
		seconds += float64(c.N) / r
	}
	if seconds == 0 {
		return 0
	}
	return 1 / seconds
}

// MeasureLimits measures every primitive ops need, with clients workers
// (OpenSSL with one process per CPU) for d each.
func MeasureLimits(ctx context.Context, env *Env, ops []Op, clients, cpus int, d time.Duration, progress io.Writer) (Limits, error) {
	need := map[string]bool{}
	for _, op := range ops {
		if l, ok := op.(Limited); ok {
			for _, c := range l.Costs() {
				need[c.Primitive] = true
			}
		}
	}
	limits := Limits{}
	token, err := tokenSteps(ctx, env)
	if err != nil {
		return nil, err
	}
	for name, step := range token {
		if !need[name] {
			continue
		}
		say(progress, "limit: %s for %s", name, d)
		s := Drive(ctx, clients, d, func(ctx context.Context, _ int) error { return step(ctx) })
		if s.Failures > 0 {
			return nil, fmt.Errorf("limit %s: %w", name, s.FirstFailure)
		}
		limits[name] = s.Rate()
	}
	if need[PrimRSA4096Pub] || need[PrimRSA2048Pub] {
		say(progress, "limit: openssl speed rsa2048 rsa4096, %d processes", cpus)
		rates, err := opensslRSAVerify(ctx, cpus, d)
		if err != nil {
			return nil, err
		}
		limits[PrimRSA2048Pub], limits[PrimRSA4096Pub] = rates[2048], rates[4096]
	}
	if need[PrimP256Verify] {
		say(progress, "limit: %s for %s", PrimP256Verify, d)
		key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			return nil, err
		}
		digest := sha256.Sum256([]byte("a JWK's canonical string"))
		sig, err := ecdsa.SignASN1(rand.Reader, key, digest[:])
		if err != nil {
			return nil, err
		}
		s := Drive(ctx, clients, d, func(context.Context, int) error {
			if !ecdsa.VerifyASN1(&key.PublicKey, digest[:], sig) {
				return fmt.Errorf("P-256 signature does not verify")
			}
			return nil
		})
		limits[PrimP256Verify] = s.Rate()
	}
	return limits, nil
}

// tokenSteps are the token's own operations, one call each.
func tokenSteps(ctx context.Context, env *Env) (map[string]func(context.Context) error, error) {
	record := make([]byte, recordSize)
	sealed, _, err := env.Keys.Seal(ctx, []byte("card-id"), record)
	if err != nil {
		return nil, err
	}
	pub, version, err := env.Keys.SetPINPublicKey(ctx, 0)
	if err != nil {
		return nil, err
	}
	ct, err := rsaEncryptPIN(pub)
	if err != nil {
		return nil, err
	}
	return map[string]func(context.Context) error{
		PrimSeal: func(ctx context.Context) error {
			_, _, err := env.Keys.Seal(ctx, []byte("card-id"), record)
			return err
		},
		PrimOpen: func(ctx context.Context) error {
			_, err := env.Keys.Open(ctx, []byte("card-id"), sealed)
			return err
		},
		PrimHMAC: func(ctx context.Context) error {
			_, _, err := env.Keys.FingerprintPAN(ctx, []byte(boundPAN))
			return err
		},
		PrimPEKBlock: func(ctx context.Context) error {
			_, _, err := env.Keys.PEKEncryptBlock(ctx, 0, make([]byte, 16))
			return err
		},
		PrimRSA4096Priv: func(ctx context.Context) error {
			_, err := env.Keys.SetPINDecryptPKCS1(ctx, version, ct)
			return err
		},
	}, nil
}

// rsaEncryptPIN encrypts the bench's PIN to a set_pin key, as a client does.
func rsaEncryptPIN(pub *rsa.PublicKey) ([]byte, error) {
	return rsa.EncryptPKCS1v15(rand.Reader, pub, []byte(benchPIN))
}

// opensslRSAVerify runs `openssl speed -multi cpus rsa2048 rsa4096` and
// returns the verify (public operation) rates by modulus size: all
// processes together, which is what the machine can do.
func opensslRSAVerify(ctx context.Context, cpus int, d time.Duration) (map[int]float64, error) {
	secs := max(1, int(d.Seconds()))
	cmd := exec.CommandContext(ctx, "openssl", "speed", "-seconds", strconv.Itoa(secs), "-multi", strconv.Itoa(cpus), "rsa2048", "rsa4096")
	var out bytes.Buffer
	cmd.Stdout = &out
	if err := cmd.Run(); err != nil {
		return nil, fmt.Errorf("openssl speed: %w", err)
	}
	rates := map[int]float64{}
	sc := bufio.NewScanner(&out)
	for sc.Scan() {
		// "rsa 4096 bits 0.002985s 0.000047s    335.0  21119.0"
		f := strings.Fields(sc.Text())
		if len(f) == 7 && f[0] == "rsa" && f[2] == "bits" {
			bits, err1 := strconv.Atoi(f[1])
			verify, err2 := strconv.ParseFloat(f[6], 64)
			if err1 == nil && err2 == nil {
				rates[bits] = verify
			}
		}
	}
	if rates[2048] == 0 || rates[4096] == 0 {
		return nil, fmt.Errorf("openssl speed: no RSA verify rates in its output:\n%s", out.String())
	}
	return rates, nil
}
