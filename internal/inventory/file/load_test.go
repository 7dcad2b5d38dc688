package file

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/flasher-dev/flasher/internal/inventory"
	"github.com/flasher-dev/flasher/internal/plan"
	"github.com/flasher-dev/flasher/internal/task"
)

const samplePath = "../../../deploy/inventory/sample.yaml"

func TestSample(t *testing.T) {
	var logs bytes.Buffer
	src, err := NewSource(samplePath, WithLint(plan.Lint), WithLogger(slog.New(slog.NewTextHandler(&logs, nil))))
	if err != nil {
		t.Fatalf("sample rejected: %v", err)
	}
	ctx := context.Background()
	servers, _ := src.Servers(ctx)
	cat, _ := src.Catalog(ctx)
	if len(servers) != 3 || len(cat.Firmware) != 11 || len(cat.Sets) != 3 {
		t.Fatalf("sample has %d servers, %d firmware, %d sets", len(servers), len(cat.Firmware), len(cat.Sets))
	}
	p := plan.New()
	r6515, err := src.Server(ctx, "r6515-01")
	if err != nil {
		t.Fatal(err)
	}
	x11, _ := src.Server(ctx, "x11-01")

	tests := []struct {
		name  string
		srv   *inventory.Server
		req   plan.Request
		steps []string // component:to
		set   string
		code  plan.Code
	}{
		{name: "r6515 resolves to production out-of-band", srv: r6515, req: plan.Request{Mode: task.ModeResolve, Method: task.MethodOutOfBand},
			steps: []string{"BMC:7.00.00.171", "BIOS:2.19.1"}, set: "r6515-production"},
		{name: "r6515 production in-band: opaque drive versions need force", srv: r6515, req: plan.Request{Mode: task.ModeFirmwareSet, Method: task.MethodInBand, FirmwareSet: "R6515 production"},
			code: task.CodeUnorderableVersion},
		{name: "r6515 production in-band forced", srv: r6515, req: plan.Request{Mode: task.ModeFirmwareSet, Method: task.MethodInBand, FirmwareSet: "R6515 production", Force: true, Reinstall: true},
			steps: []string{"Drive:D3MU001", "Drive:D3MU001", "NIC:14.29.2002", "NIC:14.29.2002"}, set: "r6515-production"},
		{name: "r6515 test set is a dependency cycle", srv: r6515, req: plan.Request{Mode: task.ModeFirmwareSet, Method: task.MethodOutOfBand, FirmwareSet: "r6515-test"},
			code: task.CodeDependencyCycle},
		{name: "x11 resolves to production", srv: x11, req: plan.Request{Mode: task.ModeResolve, Method: task.MethodOutOfBand},
			steps: []string{"BMC:1.71.11", "BIOS:3.4"}, set: "x11-production"},
		{name: "x11 cannot take the r6515 set", srv: x11, req: plan.Request{Mode: task.ModeFirmwareSet, Method: task.MethodOutOfBand, FirmwareSet: "r6515-production"},
			code: task.CodeServerModelMismatch},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := p.Plan(tt.srv, cat, tt.req)
			if tt.code != "" {
				if plan.CodeOf(err) != tt.code {
					t.Fatalf("error = %v, want %s", err, tt.code)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			var steps []string
			for _, s := range got.Steps {
				steps = append(steps, s.Component+":"+s.ToVersion)
			}
			if strings.Join(steps, " ") != strings.Join(tt.steps, " ") || got.FirmwareSet != tt.set {
				t.Errorf("steps %v set %q, want %v %q", steps, got.FirmwareSet, tt.steps, tt.set)
			}
		})
	}

	for id, want := range map[string]inventory.Credentials{"r6515-01": {Username: "root", Password: "calvin"}, "x11-01": {Username: "ADMIN", Password: "ADMIN"}} {
		got, err := src.Credentials(ctx, id)
		if err != nil || got != want {
			t.Errorf("Credentials(%s) = %v, %v", id, got, err)
		}
	}
	if _, err := src.Credentials(ctx, "nope"); !errors.Is(err, inventory.ErrNotFound) {
		t.Errorf("Credentials(nope) = %v, want ErrNotFound", err)
	}
	if _, err := src.Server(ctx, "nope"); !errors.Is(err, inventory.ErrNotFound) {
		t.Errorf("Server(nope) = %v, want ErrNotFound", err)
	}
	// Callers get copies: changing one does not change the inventory.
	r6515.Components[0].Version = "changed"
	again, _ := src.Server(ctx, "r6515-01")
	if again.Components[0].Version != "6.10.30.00" {
		t.Error("Server returned shared component slice")
	}
	if strings.Contains(logs.String(), "calvin") {
		t.Error("a password reached the log")
	}
}

// write replaces a file at once (write, then rename), as an operator's tooling should: a reload
// polling every 10 ms must never see it half-written.
func write(t *testing.T, dir, name, body string) string {
	t.Helper()
	p := filepath.Join(dir, name)
	tmp := filepath.Join(dir, "."+name+".tmp")
	if err := os.WriteFile(tmp, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, p); err != nil {
		t.Fatal(err)
	}
	return p
}

const good = `credentials:
  c: {username: root, password: pw}
servers:
  - id: s1
    vendor: Dell Inc.
    model: PowerEdge R6515
    bmc: {address: 127.0.0.1:8443, credentials: c}
    components:
      - {slug: BMC, version: 1.0}
firmware:
  - id: f1
    vendor: Dell
    models: [PowerEdge R6515]
    component: BMC
    version: "1.5"
    scheme: dotted
    url: https://fw.example/f1.bin
    checksum: sha256:0000000000000000000000000000000000000000000000000000000000000000
    method: out-of-band
firmware_sets:
  - id: set1
    name: set one
    firmware: [f1]
`

func TestLoadErrors(t *testing.T) {
	tests := []struct {
		name    string
		body    string
		line    int
		reason  string
		extra   map[string]string // more files in a directory
		file    string            // file of the problem, when not the main one
		wantDir bool
	}{
		{name: "unknown field", body: strings.Replace(good, "    component: BMC\n", "    component: BMC\n    colour: red\n", 1), line: 15, reason: "field colour not found"},
		{name: "duplicate server id", body: strings.Replace(good, "firmware:\n", "  - id: s1\n    vendor: x\n    model: y\n    bmc: {address: h, credentials: c}\nfirmware:\n", 1), line: 10, reason: `duplicate server id "s1" (first at`},
		{name: "bad checksum", body: strings.Replace(good, "sha256:0000000000000000000000000000000000000000000000000000000000000000", "sha256:abc", 1), line: 18, reason: "is not sha256:<64 hex>"},
		{name: "md5 accepted, sha1 not", body: strings.Replace(good, "sha256:0000000000000000000000000000000000000000000000000000000000000000", "sha1:0000000000000000000000000000000000000000", 1), line: 18, reason: "checksum"},
		{name: "bad url", body: strings.Replace(good, "https://fw.example/f1.bin", "https://", 1), line: 17, reason: "has no host"},
		{name: "unknown url scheme", body: strings.Replace(good, "https://fw.example/f1.bin", "ftp://fw.example/f1.bin", 1), line: 17, reason: `scheme "ftp"`},
		{name: "unknown method", body: strings.Replace(good, "method: out-of-band", "method: carrier-pigeon", 1), line: 19, reason: `method "carrier-pigeon"`},
		{name: "unknown version scheme", body: strings.Replace(good, "scheme: dotted", "scheme: calver", 1), line: 16, reason: "unknown version scheme"},
		{name: "version does not parse", body: strings.Replace(good, `version: "1.5"`, `version: "1.5b"`, 1), line: 15, reason: "does not parse under scheme dotted"},
		{name: "set names missing firmware", body: strings.Replace(good, "firmware: [f1]", "firmware: [f1, f9]", 1), line: 23, reason: `firmware "f9" is not in the catalog`},
		{name: "server references missing credentials", body: strings.Replace(good, "credentials: c}", "credentials: nope}", 1), line: 7, reason: `credentials "nope" are not defined`},
		{name: "bad bmc address", body: strings.Replace(good, "127.0.0.1:8443", "127.0.0.1:99999", 1), line: 7, reason: "bad port"},
		{name: "yaml syntax", body: good + "  - [\n", line: 24, reason: "did not find expected node content"},
		{
			name: "same-target requirement cycle",
			body: strings.Replace(good, "    method: out-of-band\n", `    method: out-of-band
    requires: [{component: BMC, constraint: "=1.4"}]
  - id: f2
    vendor: Dell
    models: [PowerEdge R6515]
    component: BMC
    version: "1.4"
    scheme: dotted
    url: https://fw.example/f2.bin
    checksum: md5:00000000000000000000000000000000
    method: out-of-band
    requires: [{component: BMC, constraint: "=1.5"}]
`, 1),
			line: 11, reason: "DEPENDENCY_CYCLE",
		},
		{
			name: "duplicate firmware id across files",
			body: good, file: "b.yaml", line: 2, reason: `duplicate firmware id "f1" (first at`,
			extra: map[string]string{"b.yaml": "firmware:\n  - id: f1\n    vendor: Dell\n    models: [x]\n    component: BMC\n    version: \"2\"\n    scheme: dotted\n    url: https://fw.example/x\n    checksum: md5:00000000000000000000000000000000\n    method: in-band\n"},
		},
		{
			name: "duplicate credentials across files",
			body: good, file: "b.yaml", line: 2, reason: `duplicate credentials "c"`,
			extra: map[string]string{"b.yaml": "credentials:\n  c: {username: u, password: p}\n"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			main := write(t, dir, "a.yaml", tt.body)
			target := main
			for name, body := range tt.extra {
				write(t, dir, name, body)
				target = dir
			}
			_, err := Load(target, plan.Lint)
			var le *LoadError
			if !errors.As(err, &le) {
				t.Fatalf("Load = %v, want *LoadError", err)
			}
			file := main
			if tt.file != "" {
				file = filepath.Join(dir, tt.file)
			}
			for _, p := range le.Problems {
				if p.File == file && p.Line == tt.line && strings.Contains(p.Reason, tt.reason) {
					return
				}
			}
			t.Errorf("no problem at %s:%d containing %q; got:\n%v", file, tt.line, tt.reason, err)
		})
	}
}

func TestLoadGoodAndDirectory(t *testing.T) {
	dir := t.TempDir()
	write(t, dir, "a.yaml", good)
	write(t, dir, "b.yml", "firmware_sets:\n  - id: set2\n    name: two\n    labels: {vendor: Dell}\n    firmware: [f1]\n")
	write(t, dir, "c.yaml", "firmware_sets:\n  - id: set3\n    name: three\n    firmware: [f1]\n---\nfirmware_sets:\n  - id: set4\n    name: four\n    firmware: [f9]\n")
	write(t, dir, "notes.txt", "not yaml: [")
	// The second document's line numbers are the file's, not the document's.
	_, err := Load(dir, plan.Lint)
	var le *LoadError
	if !errors.As(err, &le) || len(le.Problems) != 1 || le.Problems[0].Line != 9 || !strings.HasSuffix(le.Problems[0].File, "c.yaml") {
		t.Fatalf("multi-document problem = %v", err)
	}
	write(t, dir, "c.yaml", "firmware_sets:\n  - id: set3\n    name: three\n    firmware: [f1]\n---\nfirmware_sets:\n  - id: set4\n    name: four\n    firmware: [f1]\n")
	snap, err := Load(dir, plan.Lint)
	if err != nil {
		t.Fatal(err)
	}
	if len(snap.Files) != 3 || len(snap.Catalog().Sets) != 4 || snap.Catalog().Sets[1].ID != "set2" || snap.Catalog().Sets[3].ID != "set4" {
		t.Fatalf("merged snapshot: files %v sets %+v", snap.Files, snap.Catalog().Sets)
	}
	if f := snap.Catalog().Firmware[0]; f.Filename != "f1.bin" || f.InBand {
		t.Errorf("firmware = %+v", f)
	}
}

func TestSourceReload(t *testing.T) {
	dir := t.TempDir()
	p := write(t, dir, "inv.yaml", good)
	results := make(chan error, 16)
	var logs bytes.Buffer
	src, err := NewSource(p, WithLint(plan.Lint), WithPollInterval(10*time.Millisecond), WithReloadHook(func(err error) { results <- err }),
		WithLogger(slog.New(slog.NewTextHandler(&logs, nil))))
	if err != nil {
		t.Fatal(err)
	}
	<-results
	ctx := context.Background()
	cat1, _ := src.Catalog(ctx)
	if cat2, _ := src.Catalog(ctx); cat1 != cat2 {
		t.Fatal("Catalog pointer changed without a reload")
	}

	runCtx, cancel := context.WithCancel(ctx)
	done := make(chan error)
	go func() { done <- src.Run(runCtx) }()
	defer func() { cancel(); <-done }()

	wait := func(what string) error {
		t.Helper()
		select {
		case err := <-results:
			return err
		case <-time.After(10 * time.Second):
			t.Fatalf("no reload after %s", what)
		}
		return nil
	}

	// A broken file is rejected; the previous inventory stays in force.
	write(t, dir, "inv.yaml", strings.Replace(good, "sha256:0000", "sha256:zz00", 1))
	if err := wait("breaking the file"); err == nil {
		t.Fatal("broken inventory accepted")
	}
	if src.LastError() == nil || src.Stats().Failures != 1 {
		t.Errorf("LastError %v, stats %+v", src.LastError(), src.Stats())
	}
	if cat, _ := src.Catalog(ctx); cat != cat1 {
		t.Error("a rejected reload replaced the catalog")
	}
	if !strings.Contains(logs.String(), "previous inventory stays in force") {
		t.Errorf("rejection not logged: %s", logs.String())
	}

	// A fixed file is picked up.
	write(t, dir, "inv.yaml", strings.Replace(good, `version: "1.5"`, `version: "1.6"`, 1))
	if err := wait("fixing the file"); err != nil {
		t.Fatalf("fixed inventory rejected: %v", err)
	}
	cat3, _ := src.Catalog(ctx)
	if cat3 == cat1 || cat3.Firmware[0].Version != "1.6" || src.LastError() != nil {
		t.Errorf("after fix: version %s, last error %v", cat3.Firmware[0].Version, src.LastError())
	}

	// SIGHUP reloads without a change.
	if err := syscall.Kill(os.Getpid(), syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	if err := wait("SIGHUP"); err != nil {
		t.Fatal(err)
	}
	if cat4, _ := src.Catalog(ctx); cat4 == cat3 {
		t.Error("SIGHUP did not swap the snapshot")
	}
	if st := src.Stats(); st.Reloads != 3 {
		t.Errorf("stats = %+v, want 3 reloads", st)
	}
}

// TestEmptyFileRefused: a file truncated for rewriting (empty, or only comments) is refused, so
// a reload that catches it between truncation and write keeps the last good inventory.
func TestEmptyFileRefused(t *testing.T) {
	dir := t.TempDir()
	for name, body := range map[string]string{"empty": "", "comments": "# nothing yet\n"} {
		p := write(t, dir, name+".yaml", body)
		_, err := Load(p, nil)
		if err == nil || !strings.Contains(err.Error(), "holds no inventory") {
			t.Errorf("%s file: %v", name, err)
		}
	}
}
