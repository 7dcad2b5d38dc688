package main

import (
	"bytes"
	"context"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/flasher-dev/flasher/internal/store/postgres/pgtest"
	"github.com/flasher-dev/flasher/internal/store/sqlite"
	"github.com/flasher-dev/flasher/internal/task"
)

// TestMigrateStore runs `flasher-server migrate-store` on a data directory holding a SQLite
// store: with the DSN (and its password) in -store, then with the DSN in FLASHER_STORE and the
// password in -store-password-file. The password never appears in the output or the errors, a
// used target is refused, and -store is required.
func TestMigrateStore(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	dir := t.TempDir()
	st, err := sqlite.Open(ctx, sqlite.Config{Path: filepath.Join(dir, "flasher.db")})
	if err != nil {
		t.Fatal(err)
	}
	tk, ev := task.New(task.Task{ID: "t1", ServerID: "srv-1", Method: task.MethodOutOfBand, Requester: "alice", Mode: task.ModeFirmware,
		Firmware: []task.Firmware{{Component: "BMC", Version: "7.10"}}}, time.Now())
	if _, _, err := st.CreateTask(ctx, tk, ev); err != nil {
		t.Fatal(err)
	}
	st.Close()

	const secret = "s3cret-pw"
	withPassword := func(dsn string) string {
		u, err := url.Parse(dsn)
		if err != nil {
			t.Fatal(err)
		}
		u.User = url.UserPassword(u.User.Username(), secret) // the test server trusts loopback and ignores it
		return u.String()
	}
	migrate := func(args ...string) (string, error) {
		var out, errOut bytes.Buffer
		err := run(ctx, append([]string{"migrate-store", "-data-dir", dir}, args...), &out, &errOut)
		text := out.String() + errOut.String()
		if err != nil {
			text += err.Error()
		}
		if strings.Contains(text, secret) {
			t.Errorf("the password appears in the output: %s", text)
		}
		return out.String(), err
	}

	dsn := withPassword(pgtest.DSN(t))
	out, err := migrate("-store", dsn)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out, "1 tasks, 1 task events, 1 changes (revision 1)") {
		t.Errorf("output %q does not report the task copied", out)
	}
	if _, err := migrate("-store", dsn); err == nil || !strings.Contains(err.Error(), "not empty") {
		t.Errorf("second migration into the same database: %v, want a not-empty error", err)
	}

	pwFile := filepath.Join(t.TempDir(), "pgpass")
	if err := os.WriteFile(pwFile, []byte(secret+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Setenv("FLASHER_STORE", pgtest.DSN(t))
	if out, err := migrate("-store-password-file", pwFile); err != nil || !strings.Contains(out, "1 tasks") {
		t.Errorf("migration with FLASHER_STORE and a password file: %q, %v", out, err)
	}

	t.Setenv("FLASHER_STORE", "")
	if _, err := migrate(); err == nil || !strings.Contains(err.Error(), "-store") {
		t.Errorf("migration without -store: %v, want an error naming -store", err)
	}
}
