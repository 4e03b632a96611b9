package vault_test

import (
	"bytes"
	"context"
	"crypto/aes"
	"crypto/rand"
	"crypto/rsa"
	"database/sql"
	"encoding/hex"
	"errors"
	"path/filepath"
	"testing"
	"time"

	"github.com/cardvault/cardvault/hsm"
	"github.com/cardvault/cardvault/softhsm"
	"github.com/cardvault/cardvault/sqlstore"
	"github.com/cardvault/cardvault/vault"
)

// TestStoredPINBlockIsFormat4 sets a PIN through the real token with a PEK
// whose value only this test knows, then deciphers the stored block with
// Go's AES and checks every part of ISO 9564-1:2017 format 4: the PIN field
// 4|N|PIN|A…A|random, bound to the card's PAN field as X9.24-3's worked
// encoding has it.
func TestStoredPINBlockIsFormat4(t *testing.T) {
	ctx := context.Background()
	pek, _ := hex.DecodeString("000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f")
	_, svc, dbPath := newPINService(t, pek, vault.Config{BIN: "400000", ExpiryYears: 3})
	caller := vault.Caller{Name: "test", RequestID: "r"}
	card, err := svc.Import(ctx, caller, vault.ImportRequest{OwnerID: "acct-1", PAN: []byte("4111111111111111"), CVV: []byte("123"), ExpiryMonth: 12, ExpiryYear: 2030}, nil)
	if err != nil {
		t.Fatal(err)
	}
	key, err := svc.SetPINKey(ctx)
	if err != nil || key.KeyID != "set-pin-v1" {
		t.Fatalf("set_pin key %v %v", key, err)
	}
	ct, _ := rsa.EncryptPKCS1v15(rand.Reader, key.Key, []byte("1357\n"))
	if err := svc.SetPINJiko(ctx, caller, "acct-1", card.ID, ct); err != nil {
		t.Fatal(err)
	}

	db, err := sql.Open("sqlite", dbPath)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	var block []byte
	var version int
	if err := db.QueryRow(`SELECT pin_block, pin_key_version FROM cards WHERE id = ?`, card.ID).Scan(&block, &version); err != nil {
		t.Fatal(err)
	}
	if len(block) != 16 || version != 1 {
		t.Fatalf("stored block %x under PEK v%d", block, version)
	}
	c, _ := aes.NewCipher(pek)
	ib := make([]byte, 16)
	c.Decrypt(ib, block)
	panField, _ := hex.DecodeString("44111111111111111000000000000000") // X9.24-3 supplement's PAN field for this PAN
	for i := range ib {
		ib[i] ^= panField[i]
	}
	field := make([]byte, 16)
	c.Decrypt(field, ib)
	if !bytes.Equal(field[:8], []byte{0x44, 0x13, 0x57, 0xAA, 0xAA, 0xAA, 0xAA, 0xAA}) {
		t.Fatalf("PIN field %X: want 4|4|1357|A fill", field[:8])
	}
	if bytes.Equal(field[8:], make([]byte, 8)) {
		t.Fatal("the PIN field's random half is zero")
	}
}

// newPINService opens a fresh token with version 1 of every key, the PEK
// imported from pek, and a service over a fresh SQLite file.
func newPINService(t testing.TB, pek []byte, cfg vault.Config) (*hsm.Module, *vault.Service, string) {
	t.Helper()
	m, store, dbPath := newKeyedStore(t, pek)
	svc, err := vault.NewService(m, store, cfg)
	if err != nil {
		t.Fatal(err)
	}
	return m, svc, dbPath
}

// newKeyedStore is a fresh token holding version 1 of every purpose the
// service uses (the PEK with the value given) and a SQLite store.
func newKeyedStore(t testing.TB, pek []byte) (*hsm.Module, *sqlstore.Store, string) {
	t.Helper()
	tok := softhsm.TestToken(t)
	m, err := hsm.Open(hsm.Config{Module: tok.Module, TokenLabel: tok.Label, PIN: tok.PIN})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(m.Close)
	ctx := context.Background()
	if err := m.ImportSecret(ctx, hsm.PEK, 1, pek); err != nil {
		t.Fatal(err)
	}
	for _, p := range []hsm.Purpose{hsm.CardKEK, hsm.PANHMAC, hsm.SetPIN} {
		if err := m.Generate(ctx, p, 1); err != nil {
			t.Fatal(err)
		}
	}
	dbPath := filepath.Join(t.TempDir(), "vault.db")
	store, err := sqlstore.OpenSQLite(ctx, dbPath)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { store.Close() })
	return m, store, dbPath
}

// TestSetPINRotationGrace rotates the set_pin key and checks which
// published keys a Jiko ciphertext (which names no key) is accepted under:
// the new one at once; the old one only through the end date the rotation
// set, by the service's clock, and never without one.
func TestSetPINRotationGrace(t *testing.T) {
	ctx := context.Background()
	now := time.Date(2031, 3, 1, 12, 0, 0, 0, time.UTC)
	m, svc, _ := newPINService(t, make([]byte, 32), vault.Config{BIN: "400000", ExpiryYears: 3,
		PINAttempts: vault.Budget{Window: time.Hour, PerCard: 100, PerDevice: 100}, Now: func() time.Time { return now }})
	caller := vault.Caller{Name: "test", RequestID: "r"}
	card, err := svc.Import(ctx, caller, vault.ImportRequest{OwnerID: "acct-1", PAN: []byte("4111111111111111"), CVV: []byte("123"), ExpiryMonth: 12, ExpiryYear: 2035}, nil)
	if err != nil {
		t.Fatal(err)
	}
	old, err := svc.SetPINKey(ctx)
	if err != nil {
		t.Fatal(err)
	}
	setPIN := func(key *vault.PublicSetPINKey) error {
		ct, _ := rsa.EncryptPKCS1v15(rand.Reader, key.Key, []byte("1357\n"))
		return svc.SetPINJiko(ctx, caller, "acct-1", card.ID, ct)
	}
	if err := setPIN(old); err != nil {
		t.Fatalf("before rotation: %v", err)
	}

	if err := m.Generate(ctx, hsm.SetPIN, 2); err != nil {
		t.Fatal(err)
	}
	current, err := svc.SetPINKey(ctx)
	if err != nil || current.KeyID != "set-pin-v2" {
		t.Fatalf("published after rotation: %v %v", current, err)
	}
	refused := func(what string, err error) {
		t.Helper()
		var e *vault.Error
		if !errors.As(err, &e) || e.Kind != vault.KindInvalid || e.Field != "encrypted_pin" {
			t.Errorf("%s: %v, want the one PIN refusal", what, err)
		}
	}
	if err := setPIN(current); err != nil {
		t.Fatalf("new key: %v", err)
	}
	refused("old key, no end date set", setPIN(old))

	lastDay := time.Date(2031, 3, 3, 0, 0, 0, 0, time.UTC)
	if err := m.SetPublicEndDate(ctx, hsm.SetPIN, 1, lastDay); err != nil {
		t.Fatal(err)
	}
	for _, at := range []time.Time{now, lastDay.Add(24*time.Hour - time.Nanosecond)} {
		now = at
		if err := setPIN(old); err != nil {
			t.Errorf("old key at %v, within grace: %v", at, err)
		}
		if err := setPIN(current); err != nil {
			t.Errorf("new key at %v: %v", at, err)
		}
	}
	now = lastDay.Add(24 * time.Hour)
	refused("old key after its end date", setPIN(old))
	if err := setPIN(current); err != nil {
		t.Errorf("new key after the grace: %v", err)
	}
}
