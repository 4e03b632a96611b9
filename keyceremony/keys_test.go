package keyceremony

import (
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cardvault/cardvault/hsm"
	"github.com/cardvault/cardvault/vault"
)

var (
	rsaOnce sync.Once
	rsaKey  *rsa.PrivateKey
)

// softProver does each purpose's operation in Go, honestly unless told
// which one to break; the real prover is the token (the ceremonies'
// tests through the binary).
type softProver struct{ broken string }

func (p softProver) SealWithVersion(_ context.Context, _ uint32, aad, pt []byte) ([]byte, error) {
	return append(append([]byte{}, aad...), pt...), nil
}
func (p softProver) Open(_ context.Context, aad, sealed []byte) ([]byte, error) {
	if p.broken == "open" {
		return []byte("something else"), nil
	}
	return sealed[len(aad):], nil
}
func (p softProver) EncryptBlock(_ context.Context, _ uint32, b []byte) ([]byte, error) {
	if p.broken == "identity-block" {
		return append([]byte{}, b...), nil
	}
	out := make([]byte, len(b))
	for i := range b {
		out[i] = b[i] ^ 0x5a
	}
	return out, nil
}
func (p softProver) DecryptBlock(ctx context.Context, v uint32, b []byte) ([]byte, error) {
	if p.broken == "identity-block" {
		return append([]byte{}, b...), nil
	}
	return p.EncryptBlock(ctx, v, b)
}
func (p softProver) ZonePINDecryptBlock(ctx context.Context, v uint32, b []byte) ([]byte, error) {
	return p.DecryptBlock(ctx, v, b)
}
func (p softProver) MACWithVersion(_ context.Context, _ hsm.Purpose, _ uint32, data []byte) ([]byte, error) {
	key := []byte("k")
	if p.broken == "random-mac" {
		key = make([]byte, 16)
		rand.Read(key)
	}
	m := hmac.New(sha256.New, key)
	m.Write(data)
	return m.Sum(nil), nil
}
func (p softProver) PublicKey(context.Context, uint32) (*rsa.PublicKey, error) {
	rsaOnce.Do(func() { rsaKey, _ = rsa.GenerateKey(rand.Reader, 4096) })
	if p.broken == "short-rsa" {
		k, _ := rsa.GenerateKey(rand.Reader, 2048)
		return &k.PublicKey, nil
	}
	return &rsaKey.PublicKey, nil
}
func (p softProver) DecryptRSA(_ context.Context, _ uint32, _ hsm.RSAPadding, ct []byte) ([]byte, error) {
	if p.broken == "rsa-decrypt" {
		return nil, errors.New("CKR_KEY_FUNCTION_NOT_PERMITTED")
	}
	return rsa.DecryptPKCS1v15(nil, rsaKey, ct)
}

func TestVerifyKeyProvesEachPurpose(t *testing.T) {
	ctx := context.Background()
	for _, p := range append(hsm.Purposes, hsm.ImportedPurposes...) {
		if err := VerifyKey(ctx, softProver{}, p, 2); err != nil {
			t.Errorf("%s: an honest key failed its proof: %v", p, err)
		}
	}
	for _, tc := range []struct {
		p      hsm.Purpose
		broken string
	}{
		{hsm.CardKEK, "open"}, {hsm.PEK, "identity-block"}, {hsm.ZonePIN, "identity-block"}, {hsm.PANHMAC, "random-mac"}, {hsm.Audit, "random-mac"},
		{hsm.SetPIN, "short-rsa"}, {hsm.SetPIN, "rsa-decrypt"},
	} {
		if err := VerifyKey(ctx, softProver{broken: tc.broken}, tc.p, 2); err == nil {
			t.Errorf("%s with %s passed its proof", tc.p, tc.broken)
		}
	}
	if err := VerifyKey(ctx, softProver{}, hsm.Purpose("nonsense"), 1); err == nil {
		t.Error("a purpose with no proof passed")
	}
}

func TestExportPolicy(t *testing.T) {
	for _, tc := range []struct {
		k    hsm.KeyInfo
		want string
	}{
		{hsm.KeyInfo{Class: "public", Extractable: true}, "public"},
		{hsm.KeyInfo{Class: "secret"}, "never"},
		{hsm.KeyInfo{Class: "private", Extractable: true, WrapWithTrusted: true}, "trusted-wrap"},
		{hsm.KeyInfo{Class: "secret", Extractable: true}, "WRAPPABLE"},
	} {
		if got := ExportPolicy(tc.k); got != tc.want {
			t.Errorf("%+v: %s, want %s", tc.k, got, tc.want)
		}
	}
}

type fakeUse struct {
	use         vault.KeyUse
	checkpoints map[uint32]int
}

func (f fakeUse) KeyUse(context.Context) (vault.KeyUse, error) { return f.use, nil }
func (f fakeUse) CheckpointsUnder(_ context.Context, v uint32) (int, error) {
	return f.checkpoints[v], nil
}

type fakeKeys []hsm.KeyInfo

func (f fakeKeys) Keys(context.Context) ([]hsm.KeyInfo, error) { return f, nil }

func TestVersionInUseIsTheRetireRule(t *testing.T) {
	ctx := context.Background()
	now := time.Date(2026, 12, 1, 15, 0, 0, 0, time.UTC)
	use := fakeUse{
		use:         vault.KeyUse{CardKEK: map[uint32]int{1: 26, 2: 8}, PANHMAC: map[uint32]int{1: 0}, PEK: map[uint32]int{1: 2}},
		checkpoints: map[uint32]int{1: 38},
	}
	keys := fakeKeys{
		{Purpose: hsm.SetPIN, Version: 1, Class: "public", EndDate: now.Truncate(24 * time.Hour)}, // last day is today
		{Purpose: hsm.SetPIN, Version: 2, Class: "public", EndDate: now.Add(-48 * time.Hour)},     // grace over
		{Purpose: hsm.SetPIN, Version: 3, Class: "public"},                                        // never dated: active
		{Purpose: hsm.SetPIN, Version: 1, Class: "private", EndDate: now.Add(240 * time.Hour)},    // only the public half dates
	}
	for _, tc := range []struct {
		p       hsm.Purpose
		version uint32
		n       int
		why     string
	}{
		{hsm.CardKEK, 1, 26, "rewrap first"},
		{hsm.CardKEK, 3, 0, ""},
		{hsm.PANHMAC, 1, 0, ""},
		{hsm.PEK, 1, 2, "rewrap first"},
		{hsm.Audit, 1, 38, "audit verify needs it"},
		{hsm.Audit, 2, 0, ""},
		{hsm.SetPIN, 1, 1, "through 2026-12-01"},
		{hsm.SetPIN, 2, 0, ""},
		{hsm.SetPIN, 3, 0, ""},
	} {
		n, why, err := VersionInUse(ctx, keys, use, tc.p, tc.version, now)
		if err != nil || n != tc.n || (tc.n > 0 && !strings.Contains(why, tc.why)) {
			t.Errorf("%s/v%d: %d %q %v, want %d naming %q", tc.p, tc.version, n, why, err, tc.n, tc.why)
		}
	}
}

func TestSeenByServers(t *testing.T) {
	t0 := time.Date(2031, 3, 1, 12, 0, 0, 0, time.UTC)
	records := []vault.KeyRecord{
		{Token: "a", Label: "card-kek/v1", RecordedAt: t0},
		{Token: "a", Label: "card-kek/v2", RecordedAt: t0.Add(time.Hour)},
		{Token: "a", Label: "pek/v1", RecordedAt: t0.Add(2 * time.Hour)},
		{Token: "b", Label: "card-kek/v2", RecordedAt: t0.Add(3 * time.Hour)},
	}
	if got := SeenByServers(records, "a", []string{"card-kek/v2", "pek/v1"}, 5*time.Second); !got.Equal(t0.Add(2*time.Hour + 10*time.Second)) {
		t.Errorf("seen at %v, want the latest record of the token plus two intervals", got)
	}
	if got := SeenByServers(records, "a", []string{"pan-hmac/v1"}, 5*time.Second); !got.IsZero() {
		t.Errorf("no record: %v, want zero", got)
	}
}
