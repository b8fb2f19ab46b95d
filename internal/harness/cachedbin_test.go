package harness

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// TestPrometheus3MissingBinaryFailsWithMakeDeps: a receiver make deps has
// not built fails the test (never skips) and says what builds it.
func TestPrometheus3MissingBinaryFailsWithMakeDeps(t *testing.T) {
	t.Setenv("REDWIRE_CACHE", t.TempDir())
	msg := fatalMessage(t, func(tb testing.TB) { StartPrometheus3(tb) })
	for _, want := range []string{"prometheus " + Prometheus3Version + " not found", "make deps", buildScript} {
		if !strings.Contains(msg, want) {
			t.Errorf("message %q does not contain %q", msg, want)
		}
	}
}

// TestPrometheus3AndThanosVersionsMatchBuildScript: the build script
// builds the versions the harness runs.
func TestPrometheus3AndThanosVersionsMatchBuildScript(t *testing.T) {
	script, err := os.ReadFile(filepath.Join("..", "..", buildScript))
	if err != nil {
		t.Fatal(err)
	}
	for name, want := range map[string]string{"PROMETHEUS3_VERSION": Prometheus3Version, "THANOS_VERSION": ThanosVersion} {
		m := regexp.MustCompile(`(?m)^` + name + `=(\S+)`).FindSubmatch(script)
		if m == nil || string(m[1]) != want {
			t.Errorf("%s sets %s to %q, the harness runs %s", buildScript, name, m, want)
		}
	}
}
