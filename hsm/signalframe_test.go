//go:build linux

package hsm

import (
	"context"
	"crypto/rand"
	"crypto/subtle"
	"math/big"
	"testing"
	"time"

	"github.com/miekg/pkcs11"

	"github.com/cardvault/cardvault/internal/testsupport/signalflood"
)

// A signal that arrives while the token's code runs, or after it with
// the registers it filled, is handled on the Go runtime's signal stack,
// which is Go heap, and the kernel saves the registers there (see
// package cleancall). This test decrypts secrets with raw RSA (the
// set-PIN path's call) under a stream of SIGURG, clearing each result as
// the vault does, then looks for any 16 aligned bytes of any secret in
// the Go heap. The secrets are made and kept outside the Go heap, so the
// only way into it is the one under test. Without the guard, the last
// secret was found on every run.
func TestTokenCallsLeaveNoClearDataInSignalFrames(t *testing.T) {
	m := openKeyedModule(t, SetPIN)
	pub, version, err := m.SetPINPublicKey(context.Background(), 0)
	if err != nil {
		t.Fatal(err)
	}
	k := pub.Size()
	const calls = 50
	secrets := signalflood.OutsideGoHeap(t, calls*k)
	ciphertexts := make([][]byte, calls)
	e := big.NewInt(int64(pub.E))
	for i := range calls {
		s := secrets[i*k : (i+1)*k]
		if _, err := rand.Read(s); err != nil {
			t.Fatal(err)
		}
		s[0] = 0 // below the modulus
		// math/big holds the secret as little-endian words: no run of
		// its big-endian bytes enters the Go heap this way.
		ciphertexts[i] = new(big.Int).Exp(new(big.Int).SetBytes(s), e, pub.N).FillBytes(make([]byte, k))
	}
	c, err := m.current()
	if err != nil {
		t.Fatal(err)
	}
	label, raw := Label(SetPIN, version), pkcs11.NewMechanism(pkcs11.CKM_RSA_X_509, nil)
	signals := signalflood.Run(t, calls, signalflood.AfterLastCall, 0, func(i int) {
		em, err := c.decryptRSA(label, raw, ciphertexts[i])
		if err != nil {
			t.Errorf("decrypt %d: %v", i, err)
			return
		}
		// A byte at a time: Go's vectorised compare would leave the
		// secret in the registers this test looks through.
		if subtle.ConstantTimeCompare(em, secrets[i*k:(i+1)*k]) != 1 {
			t.Errorf("decrypt %d: wrong message", i)
		}
		clear(em)
	})
	found, scanned := signalflood.Found(t, secrets, k)
	t.Logf("%d raw RSA decryptions under %d SIGURGs; %d KiB of Go heap scanned", calls, signals, scanned>>10)
	if len(found) > 0 {
		t.Errorf("clear data of %d of %d decryptions found in the Go heap", len(found), calls)
	}
}

// The same for a signal that lands in the middle of a call: opening a
// 1 MiB record keeps the token's AES-GCM and memcpy code busy with clear
// data for over a millisecond, and the last signal arrives 300 µs in.
func TestTokenCallsLeaveNoClearDataInSignalFramesMidCall(t *testing.T) {
	m := openKeyedModule(t, CardKEK)
	const size, calls = 1 << 20, 8
	secret := signalflood.OutsideGoHeap(t, size)
	if _, err := rand.Read(secret); err != nil {
		t.Fatal(err)
	}
	aad := []byte("signal frames")
	sealed, version, err := m.Seal(context.Background(), aad, secret)
	if err != nil {
		t.Fatal(err)
	}
	c, err := m.current()
	if err != nil {
		t.Fatal(err)
	}
	signals := signalflood.Run(t, calls, signalflood.DuringLastCall, 300*time.Microsecond, func(i int) {
		pt, err := c.open(version, aad, sealed)
		if err != nil {
			t.Errorf("open %d: %v", i, err)
			return
		}
		if subtle.ConstantTimeCompare(pt, secret) != 1 {
			t.Errorf("open %d: wrong plaintext", i)
		}
		clear(pt)
	})
	found, scanned := signalflood.Found(t, secret, size)
	t.Logf("%d opens of a %d KiB record under %d SIGURGs; %d KiB of Go heap scanned", calls, size>>10, signals, scanned>>10)
	if len(found) > 0 {
		t.Error("clear data of the record found in the Go heap")
	}
}
