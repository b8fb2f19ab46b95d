package discovery

import (
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/redwire/redwire/internal/harness"
)

// groupWait bounds how long a test waits for a group that should come; it
// is a failure bound, not a speed expectation.
const groupWait = 30 * time.Second

func testLogger(t *testing.T) (*slog.Logger, *harness.LogBuffer) {
	buf := &harness.LogBuffer{}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("discovery log:\n%s", buf)
		}
	})
	return slog.New(slog.NewTextHandler(buf, &slog.HandlerOptions{Level: slog.LevelDebug})), buf
}

// runDiscoverer runs d until the test ends, and makes the test wait for
// Run to return: a discoverer that ignores its context hangs the test.
func runDiscoverer(t *testing.T, d Discoverer, up chan<- Group) {
	done := make(chan struct{})
	go func() {
		defer close(done)
		d.Run(t.Context(), up)
	}()
	t.Cleanup(func() { <-done })
}

func nextGroup(t *testing.T, up <-chan Group) Group {
	t.Helper()
	select {
	case g := <-up:
		return g
	case <-time.After(groupWait):
		t.Fatal("no group arrived")
		return Group{}
	}
}

func instances(g Group) []string {
	var out []string
	for _, tc := range g.Targets {
		out = append(out, tc.Instance())
	}
	slices.Sort(out)
	return out
}

// replaceFile writes content next to path and renames it over path, as
// careful writers (and config management) do.
func replaceFile(t *testing.T, path, content string) {
	t.Helper()
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
}

func TestFileFollowsChanges(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "targets.yml")
	replaceFile(t, path, "- addr: redis://10.0.0.1:6379\n- addr: redis://10.0.0.2:6379\n  labels: {shard: b}\n")
	log, _ := testLogger(t)
	// An hour: only fsnotify can bring the changes in time.
	f := NewFile(path, time.Hour, log)
	up := make(chan Group)
	runDiscoverer(t, f, up)

	g := nextGroup(t, up)
	if got := instances(g); !slices.Equal(got, []string{"10.0.0.1:6379", "10.0.0.2:6379"}) {
		t.Fatalf("first group: %v", got)
	}
	if g.Source != "file:"+path {
		t.Errorf("source %q", g.Source)
	}

	replaceFile(t, path, "- addr: redis://10.0.0.3:6379\n")
	if got := instances(nextGroup(t, up)); !slices.Equal(got, []string{"10.0.0.3:6379"}) {
		t.Fatalf("after rename over the file: %v", got)
	}

	// A broken version is refused whole and named; nothing is sent, and
	// the next good version goes through.
	replaceFile(t, path, "- addr: redis://10.0.0.4:6379\n- adr: redis://10.0.0.5:6379\n")
	if err := os.WriteFile(path, []byte("- addr: redis://10.0.0.6:6379\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if got := instances(nextGroup(t, up)); !slices.Equal(got, []string{"10.0.0.6:6379"}) {
		t.Fatalf("after a broken version, then a good one written in place: %v", got)
	}

	replaceFile(t, path, "[]\n")
	if got := instances(nextGroup(t, up)); len(got) != 0 {
		t.Fatalf("an empty list removes every target; got %v", got)
	}
}

func TestFileRefusesBrokenVersion(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "targets.yml")
	replaceFile(t, path, "- addr: redis://10.0.0.1:6379\n")
	log, logs := testLogger(t)
	f := NewFile(path, time.Hour, log)
	up := make(chan Group, 8)
	runDiscoverer(t, f, up)
	nextGroup(t, up)

	replaceFile(t, path, "- addr: redis://10.0.0.1:6379\n- addr: ftp://10.0.0.2\n")
	deadline := time.Now().Add(groupWait)
	for !strings.Contains(logs.String(), "targets file refused") {
		if time.Now().After(deadline) {
			t.Fatal("the broken version was not logged")
		}
		time.Sleep(10 * time.Millisecond) // polling the log for a condition
	}
	if out := logs.String(); !strings.Contains(out, "[1]") || !strings.Contains(out, "unsupported scheme") {
		t.Errorf("the error should name the entry and the problem:\n%s", out)
	}
	if len(up) != 0 {
		t.Fatalf("a broken version sent a group: %v", instances(<-up))
	}
}

func TestReadTargetsFileErrors(t *testing.T) {
	dir := t.TempDir()
	for name, tc := range map[string]struct{ content, want string }{
		"unknown key": {"- addr: redis://h:1\n  pasword: x\n", "pasword"},
		"duplicate":   {"- addr: redis://h:1\n- addr: redis://h:1\n", "[1]: instance \"h:1\" is also [0]"},
		"bad addr":    {"- addr: nope://h\n", "[0]"},
	} {
		path := filepath.Join(dir, strings.ReplaceAll(name, " ", "_")+".yml")
		if err := os.WriteFile(path, []byte(tc.content), 0o600); err != nil {
			t.Fatal(err)
		}
		_, err := ReadTargetsFile(path)
		if err == nil || !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), path) {
			t.Errorf("%s: got %v, want an error naming the file and %q", name, err, tc.want)
		}
	}
	// Relative files are relative to the targets file.
	path := filepath.Join(dir, "rel.yml")
	if err := os.WriteFile(path, []byte("- addr: redis://h:1\n  password_file: pw\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	ts, err := ReadTargetsFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if ts[0].PasswordFile != filepath.Join(dir, "pw") {
		t.Errorf("password_file %q, want it relative to the targets file", ts[0].PasswordFile)
	}
}
