package configs

import (
	"path/filepath"
	"testing"

	"github.com/redwire/redwire/agent"
)

// TestExamplesLoad loads every example configuration as `redwire
// --config.file` would. agent's TestShippedConfigsLoad reads only
// configs/*.yml and wants remote_write in each, which the buffer-only
// example has not.
func TestExamplesLoad(t *testing.T) {
	files, err := filepath.Glob("examples/*.yml")
	if err != nil || len(files) == 0 {
		t.Fatalf("no examples found: %v", err)
	}
	for _, f := range files {
		t.Run(filepath.Base(f), func(t *testing.T) {
			cfg, err := agent.LoadFile(f)
			if err != nil {
				t.Fatal(err)
			}
			if err := cfg.Finalize(); err != nil {
				t.Fatal(err)
			}
			sources := len(cfg.Targets) + len(cfg.Sentinels) + len(cfg.Clusters)
			if sources == 0 {
				t.Errorf("%s: no targets, sentinels or clusters", f)
			}
			if cfg.Buffer.Path != "/var/lib/redwire" {
				t.Errorf("%s: buffer.path %q, want the systemd unit's StateDirectory /var/lib/redwire", f, cfg.Buffer.Path)
			}
		})
	}
}

// TestExamplesCoverReceivers checks that the examples the README points to
// exist and say what they are named for.
func TestExamplesCoverReceivers(t *testing.T) {
	cases := []struct {
		file  string
		check func(*agent.Config) bool
		want  string
	}{
		{"edge-buffer-only.yml", func(c *agent.Config) bool { return len(c.RemoteWrite) == 0 }, "no remote_write"},
		{"prometheus.yml", func(c *agent.Config) bool { return len(c.RemoteWrite) == 1 }, "one remote_write"},
		{"mimir.yml", func(c *agent.Config) bool {
			return len(c.RemoteWrite) == 1 && c.RemoteWrite[0].Headers["X-Scope-OrgID"] != "" && c.RemoteWrite[0].HTTPClientConfig.BasicAuth != nil
		}, "X-Scope-OrgID and basic_auth"},
		{"thanos-receive.yml", func(c *agent.Config) bool { return len(c.RemoteWrite) == 1 }, "one remote_write"},
		{"victoriametrics.yml", func(c *agent.Config) bool {
			return len(c.RemoteWrite) == 1 && filepath.Base(c.RemoteWrite[0].URL.Path) == "write"
		}, "a /api/v1/write URL"},
		{"sentinel.yml", func(c *agent.Config) bool { return len(c.Sentinels) == 1 }, "a sentinels: entry"},
		{"cluster.yml", func(c *agent.Config) bool { return len(c.Clusters) == 1 }, "a clusters: entry"},
	}
	for _, c := range cases {
		cfg, err := agent.LoadFile(filepath.Join("examples", c.file))
		if err != nil {
			t.Errorf("%s: %v", c.file, err)
			continue
		}
		if err := cfg.Finalize(); err != nil {
			t.Errorf("%s: %v", c.file, err)
			continue
		}
		if !c.check(cfg) {
			t.Errorf("%s: want %s", c.file, c.want)
		}
	}
}
