package httpapi

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"encoding/base64"
	"encoding/json"
	"math"
	"net/http"
	"slices"
	"testing"
	"time"
)

// pinBench is a card and the set_pin key its PIN is encrypted to.
type pinBench struct {
	*benchStack
	path string
	pub  *rsa.PublicKey
}

func newPINBench(b *testing.B) *pinBench {
	s := newBenchStack(b)
	cardID := s.issueCard(b, "acct-1")
	pub, _, err := s.m.SetPINPublicKey(context.Background(), 0)
	if err != nil {
		b.Fatal(err)
	}
	return &pinBench{s, "/api/v1/jiko-accounts/acct-1/cards/" + cardID + "/pin", pub}
}

func (p *pinBench) send(ct []byte) (int, []byte, error) {
	body, _ := json.Marshal(map[string]string{"encrypted_pin": base64.StdEncoding.EncodeToString(ct)})
	return p.benchStack.send(http.MethodPost, p.path, body)
}

// badPadding is a random value below the modulus: RSA-decrypting it gives
// noise, whose PKCS#1 v1.5 padding is invalid but for a chance of 2^-16.
func (p *pinBench) badPadding() []byte {
	n, _ := rand.Int(rand.Reader, p.pub.N)
	return n.FillBytes(make([]byte, p.pub.Size()))
}

// BenchmarkPINPaddingTiming is the padding-oracle check, as a benchmark:
// it alternates refused requests with valid padding (a weak PIN) and with
// invalid padding, one at a time, and reports each class's median and
// mean response time and Welch's t statistic of the difference. A |t|
// well under 2-3 over thousands of requests says the classes are not
// told apart by time; the figure is reported, never asserted.
func BenchmarkPINPaddingTiming(b *testing.B) {
	p := newPINBench(b)
	var valid, invalid []float64
	weak := make([][]byte, 0, b.N)
	bad := make([][]byte, 0, b.N)
	for i := 0; i < b.N; i++ {
		ct, _ := rsa.EncryptPKCS1v15(rand.Reader, p.pub, []byte("1234\n"))
		weak = append(weak, ct)
		bad = append(bad, p.badPadding())
	}
	var first []byte
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		for class, ct := range [][]byte{weak[i], bad[i]} {
			start := time.Now()
			status, body, err := p.send(ct)
			elapsed := float64(time.Since(start).Nanoseconds())
			if err != nil || status != http.StatusUnprocessableEntity {
				b.Fatalf("refusal: %d %s %v", status, body, err)
			}
			if first == nil {
				first = body
			} else if string(body) != string(first) {
				b.Fatalf("refusals differ: %s / %s", first, body)
			}
			if class == 0 {
				valid = append(valid, elapsed)
			} else {
				invalid = append(invalid, elapsed)
			}
		}
	}
	b.StopTimer()
	mv, vv := meanVar(valid)
	mi, vi := meanVar(invalid)
	b.ReportMetric(median(valid), "valid-median-ns")
	b.ReportMetric(median(invalid), "invalid-median-ns")
	b.ReportMetric(mv, "valid-mean-ns")
	b.ReportMetric(mi, "invalid-mean-ns")
	if n := float64(len(valid)); n > 1 {
		b.ReportMetric((mv-mi)/math.Sqrt(vv/n+vi/n), "welch-t")
	}
}

func meanVar(xs []float64) (mean, variance float64) {
	for _, x := range xs {
		mean += x
	}
	mean /= float64(len(xs))
	for _, x := range xs {
		variance += (x - mean) * (x - mean)
	}
	if len(xs) > 1 {
		variance /= float64(len(xs) - 1)
	}
	return mean, variance
}

func median(xs []float64) float64 {
	s := slices.Clone(xs)
	slices.Sort(s)
	return s[len(s)/2]
}
