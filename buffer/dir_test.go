package buffer

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestPrepareDir(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "data")
	if w, err := PrepareDir(dir); err != nil || w != "" {
		t.Fatalf("new dir: %q, %v", w, err)
	}
	fi, err := os.Stat(dir)
	if err != nil || fi.Mode().Perm() != 0o700 {
		t.Fatalf("created with %v (%v), want 0700", fi.Mode().Perm(), err)
	}
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if w, err := PrepareDir(dir); err != nil || !strings.Contains(w, "chmod 700") {
		t.Errorf("0755 dir: %q, %v; want a warning", w, err)
	}
	file := filepath.Join(t.TempDir(), "f")
	if err := os.WriteFile(file, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := PrepareDir(file); err == nil {
		t.Error("a file as buffer.path must be refused")
	}
	if os.Getuid() == 0 {
		other := filepath.Join(t.TempDir(), "other")
		if err := os.Mkdir(other, 0o700); err != nil {
			t.Fatal(err)
		}
		if err := os.Chown(other, 65534, 65534); err != nil {
			t.Fatal(err)
		}
		if _, err := PrepareDir(other); err == nil || !strings.Contains(err.Error(), "owned by uid 65534") {
			t.Errorf("a directory of another user: %v, want a refusal", err)
		}
	} else {
		t.Log("not root: the other-owner case needs chown and is not checked")
	}
}
