package sqlstore

import (
	"context"
	"path/filepath"
	"testing"

	"github.com/cardvault/cardvault/vault"
	"github.com/cardvault/cardvault/vault/storetest"
)

func TestSQLiteConformance(t *testing.T) {
	storetest.Run(t, func(t *testing.T) vault.Store {
		s, err := OpenSQLite(context.Background(), filepath.Join(t.TempDir(), "vault.db"))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { s.Close() })
		return s
	})
}

func TestSQLiteMigrationsAreIdempotent(t *testing.T) {
	path := filepath.Join(t.TempDir(), "vault.db")
	for range 2 {
		s, err := OpenSQLite(context.Background(), path)
		if err != nil {
			t.Fatal(err)
		}
		s.Close()
	}
}
