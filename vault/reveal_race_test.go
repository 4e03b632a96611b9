package vault_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"testing"

	"github.com/cardvault/cardvault/vault"
)

// openHook runs a function while the HSM opens a record: what another
// request does between a reveal's checks and its commit.
type openHook struct {
	vault.Keys
	during func()
}

func (k *openHook) Open(ctx context.Context, aad, sealed []byte) ([]byte, error) {
	if f := k.during; f != nil {
		k.during = nil
		f()
	}
	return k.Keys.Open(ctx, aad, sealed)
}

func freshClientPEM(t *testing.T) string {
	t.Helper()
	k, err := rsa.GenerateKey(rand.Reader, 4096)
	if err != nil {
		t.Fatal(err)
	}
	der, _ := x509.MarshalPKIXPublicKey(&k.PublicKey)
	return string(pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der}))
}

// A reveal re-checks, in the transaction that records it, what its first
// checks saw: a card locked, or an owner who bound a device, while the
// HSM opened the record is refused, not revealed (issue 27, finding 6:
// five of six Jiko reads committed after a lock 30 ms later).
func TestRevealRechecksAtCommit(t *testing.T) {
	ctx := context.Background()
	m, store, _ := newKeyedStore(t, make([]byte, 32))
	keys := &openHook{Keys: m}
	svc, err := vault.NewService(keys, store, vault.Config{BIN: "400000", ExpiryYears: 3, DeviceGate: true})
	if err != nil {
		t.Fatal(err)
	}
	caller := vault.Caller{Name: "test", RequestID: "r"}
	imp := func(owner, pan string) *vault.Card {
		c, err := svc.Import(ctx, caller, vault.ImportRequest{OwnerID: owner, PAN: []byte(pan), CVV: []byte("123"), ExpiryMonth: 12, ExpiryYear: 2035}, nil)
		if err != nil {
			t.Fatal(err)
		}
		return c
	}

	locked := imp("acct-1", "4111111111111111")
	keys.during = func() {
		if _, err := svc.SetStatus(ctx, caller, "acct-1", locked.ID, "LOCKED"); err != nil {
			t.Error(err)
		}
	}
	out, err := svc.RevealRSA(ctx, caller, "acct-1", locked.ID, freshClientPEM(t), nil)
	if err == nil || out != nil {
		t.Fatal("a card locked while it was being revealed was revealed")
	}
	if e := new(vault.Error); !errors.As(err, &e) || e.Kind != vault.KindConflict || e.Msg != "card is locked" {
		t.Fatalf("the reveal of a card locked meanwhile: %v, want the locked card's conflict", err)
	}

	gated := imp("person-2", "5500000000000004")
	keys.during = func() { bindDevice(t, svc, caller, "person-2") }
	if _, err := svc.RevealRSA(ctx, caller, "person-2", gated.ID, freshClientPEM(t), nil); vault.KindOf(err) != vault.KindForbidden {
		t.Fatalf("the reveal of a card whose owner bound a device meanwhile: %v, want the device gate's refusal", err)
	}
	// Both refusals are in the trail, and no reveal is.
	for _, id := range []string{locked.ID, gated.ID} {
		trail, err := store.AuditTrail(ctx, id)
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range trail {
			if e.Action == "card.reveal" && e.Outcome == "ok" {
				t.Errorf("card %s: a reveal was recorded", id)
			}
		}
	}
}

// bindDevice registers and verifies a P-256 device for person.
func bindDevice(t *testing.T, svc *vault.Service, caller vault.Caller, person string) {
	t.Helper()
	ctx := context.Background()
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	point, _ := key.PublicKey.Bytes()
	_, ch, err := svc.RegisterDevice(ctx, caller, vault.RegisterDeviceRequest{PersonID: person, KeyType: vault.KeyTypeP256,
		Key: hex.EncodeToString(point), KeyPurpose: "unrestricted", Name: "phone"})
	if err != nil {
		t.Fatal(err)
	}
	digest := sha256.Sum256([]byte(ch.StringToSign))
	sig, _ := ecdsa.SignASN1(rand.Reader, key, digest[:])
	if err := svc.AnswerChallenge(ctx, caller, ch.ID, hex.EncodeToString(sig), ""); err != nil {
		t.Fatal(err)
	}
}
