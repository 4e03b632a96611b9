package httpapi

import (
	"context"
	"net/http"
	"path/filepath"
	"testing"

	"github.com/cardvault/cardvault/internal/testsupport/testenv"
	"github.com/cardvault/cardvault/sqlstore"
	"github.com/cardvault/cardvault/vault"
)

// BenchmarkStores measures Jiko create and read over loopback HTTP on
// SQLite and on PostgreSQL, in one run, so the ratio between the stores
// is meaningful on a noisy machine.
func BenchmarkStores(b *testing.B) {
	ctx := context.Background()
	stores := []struct {
		name string
		open func(b *testing.B) vault.Store
	}{
		{"SQLite", func(b *testing.B) vault.Store {
			s, err := sqlstore.OpenSQLite(ctx, filepath.Join(b.TempDir(), "vault.db"))
			if err != nil {
				b.Fatal(err)
			}
			return s
		}},
		{"PostgreSQL", func(b *testing.B) vault.Store {
			s, err := sqlstore.OpenPostgres(ctx, testenv.PostgresDatabase(b), "")
			if err != nil {
				b.Fatal(err)
			}
			return s
		}},
	}
	for _, st := range stores {
		// A benchmark that only calls b.Run runs once: one token and one
		// store per kind.
		b.Run(st.name, func(b *testing.B) { benchCreateRead(b, st.open(b)) })
	}
}

func benchCreateRead(b *testing.B, store vault.Store) {
	b.Cleanup(func() { store.Close() })
	s := newBenchStackOn(b, store)
	b.Run("Create", func(b *testing.B) { s.benchPosts(b, "/api/v1/jiko-accounts/acct-1/virtual-cards", http.StatusCreated) })
	path := "/api/v1/jiko-accounts/acct-1/virtual-cards/" + s.issueCard(b, "acct-1")
	b.Run("Read", func(b *testing.B) { s.benchPosts(b, path, http.StatusOK) })
}

func fakeClientKeys(n int) []string {
	keys := make([]string, n)
	for i := range keys {
		keys[i] = fakeClientKey()
	}
	return keys
}
