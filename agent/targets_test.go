package agent

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/redwire/redwire/internal/harness"
)

// TestTargetsFileIsFollowed: the agent scrapes what a targets file lists,
// picks up a rewrite without a restart, ends the series of a target the
// new version drops, and keeps scraping through a broken version.
func TestTargetsFileIsFollowed(t *testing.T) {
	t.Parallel()
	r1, r2 := harness.StartRedis(t), harness.StartRedis(t)
	prom := harness.StartPrometheus(t)
	path := filepath.Join(t.TempDir(), "targets.yml")
	write := func(content string) {
		t.Helper()
		if err := os.WriteFile(path+".tmp", []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(path+".tmp", path); err != nil {
			t.Fatal(err)
		}
	}
	write(fmt.Sprintf("- addr: %s\n  labels: {shard: a}\n", r1.URL()))
	cfg := editedTestConfig(t, prom.WriteURL(), func(c *Config) { c.TargetsFile = path })
	a := runAgent(t, cfg)
	ctx := context.Background()
	queryOne(t, prom, fmt.Sprintf(`redis_up{instance=%q,shard="a"} == 1`, r1.Addr()), nil)

	write(fmt.Sprintf("- addr: %s\n  labels: {shard: b}\n", r2.URL()))
	queryOne(t, prom, fmt.Sprintf(`redis_up{instance=%q,shard="b"} == 1`, r2.Addr()), nil)
	harness.WaitFor(t, 60*time.Second, "the dropped target's series to end", func() (bool, error) {
		vec, err := prom.Query(ctx, fmt.Sprintf(`redis_up{instance=%q}`, r1.Addr()))
		return err == nil && len(vec) == 0, err
	})

	// A broken version: refused, logged, and r2 is still scraped.
	write("- addr: redis://h:1\n  pasword: x\n")
	harness.WaitFor(t, 30*time.Second, "the broken version to be refused", func() (bool, error) {
		return a.logs.Count("targets file refused", "pasword") == 1, nil
	})
	before := agentMetric(t, cfg, fmt.Sprintf(`redwire_target_scrapes_total{target=%q}`, r2.Addr()))
	harness.WaitFor(t, 30*time.Second, "r2 to be scraped after the broken version", func() (bool, error) {
		return agentMetric(t, cfg, fmt.Sprintf(`redwire_target_scrapes_total{target=%q}`, r2.Addr())) > before, nil
	})
	assertNoRejections(t, prom)
}
