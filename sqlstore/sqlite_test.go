package sqlstore

import (
	"context"
	"path/filepath"
	"testing"

	"github.com/cardvault/cardvault/vault"
	"github.com/cardvault/cardvault/vault/storetest"
)

func TestSQLiteConformance(t *testing.T) {
	storetest.Run(t, func(t *testing.T, n int) []vault.Store {
		path := filepath.Join(t.TempDir(), "vault.db")
		var stores []vault.Store
		for range n {
			s, err := OpenSQLite(context.Background(), path)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { s.Close() })
			stores = append(stores, s)
		}
		return stores
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
