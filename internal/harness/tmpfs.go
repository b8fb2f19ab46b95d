package harness

import (
	"bytes"
	"os/exec"
	"testing"
)

// MountTmpfs mounts a tmpfs of the given size (e.g. "32m") on a fresh
// directory and unmounts it when the test ends: a small filesystem that a
// test can fill up for real, to see what ENOSPC does. It needs root or
// CAP_SYS_ADMIN and mount(8); without them the test fails, as for a
// missing server binary, because only a real full disk verifies the
// promise.
func MountTmpfs(t testing.TB, size string) string {
	t.Helper()
	dir := t.TempDir()
	out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size="+size+",mode=0700", "tmpfs", dir).CombinedOutput()
	if err != nil {
		t.Fatalf("cannot mount a %s tmpfs to fill up (needs root or CAP_SYS_ADMIN on Linux, and mount): %v: %s", size, err, bytes.TrimSpace(out))
	}
	t.Cleanup(func() {
		if out, err := exec.Command("umount", dir).CombinedOutput(); err != nil {
			t.Errorf("umount %s: %v: %s", dir, err, out)
		}
	})
	return dir
}
