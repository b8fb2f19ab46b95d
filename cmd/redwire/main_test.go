package main

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func runCLI(t *testing.T, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	var out, errb bytes.Buffer
	code = run(context.Background(), args, &out, &errb)
	return code, out.String(), errb.String()
}

func writeFile(t *testing.T, body string) string {
	t.Helper()
	f := filepath.Join(t.TempDir(), "redwire.yml")
	if err := os.WriteFile(f, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	return f
}

func TestCheckConfigPrintsEffectiveConfigRedacted(t *testing.T) {
	f := writeFile(t, `
global: {scrape_interval: 20s}
targets:
  - addr: redis://mon:hunter2-canary@10.0.0.1:6379
remote_write:
  - url: https://example.net/api/v1/push
    basic_auth: {username: u, password: hunter2-canary}
`)
	code, out, errOut := runCLI(t, "check-config", "--config.file="+f)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	if strings.Contains(out+errOut, "hunter2-canary") {
		t.Fatalf("secret printed:\n%s", out)
	}
	for _, want := range []string{"scrape_interval: 20s", "scrape_timeout: 16s", "max_samples_per_send: 2000", "batch_send_deadline: 5s", "path: ./data"} {
		if !strings.Contains(out, want) {
			t.Errorf("effective config lacks %q:\n%s", want, out)
		}
	}
}

func TestFlagsOverrideFile(t *testing.T) {
	f := writeFile(t, "global: {scrape_interval: 20s}\nbuffer: {path: /var/lib/x}\n")
	code, out, errOut := runCLI(t, "check-config", "--config.file="+f, "--scrape.interval=2s",
		"--redis.addr=redis://127.0.0.1:7000", "--redis.addr=unix:///tmp/r.sock",
		"--remote-write.url=http://127.0.0.1:9/api/v1/write", "--remote-write.queue_config.max_samples_per_send=50")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	for _, want := range []string{"scrape_interval: 2s", "scrape_timeout: 1s600ms", "redis://127.0.0.1:7000", "unix:///tmp/r.sock",
		"max_samples_per_send: 50", "path: /var/lib/x"} {
		if !strings.Contains(out, want) {
			t.Errorf("want %q in:\n%s", want, out)
		}
	}
}

func TestCheckConfigFailsWithFieldAndLine(t *testing.T) {
	f := writeFile(t, "global:\n  scrape_interval: 5s\ntargets:\n  - addr: redis://h:1\n    pasword: x\n")
	code, _, errOut := runCLI(t, "check-config", "--config.file="+f)
	if code == 0 {
		t.Fatal("want non-zero exit")
	}
	for _, want := range []string{f, "line 5", "pasword"} {
		if !strings.Contains(errOut, want) {
			t.Errorf("error %q lacks %q", errOut, want)
		}
	}
}

func TestBadFlagValue(t *testing.T) {
	code, _, errOut := runCLI(t, "check-config", "--redis.addr=http://nope")
	if code == 0 || !strings.Contains(errOut, "targets[0]") || !strings.Contains(errOut, "unsupported scheme") {
		t.Fatalf("exit %d, stderr %q", code, errOut)
	}
	code, _, errOut = runCLI(t, "--scrape.interval=often")
	if code == 0 || !strings.Contains(errOut, "scrape.interval") {
		t.Fatalf("exit %d, stderr %q", code, errOut)
	}
}

func TestVersion(t *testing.T) {
	code, out, errOut := runCLI(t, "--version")
	if code != 0 || !strings.Contains(out+errOut, "redwire, version") {
		t.Fatalf("exit %d, out %q %q", code, out, errOut)
	}
}
