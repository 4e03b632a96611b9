package testenv

import (
	"context"
	"database/sql"
	"errors"
	"net/url"
	"os"
	"testing"

	"github.com/google/uuid"
	_ "github.com/jackc/pgx/v5/stdlib" // the pgx database/sql driver
)

// EnvPostgres names a superuser DSN of a PostgreSQL that tests may create
// databases on; scripts/test.sh starts one and sets it.
const EnvPostgres = "CARDVAULT_TEST_POSTGRES"

// PostgresDatabase creates a fresh database for the test on the server
// EnvPostgres names, drops it when the test ends, and returns its DSN.
func PostgresDatabase(t testing.TB) string {
	t.Helper()
	admin := os.Getenv(EnvPostgres)
	if admin == "" {
		Require(t, "PostgreSQL", errors.New(EnvPostgres+" is not set (scripts/test.sh starts one)"))
	}
	return CreateDatabase(t, admin)
}

// CreateDatabase creates a fresh database on the server admin points at,
// drops it when the test ends, and returns its DSN.
func CreateDatabase(t testing.TB, admin string) string {
	t.Helper()
	u, err := url.Parse(admin)
	if err != nil {
		t.Fatalf("PostgreSQL DSN: %v", err)
	}
	db, err := sql.Open("pgx", admin)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	name := "t_" + uuid.NewString()[:8]
	if _, err := db.ExecContext(context.Background(), "CREATE DATABASE "+name); err != nil {
		Require(t, "PostgreSQL", err)
	}
	t.Cleanup(func() {
		if db, err := sql.Open("pgx", admin); err == nil {
			db.Exec("DROP DATABASE " + name + " WITH (FORCE)")
			db.Close()
		}
	})
	u.Path = "/" + name
	return u.String()
}
