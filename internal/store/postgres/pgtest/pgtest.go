// Package pgtest gives tests a fresh PostgreSQL database each. The server is the throwaway one
// `make test` starts (scripts/test-postgres.sh), found through the FLASHER_TEST_POSTGRES
// environment variable; without it, tests that need PostgreSQL skip, saying how to run them.
package pgtest

import (
	"context"
	"fmt"
	"net/url"
	"os"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// EnvVar names the DSN of a PostgreSQL superuser the tests may create databases with.
const EnvVar = "FLASHER_TEST_POSTGRES"

var seq atomic.Int64

// DSN creates an empty schema for this test and returns a DSN whose search_path is that schema;
// the schema is dropped when the test ends. Schemas, not databases: dropping a database forces a
// checkpoint, a second or more per test on a busy machine. It skips the test when EnvVar is not
// set.
func DSN(t testing.TB) string {
	t.Helper()
	admin := os.Getenv(EnvVar)
	if admin == "" {
		t.Skipf("PostgreSQL tests need %s (a DSN of a throwaway server): run them with `make test`, or scripts/test-postgres.sh go test ...", EnvVar)
	}
	u, err := url.Parse(admin)
	if err != nil {
		t.Fatalf("%s: %v", EnvVar, err)
	}
	name := fmt.Sprintf("flasher_test_%d_%d", os.Getpid(), seq.Add(1))
	exec(t, admin, "DROP SCHEMA IF EXISTS "+name+" CASCADE; CREATE SCHEMA "+name)
	t.Cleanup(func() { exec(t, admin, "DROP SCHEMA IF EXISTS "+name+" CASCADE") })
	q := u.Query()
	q.Set("search_path", name)
	u.RawQuery = q.Encode()
	return u.String()
}

func exec(t testing.TB, dsn, sql string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatalf("connect to the test PostgreSQL (%s): %v", EnvVar, err)
	}
	defer conn.Close(ctx)
	if _, err := conn.Exec(ctx, sql); err != nil {
		t.Fatalf("test PostgreSQL: %s: %v", sql, err)
	}
}
