package agent

import (
	"os"
	"path/filepath"
	"testing"
)

// TestMain removes the redwire binary that process tests build once.
func TestMain(m *testing.M) {
	code := m.Run()
	if builtBin != "" {
		os.RemoveAll(filepath.Dir(builtBin))
	}
	os.Exit(code)
}
