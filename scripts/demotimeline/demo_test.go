package main

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestDemoLosesNothingAcrossAnOutage runs make demo's script as a newcomer
// would, with a redwire built afresh: a real Redis, a real Prometheus
// taken away for 20 s and brought back. It takes about a minute. A
// missing binary fails the test; it never skips.
func TestDemoLosesNothingAcrossAnOutage(t *testing.T) {
	for _, bin := range []string{"redis-server", "redis-cli", "prometheus", "curl", "go"} {
		if _, err := exec.LookPath(bin); err != nil {
			t.Fatalf("%s is not in PATH (make deps installs it): %v", bin, err)
		}
	}
	root, err := filepath.Abs("../..")
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	redwire := filepath.Join(dir, "redwire")
	build := exec.Command("go", "build", "-o", redwire, "./cmd/redwire")
	build.Dir = root
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("build redwire: %v\n%s", err, out)
	}

	pngPath := filepath.Join(dir, "timeline.png")
	tmp := filepath.Join(dir, "tmp") // the demo's working dir goes here, kept on failure
	if err := os.Mkdir(tmp, 0o755); err != nil {
		t.Fatal(err)
	}
	// A bound, not a measurement: the demo ends by itself in about a minute.
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	demo := exec.CommandContext(ctx, "bash", filepath.Join(root, "scripts", "demo.sh"), redwire)
	demo.Dir = dir
	demo.Env = append(os.Environ(), "DEMO_PNG="+pngPath, "DEMO_KEEP=", "TMPDIR="+tmp)
	// Cut short, the script still stops what it started: its trap runs on
	// SIGTERM.
	demo.Cancel = func() error { return demo.Process.Signal(syscall.SIGTERM) }
	demo.WaitDelay = time.Minute
	out, err := demo.CombinedOutput()
	t.Logf("scripts/demo.sh:\n%s", out)
	if err != nil {
		logDemoDirs(t, tmp)
		t.Fatalf("scripts/demo.sh: %v", err)
	}
	for _, want := range []*regexp.Regexp{
		regexp.MustCompile(`(?m)redwire says: degraded: .* kept on disk`),
		regexp.MustCompile(`(?m)back to normal .* replayed from disk`),
		regexp.MustCompile(`(?m)^[1-9][0-9]* taken, [1-9][0-9]* delivered, 0 lost$`),
	} {
		if !want.Match(out) {
			t.Errorf("the demo's output has no line matching %s", want)
		}
	}
	assertPNG(t, pngPath)
	if left, _ := filepath.Glob(filepath.Join(tmp, "redwire-demo.*")); len(left) > 0 {
		t.Errorf("a successful demo left its working dir behind: %v", left)
	}
}

// logDemoDirs logs the end of every log a failed demo kept.
func logDemoDirs(t *testing.T, tmp string) {
	t.Helper()
	logs, _ := filepath.Glob(filepath.Join(tmp, "redwire-demo.*", "*.log"))
	for _, l := range logs {
		b, err := os.ReadFile(l)
		if err != nil {
			continue
		}
		lines := strings.Split(string(b), "\n")
		t.Logf("%s (last 40 lines):\n%s", l, strings.Join(lines[max(0, len(lines)-40):], "\n"))
	}
}
