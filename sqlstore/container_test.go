package sqlstore

import (
	"testing"

	"github.com/cardvault/cardvault/internal/testsupport/stacktest"
	"github.com/cardvault/cardvault/internal/testsupport/testenv"
	"github.com/cardvault/cardvault/vault"
	"github.com/cardvault/cardvault/vault/storetest"
)

// TestPostgresContainerConformance runs the store conformance suite against
// PostgreSQL in a container started by testcontainers-go.
func TestPostgresContainerConformance(t *testing.T) {
	stacktest.Require(t, stacktest.PostgresImage)
	pg := stacktest.StartPostgres(t, stacktest.Network(t))
	storetest.Run(t, func(t *testing.T, n int) []vault.Store {
		return openReplicas(t, testenv.CreateDatabase(t, pg.DSN), n)
	})
}
