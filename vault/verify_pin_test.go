package vault_test

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"encoding/hex"
	"strings"
	"testing"
	"time"

	"github.com/cardvault/cardvault/hsm"
	"github.com/cardvault/cardvault/internal/testsupport/openssltest"
	"github.com/cardvault/cardvault/internal/testsupport/testenv"
	"github.com/cardvault/cardvault/vault"
)

// Issue 32: a terminal's PIN block (format 4 under a zone PIN key, built
// here by openssl) is verified against the card's PIN: match, no match,
// and blocked after the try limit until a new PIN is set.
func TestVerifyPIN(t *testing.T) {
	testenv.RequireCommand(t, "openssl")
	ctx := context.Background()
	m, store, _ := newKeyedStore(t, make([]byte, 32))
	svc, err := vault.NewService(m, store, vault.Config{BIN: "400000", ExpiryYears: 3, PINTryLimit: 3,
		Verifications: vault.Budget{Window: time.Hour, PerCard: 100, PerCaller: 100}})
	if err != nil {
		t.Fatal(err)
	}
	host, processor := vault.Caller{Name: "auth-host", RequestID: "r-1"}, vault.Caller{Name: "processor"}
	const pan = "4111111111111111"
	card, err := svc.Import(ctx, processor, vault.ImportRequest{OwnerID: "acct-1", PAN: []byte(pan), CVV: []byte("123"), ExpiryMonth: 12, ExpiryYear: 2035}, nil)
	if err != nil {
		t.Fatal(err)
	}
	setPIN := func(pin string) { setJikoPIN(t, svc, card, pin) }
	zpk := make([]byte, 32)
	rand.Read(zpk)
	verify := func(block []byte) (string, error) {
		v, err := svc.VerifyPIN(ctx, host, vault.VerifyPINRequest{CardID: card.ID, PINBlock: block})
		if err != nil {
			return "", err
		}
		return v.PIN, nil
	}
	right := func() []byte { return openssltest.Format4PINBlock(t, zpk, "1357", pan) }
	wrong := func() []byte { return openssltest.Format4PINBlock(t, zpk, "1358", pan) }

	if _, err := verify(right()); vault.KindOf(err) != vault.KindConflict || !strings.Contains(err.Error(), "no PIN set") {
		t.Errorf("a card without a PIN: %v", err)
	}
	setPIN("1357")
	if _, err := verify(right()); vault.KindOf(err) != vault.KindUnavailable || !strings.Contains(err.Error(), "zone_key_version") {
		t.Errorf("no zone PIN key in the token: %v", err)
	}
	if err := m.ImportSecret(ctx, hsm.ZonePIN, 1, zpk); err != nil {
		t.Fatal(err)
	}
	otherKey := make([]byte, 32)
	rand.Read(otherKey)
	for _, c := range []struct {
		name  string
		block []byte
		want  string
	}{
		{"the right PIN", right(), vault.Match},
		{"a wrong PIN", wrong(), vault.NoMatch},
		{"a wrong PIN again", wrong(), vault.NoMatch},
		{"the right PIN clears the tries", right(), vault.Match},
		{"the right PIN for another PAN", openssltest.Format4PINBlock(t, zpk, "1357", "4000001234567899"), vault.NoMatch},
		{"the right PIN under another zone key", openssltest.Format4PINBlock(t, otherKey, "1357", pan), vault.NoMatch},
		{"a third wrong PIN in a row", wrong(), vault.NoMatch},
		{"past the limit even the right PIN", right(), vault.Blocked},
		{"and a wrong one", wrong(), vault.Blocked},
	} {
		got, err := verify(c.block)
		if err != nil || got != c.want {
			t.Errorf("%s: %q %v, want %q", c.name, got, err, c.want)
		}
	}
	setPIN("2468")
	if got, err := verify(openssltest.Format4PINBlock(t, zpk, "2468", pan)); err != nil || got != vault.Match {
		t.Errorf("a new PIN unblocks the card: %q %v", got, err)
	}
	// A zone key rotation: version 2 becomes the active one; a block still
	// under version 1 names it.
	zpk2 := make([]byte, 32)
	rand.Read(zpk2)
	if err := m.ImportSecret(ctx, hsm.ZonePIN, 2, zpk2); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		name    string
		key     []byte
		version uint32
		want    string
	}{
		{"a block under version 1, named", zpk, 1, vault.Match},
		{"a block under version 2, the active one", zpk2, 0, vault.Match},
		{"a block under version 1, unnamed", zpk, 0, vault.NoMatch},
	} {
		v, err := svc.VerifyPIN(ctx, host, vault.VerifyPINRequest{CardID: card.ID, PINBlock: openssltest.Format4PINBlock(t, c.key, "2468", pan), ZoneKeyVersion: c.version})
		if err != nil || v.PIN != c.want {
			t.Errorf("%s: %v %v, want %s", c.name, v, err, c.want)
		}
	}
	if _, err := svc.VerifyPIN(ctx, host, vault.VerifyPINRequest{CardID: card.ID, PINBlock: make([]byte, 15)}); vault.KindOf(err) != vault.KindInvalid {
		t.Errorf("a 15-byte block: %v", err)
	}
	trail, err := store.AuditTrail(ctx, card.ID)
	if err != nil {
		t.Fatal(err)
	}
	answers := map[string]int{}
	for _, e := range trail {
		if e.Action == "card.verify_pin" {
			answers[e.Detail["pin"]]++
		}
		for _, v := range e.Detail {
			for _, secret := range []string{"1357", "1358", "2468", hex.EncodeToString(zpk), hex.EncodeToString(zpk2)} {
				if strings.Contains(v, secret) {
					t.Errorf("audit entry %s holds a PIN or the key: %v", e.Action, e.Detail)
				}
			}
		}
	}
	if answers[vault.Match] != 5 || answers[vault.NoMatch] != 6 || answers[vault.Blocked] != 2 {
		t.Errorf("audited answers %v", answers)
	}
}

// zoneTokenFails is a token whose zone key operations fail as a token
// refusing the key would (CKR_KEY_FUNCTION_NOT_PERMITTED and the like
// come back as ErrCrypto), while every other operation is the real one.
type zoneTokenFails struct{ vault.Keys }

func (zoneTokenFails) ZonePINDigits(context.Context, uint32, []byte, []byte) ([]byte, uint32, error) {
	return nil, 1, vault.ErrCrypto
}

// A token that fails is not a wrong PIN: it must not spend the
// cardholder's tries, or a broken zone key would block every card it
// touched.
func TestVerifyPINTokenFailureIsNotAWrongPIN(t *testing.T) {
	testenv.RequireCommand(t, "openssl")
	ctx := context.Background()
	m, store, _ := newKeyedStore(t, make([]byte, 32))
	cfg := vault.Config{BIN: "400000", ExpiryYears: 3, PINTryLimit: 3}
	svc, err := vault.NewService(m, store, cfg)
	if err != nil {
		t.Fatal(err)
	}
	broken, err := vault.NewService(zoneTokenFails{m}, store, cfg)
	if err != nil {
		t.Fatal(err)
	}
	processor, host := vault.Caller{Name: "processor"}, vault.Caller{Name: "auth-host"}
	const pan = "4111111111111111"
	card, err := svc.Import(ctx, processor, vault.ImportRequest{OwnerID: "acct-1", PAN: []byte(pan), CVV: []byte("123"), ExpiryMonth: 12, ExpiryYear: 2035}, nil)
	if err != nil {
		t.Fatal(err)
	}
	setJikoPIN(t, svc, card, "1357")
	zpk := make([]byte, 32)
	rand.Read(zpk)
	if err := m.ImportSecret(ctx, hsm.ZonePIN, 1, zpk); err != nil {
		t.Fatal(err)
	}
	right := openssltest.Format4PINBlock(t, zpk, "1357", pan)
	for range 4 {
		if v, err := broken.VerifyPIN(ctx, host, vault.VerifyPINRequest{CardID: card.ID, PINBlock: right}); err == nil {
			t.Fatalf("a failing token answered %q", v.PIN)
		}
	}
	if v, err := svc.VerifyPIN(ctx, host, vault.VerifyPINRequest{CardID: card.ID, PINBlock: right}); err != nil || v.PIN != vault.Match {
		t.Fatalf("after 4 token failures the right PIN answers %v %v, want match", v, err)
	}
	// A zone key version the token does not hold names the field, and
	// spends no try either.
	for range 4 {
		_, err := svc.VerifyPIN(ctx, host, vault.VerifyPINRequest{CardID: card.ID, PINBlock: right, ZoneKeyVersion: 9})
		if vault.KindOf(err) != vault.KindInvalid || !strings.Contains(err.Error(), "zone_key_version") {
			t.Fatalf("zone key version 9: %v, want a refusal naming zone_key_version", err)
		}
	}
	if v, err := svc.VerifyPIN(ctx, host, vault.VerifyPINRequest{CardID: card.ID, PINBlock: right}); err != nil || v.PIN != vault.Match {
		t.Fatalf("after 4 unknown versions the right PIN answers %v %v, want match", v, err)
	}
}

// setJikoPIN sets a card's PIN as a Jiko client does: encrypted to the
// published set_pin key with RSAES-PKCS1-v1_5.
func setJikoPIN(t testing.TB, svc *vault.Service, card *vault.Card, pin string) {
	t.Helper()
	ctx := context.Background()
	key, err := svc.SetPINKey(ctx)
	if err != nil {
		t.Fatal(err)
	}
	ct, _ := rsa.EncryptPKCS1v15(rand.Reader, key.Key, []byte(pin))
	if err := svc.SetPINJiko(ctx, vault.Caller{Name: "processor"}, card.OwnerID, card.ID, ct); err != nil {
		t.Fatal(err)
	}
}
