package main

import (
	"regexp"
	"strings"
	"testing"
)

// TestOldFlagSpellingsStillWork: every flag once spelled with underscores
// sets exactly what its current spelling sets, and --help shows only the
// current one.
func TestOldFlagSpellingsStillWork(t *testing.T) {
	values := []string{
		"--targets_file=/etc/redwire/targets.yml",
		"--remote-write.url=http://127.0.0.1:9/api/v1/write",
		"--remote-write.remote_timeout=7s",
		"--remote-write.queue_config.capacity=1234",
		"--remote-write.queue_config.max_samples_per_send=321",
		"--remote-write.queue_config.batch_send_deadline=3s",
		"--remote-write.queue_config.min_backoff=100ms",
		"--remote-write.queue_config.max_backoff=9s",
		"--global.max_concurrent_scrapes=7",
		"--global.soft_fail_threshold=4",
		"--global.external_labels=site=edge-1",
		"--buffer.max_bytes=64MiB",
		"--buffer.max_age=2d",
		"--buffer.crash_journal=off",
		"--degraded.failure_threshold=5",
		"--replay.max_samples_per_second=1000",
		"--replay.max_samples_per_send=500",
		"--no-self_metrics.enabled",
	}
	var current []string
	for _, v := range values {
		name, value, _ := strings.Cut(v, "=")
		c := strings.ReplaceAll(name, "_", "-")
		if value != "" {
			c += "=" + value
		}
		current = append(current, c)
	}
	code, old, errOut := runCLI(t, append([]string{"check-config"}, values...)...)
	if code != 0 {
		t.Fatalf("old spellings: exit %d: %s", code, errOut)
	}
	code, now, errOut := runCLI(t, append([]string{"check-config"}, current...)...)
	if code != 0 {
		t.Fatalf("current spellings: exit %d: %s", code, errOut)
	}
	if old != now {
		t.Errorf("old and current spellings set different configs:\nold:\n%s\ncurrent:\n%s", old, now)
	}
	for _, want := range []string{"capacity: 1234", "max_samples_per_send: 321", "crash_journal: \"off\"", "failure_threshold: 5"} {
		if !strings.Contains(now, want) {
			t.Errorf("effective config lacks %q:\n%s", want, now)
		}
	}

	_, help, _ := runCLI(t, "--help-long")
	if bad := regexp.MustCompile(`--[a-z.-]*_[a-z_.-]*`).FindAllString(help, -1); len(bad) > 0 {
		t.Errorf("--help shows flags spelled with underscores: %v", bad)
	}
	if code, _, errOut := runCLI(t, "check-config", "--buffer.max_bites=1"); code == 0 || !strings.Contains(errOut, "max_bites") {
		t.Errorf("an unknown flag: exit %d, %q; want an error naming it as typed", code, errOut)
	}
}
