package hsm

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"errors"
	"log/slog"
	"testing"
	"time"
)

// A version created by another connection to the token (a rotation
// ceremony in another process) becomes active once the view is refreshed,
// without a restart.
func TestRotationSeenByRunningModule(t *testing.T) {
	ctx := context.Background()
	ceremony, tok := openTestModule(t)
	if err := ceremony.Generate(ctx, CardKEK, 1); err != nil {
		t.Fatal(err)
	}
	server, err := Open(Config{Module: tok.Module, TokenLabel: tok.Label, PIN: tok.PIN, KeyRefresh: time.Nanosecond, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	defer server.Close()
	if v, err := server.ActiveVersion(ctx, CardKEK); err != nil || v != 1 {
		t.Fatalf("active before rotation: %d %v", v, err)
	}
	if err := ceremony.Generate(ctx, CardKEK, 2); err != nil {
		t.Fatal(err)
	}
	sealed, v, err := server.Seal(ctx, []byte("aad"), []byte("record"))
	if err != nil || v != 2 {
		t.Fatalf("seal after rotation used version %d (%v), want 2", v, err)
	}
	if _, err := ceremony.Open(ctx, []byte("aad"), sealed); err != nil {
		t.Fatalf("the other connection cannot open the new seal: %v", err)
	}
}

func TestEndDateMarksThePreviousSetPINVersion(t *testing.T) {
	ctx := context.Background()
	m := openKeyedModule(t, SetPIN)
	if active, prev, _, err := m.Versions(ctx, SetPIN); err != nil || active != 1 || prev != 0 {
		t.Fatalf("versions before rotation: active %d previous %d %v", active, prev, err)
	}
	if err := m.Generate(ctx, SetPIN, 2); err != nil {
		t.Fatal(err)
	}
	_, prev, end, err := m.Versions(ctx, SetPIN)
	if err != nil || prev != 1 || !end.IsZero() {
		t.Fatalf("previous after rotation: %d %v %v, want 1 with no end date", prev, end, err)
	}
	day := time.Date(2031, 2, 28, 21, 30, 0, 0, time.FixedZone("", -5*3600)) // 2031-03-01 02:30 UTC
	if err := m.SetPublicEndDate(ctx, SetPIN, 1, day); err != nil {
		t.Fatal(err)
	}
	if _, _, end, _ = m.Versions(ctx, SetPIN); !end.Equal(time.Date(2031, 3, 1, 0, 0, 0, 0, time.UTC)) {
		t.Fatalf("end date %v, want 2031-03-01", end)
	}
	keys, err := m.Keys(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, k := range keys {
		if want := k.Version == 1 && k.Class == "public"; want != !k.EndDate.IsZero() {
			t.Errorf("%s %s end date %v", k.Label, k.Class, k.EndDate)
		}
	}
	// The private half still decrypts: the date limits publication.
	pub, _ := m.PublicKey(ctx, 1)
	ct, _ := rsa.EncryptPKCS1v15(rand.Reader, pub, []byte("1234"))
	if pt, err := m.DecryptRSA(ctx, 1, PKCS1v15, ct); err != nil || string(pt) != "1234" {
		t.Fatalf("dated version no longer decrypts: %v", err)
	}
	if err := m.SetPublicEndDate(ctx, SetPIN, 7, day); !errors.Is(err, ErrKeyNotFound) {
		t.Fatalf("end date on a version that does not exist: %v", err)
	}
	if err := m.SetPublicEndDate(ctx, PEK, 1, day); err == nil {
		t.Fatal("end date on a secret key")
	}
}
