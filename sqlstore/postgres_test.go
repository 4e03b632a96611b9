package sqlstore

import (
	"context"
	"testing"

	"github.com/cardvault/cardvault/internal/testsupport/testenv"
	"github.com/cardvault/cardvault/vault"
	"github.com/cardvault/cardvault/vault/storetest"
)

func TestPostgresConformance(t *testing.T) {
	storetest.Run(t, func(t *testing.T, n int) []vault.Store {
		return openReplicas(t, testenv.PostgresDatabase(t), n)
	})
}

func TestPostgresDollarPlaceholders(t *testing.T) {
	for in, want := range map[string]string{
		"SELECT 1":        "SELECT 1",
		"a = ? AND b = ?": "a = $1 AND b = $2",
		"VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)": "VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)",
	} {
		if got := dollarPlaceholders(in); got != want {
			t.Errorf("%q → %q, want %q", in, got, want)
		}
	}
}

// openReplicas opens n stores on one PostgreSQL database.
func openReplicas(t *testing.T, dsn string, n int) []vault.Store {
	t.Helper()
	var stores []vault.Store
	for i := range n {
		s, err := OpenPostgres(context.Background(), dsn, "")
		if err != nil {
			t.Fatalf("replica %d: %v", i, err)
		}
		t.Cleanup(func() { s.Close() })
		stores = append(stores, s)
	}
	return stores
}
