package main

import (
	"strings"
	"testing"
)

// TestLinkBudgetFlagsAndKeys: --remote-write.max-bytes-per-second and
// --remote-write.max-bytes-per-day set every endpoint's link budget over
// the file's, in units as buffer.max_bytes takes them; a negative one in
// the file names the setting.
func TestLinkBudgetFlagsAndKeys(t *testing.T) {
	f := writeFile(t, "remote_write:\n  - url: http://127.0.0.1:9/api/v1/write\n    max_bytes_per_day: 1MiB\n")
	code, out, errOut := runCLI(t, "check-config", "--config.file="+f)
	if code != 0 || !strings.Contains(out, "max_bytes_per_day: 1MiB") || strings.Contains(out, "max_bytes_per_second") {
		t.Fatalf("file: exit %d: %s%s; want max_bytes_per_day: 1MiB and no rate", code, out, errOut)
	}
	code, out, errOut = runCLI(t, "check-config", "--config.file="+f,
		"--remote-write.max-bytes-per-second=4KiB", "--remote-write.max-bytes-per-day=20MiB")
	if code != 0 || !strings.Contains(out, "max_bytes_per_second: 4KiB") || !strings.Contains(out, "max_bytes_per_day: 20MiB") {
		t.Fatalf("flags: exit %d: %s%s; want both limits from the flags", code, out, errOut)
	}
	bad := writeFile(t, "remote_write:\n  - url: http://127.0.0.1:9/api/v1/write\n    max_bytes_per_second: -1KiB\n")
	if code, _, errOut := runCLI(t, "check-config", "--config.file="+bad); code == 0 || !strings.Contains(errOut, "max_bytes_per_second") {
		t.Errorf("exit %d, %q; want an error naming max_bytes_per_second", code, errOut)
	}
}
