package hsm

import (
	"context"
	"errors"
	"testing"
)

func TestDestroyVersionRefusesTheActiveOne(t *testing.T) {
	m := openKeyedModule(t, CardKEK)
	ctx := context.Background()
	if err := m.Generate(ctx, CardKEK, 2); err != nil {
		t.Fatal(err)
	}
	if _, err := m.DestroyVersion(ctx, CardKEK, 2); !errors.Is(err, ErrActiveVersion) {
		t.Fatalf("destroy active v2: %v, want ErrActiveVersion", err)
	}
	sealed, err := m.SealWithVersion(ctx, 1, []byte("aad"), []byte("record"))
	if err != nil {
		t.Fatal(err)
	}
	n, err := m.DestroyVersion(ctx, CardKEK, 1)
	if err != nil || n != 1 {
		t.Fatalf("destroy v1: %d objects, %v", n, err)
	}
	// The key is gone, not the record broken: 503 and the label in the
	// log, not a "record does not open" (issue 27, finding 5).
	if _, err := m.Open(ctx, []byte("aad"), sealed); !errors.Is(err, ErrKeyNotFound) {
		t.Fatalf("open under a destroyed version: %v, want ErrKeyNotFound", err)
	}
	if _, err := m.DestroyVersion(ctx, CardKEK, 1); !errors.Is(err, ErrKeyNotFound) {
		t.Fatalf("destroy v1 twice: %v, want ErrKeyNotFound", err)
	}
	if v, err := m.ActiveVersion(ctx, CardKEK); err != nil || v != 2 {
		t.Fatalf("active after retiring v1: %d, %v", v, err)
	}
}

func TestValueKCVMatchesTheImportedKey(t *testing.T) {
	m, _ := openTestModule(t)
	ctx := context.Background()
	value := make([]byte, 32)
	for i := range value {
		value[i] = byte(i * 7)
	}
	for _, p := range []Purpose{CardKEK, Audit} {
		want, err := m.ValueKCV(ctx, p.Kind(), value)
		if err != nil {
			t.Fatal(err)
		}
		if err := m.ImportSecret(ctx, p, 1, value); err != nil {
			t.Fatal(err)
		}
		got, err := m.KCV(ctx, p, 1)
		if err != nil || got != want {
			t.Errorf("%s: imported key's KCV %s (%v), value's KCV %s", p, got, err, want)
		}
	}
	keys, err := m.Keys(ctx)
	if err != nil || len(keys) != 2 {
		t.Fatalf("session objects left in the catalog: %+v, %v", keys, err)
	}
}

// A module used after Close (a store checkpointing its audit chains as it
// closes, after the ceremony closed the module) answers ErrUnavailable:
// it must not reconnect through a destroyed PKCS#11 context, which
// crashed the process with SIGSEGV.
func TestModuleUsedAfterCloseIsUnavailable(t *testing.T) {
	m := openKeyedModule(t, Audit)
	m.Close()
	if _, _, err := m.AuditMAC(context.Background(), []byte("checkpoint")); !errors.Is(err, ErrUnavailable) {
		t.Fatalf("after Close: %v, want ErrUnavailable", err)
	}
	m.Close() // a second Close is harmless
}
