package harness

import (
	"os"
	"path/filepath"
	"testing"
)

// The receivers that are not Debian packages. scripts/build-receivers.sh
// (run by make deps) builds each once into the cache as NAME-VERSION;
// TestPrometheus3AndThanosVersionsMatchBuildScript checks that
// it builds these versions.
const (
	// Prometheus3Version is the Prometheus 3.x that StartPrometheus3
	// runs: the Go module version of Prometheus 3.16.0.
	Prometheus3Version = "v0.316.0"
	// ThanosVersion is the Thanos that StartThanosReceive runs.
	ThanosVersion = "v0.42.4"
)

// buildScript is the script that builds the cached binaries, relative to
// the repository root.
const buildScript = "scripts/build-receivers.sh"

// cacheDir is where make deps keeps what it builds:
// $REDWIRE_CACHE, or ~/.cache/redwire.
func cacheDir(t testing.TB) string {
	t.Helper()
	if dir := os.Getenv("REDWIRE_CACHE"); dir != "" {
		return dir
	}
	home, err := os.UserHomeDir()
	if err != nil {
		t.Fatalf("find the redwire cache: set REDWIRE_CACHE or HOME: %v", err)
	}
	return filepath.Join(home, ".cache", "redwire")
}

// cachedBinary returns the path of name at version in the cache, or fails
// the test saying how to build it: like a missing Debian binary, a missing
// build never skips.
func cachedBinary(t testing.TB, name, version string) string {
	t.Helper()
	bin := filepath.Join(cacheDir(t), "bin", name+"-"+version)
	fi, err := os.Stat(bin)
	if err != nil || fi.IsDir() || fi.Mode()&0o111 == 0 {
		t.Fatalf("%s %s not found at %s: run `make deps` (%s builds it once; the first build takes minutes)",
			name, version, bin, buildScript)
	}
	return bin
}
