package configs

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

const unitFile = "../packaging/redwire.service"

// TestServiceHardened checks the systemd unit keeps the settings the
// agent relies on (state directory, reload, stop timeout) and its sandbox.
func TestServiceHardened(t *testing.T) {
	data, err := os.ReadFile(unitFile)
	if err != nil {
		t.Fatal(err)
	}
	set := map[string][]string{}
	for _, line := range strings.Split(string(data), "\n") {
		line = strings.TrimSpace(line)
		if line == "" || strings.HasPrefix(line, "#") || strings.HasPrefix(line, "[") {
			continue
		}
		k, v, ok := strings.Cut(line, "=")
		if !ok {
			t.Errorf("%s: line %q is not key=value", unitFile, line)
			continue
		}
		set[k] = append(set[k], v)
	}
	want := map[string]string{
		"User": "redwire", "StateDirectory": "redwire", "StateDirectoryMode": "0700",
		"ProtectSystem": "strict", "ProtectHome": "yes", "NoNewPrivileges": "yes", "PrivateTmp": "yes",
		"PrivateDevices": "yes", "ProtectKernelTunables": "yes", "ProtectKernelModules": "yes",
		"ProtectKernelLogs": "yes", "ProtectControlGroups": "yes",
		"RestrictAddressFamilies": "AF_UNIX AF_INET AF_INET6", "RestrictNamespaces": "yes",
		"LockPersonality": "yes", "MemoryDenyWriteExecute": "yes", "SystemCallArchitectures": "native",
		"CapabilityBoundingSet": "", "ExecReload": "/bin/kill -HUP $MAINPID", "Restart": "on-failure",
	}
	for k, v := range want {
		if len(set[k]) == 0 || set[k][0] != v {
			t.Errorf("%s: %s=%q, want %q", unitFile, k, set[k], v)
		}
	}
	if !strings.Contains(strings.Join(set["SystemCallFilter"], " "), "@system-service") {
		t.Errorf("%s: SystemCallFilter %q lacks @system-service", unitFile, set["SystemCallFilter"])
	}
	if !strings.Contains(strings.Join(set["ExecStart"], " "), "--buffer.path=/var/lib/redwire") {
		t.Errorf("%s: ExecStart %q does not put the buffer in the StateDirectory", unitFile, set["ExecStart"])
	}
	// The graceful stop flushes for up to 10 s, then commits to disk.
	if d := strings.Join(set["TimeoutStopSec"], ""); d == "" || d == "10s" || strings.HasPrefix(d, "5") {
		t.Errorf("%s: TimeoutStopSec=%q must exceed the 10 s shutdown flush", unitFile, d)
	}
}

// TestServiceVerifies runs systemd-analyze verify on the unit, with the
// binary replaced by one that exists here. verify parses the unit offline
// and needs no running systemd (PID 1), so it works in a container too; a
// missing systemd-analyze fails the test (make deps installs it).
// --recursive-errors=no keeps the verdict on this unit, not on the units
// the host happens to have for its After= and Wants= names; --man=no
// keeps it off the man pages a minimal host lacks.
func TestServiceVerifies(t *testing.T) {
	bin, err := exec.LookPath("systemd-analyze")
	if err != nil {
		t.Fatal("systemd-analyze not installed (Debian package systemd; make deps installs it)")
	}
	data, err := os.ReadFile(unitFile)
	if err != nil {
		t.Fatal(err)
	}
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	unit := filepath.Join(t.TempDir(), "redwire.service")
	if err := os.WriteFile(unit, []byte(strings.ReplaceAll(string(data), "/usr/bin/redwire", self)), 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(bin, "verify", "--man=no", "--recursive-errors=no", unit).CombinedOutput()
	if err != nil || len(strings.TrimSpace(string(out))) > 0 {
		t.Fatalf("systemd-analyze verify: %v\n%s", err, out)
	}
}
