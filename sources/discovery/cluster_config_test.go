package discovery

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/common/model"
	yaml "go.yaml.in/yaml/v2"
)

func TestClusterConfigValidate(t *testing.T) {
	ok := func() ClusterConfig {
		return ClusterConfig{Name: "prod", Seeds: []string{"redis://:hunter2@10.0.0.1:7000", "redis://:hunter2@10.0.0.2"}}
	}
	for _, tc := range []struct {
		name   string
		edit   func(*ClusterConfig)
		errHas string // "" for valid
	}{
		{"valid", func(*ClusterConfig) {}, ""},
		{"valid valkeys with db 0", func(c *ClusterConfig) { c.Seeds = []string{"valkeys://h:1/0"} }, ""},
		{"no name", func(c *ClusterConfig) { c.Name = "" }, "clusters[?].name: must be non-empty"},
		{"no seeds", func(c *ClusterConfig) { c.Seeds = nil }, "clusters[prod].seeds: must list"},
		{"unix seed", func(c *ClusterConfig) { c.Seeds[1] = "unix:///run/redis.sock" }, `clusters[prod].seeds[1]: "unix:///run/redis.sock": unsupported scheme`},
		{"bad port", func(c *ClusterConfig) { c.Seeds[1] = "redis://:hunter2@h:x" }, `clusters[prod].seeds[1]: "<invalid>"`},
		{"no host", func(c *ClusterConfig) { c.Seeds[0] = "redis://:hunter2@" }, `clusters[prod].seeds[0]: "redis://:xxxxx@": missing host`},
		{"database", func(c *ClusterConfig) { c.Seeds[0] = "redis://:hunter2@h:1/2" }, "clusters[prod].seeds[0]: \"redis://:xxxxx@h:1/2\": database \"/2\""},
		{"mixed scheme", func(c *ClusterConfig) { c.Seeds[1] = "rediss://:hunter2@h:1" }, "clusters[prod].seeds[1]: scheme and userinfo must match seeds[0]"},
		{"mixed userinfo", func(c *ClusterConfig) { c.Seeds[1] = "redis://:other@h:1" }, "clusters[prod].seeds[1]: scheme and userinfo must match seeds[0]"},
		{"both passwords", func(c *ClusterConfig) { c.Password, c.PasswordFile = "x", "f" }, "clusters[prod].password_file: "},
		{"soft fail", func(c *ClusterConfig) { c.SoftFailThreshold = -1 }, "clusters[prod].soft_fail_threshold"},
		{"refresh", func(c *ClusterConfig) { c.RefreshInterval = -1 }, "clusters[prod].refresh_interval"},
		{"label name", func(c *ClusterConfig) { c.Labels = map[string]string{"a-b": "x"} }, `clusters[prod].labels: invalid label name "a-b"`},
		{"reserved label", func(c *ClusterConfig) { c.Labels = map[string]string{"__x": "x"} }, `invalid label name "__x"`},
		{"cluster label", func(c *ClusterConfig) { c.Labels = map[string]string{"redis_cluster": "x"} }, "clusters[prod].labels: redis_cluster is set from name"},
	} {
		cfg := ok()
		tc.edit(&cfg)
		err := cfg.Validate()
		switch {
		case tc.errHas == "" && err != nil:
			t.Errorf("%s: %v", tc.name, err)
		case tc.errHas != "" && (err == nil || !strings.Contains(err.Error(), tc.errHas)):
			t.Errorf("%s: error %v, want one containing %q", tc.name, err, tc.errHas)
		case err != nil && strings.Contains(err.Error(), "hunter2"):
			t.Errorf("%s: error shows the password: %v", tc.name, err)
		}
		var ce *ClusterConfigError
		if err != nil && !errors.As(err, &ce) {
			t.Errorf("%s: %T is not a *ClusterConfigError", tc.name, err)
		}
	}

	if _, err := NewCluster(ok(), 0, nil, nil); err == nil || !strings.Contains(err.Error(), "refresh_interval") {
		t.Errorf("NewCluster without any refresh interval: %v", err)
	}
	cfg := ok()
	cfg.RefreshInterval = model.Duration(time.Minute)
	if c, err := NewCluster(cfg, 0, nil, nil); err != nil || c.refresh != time.Minute {
		t.Errorf("NewCluster with refresh_interval: %v", err)
	}
}

// TestClusterConfigYAML: strict decoding, relative paths, and printing
// without secrets.
func TestClusterConfigYAML(t *testing.T) {
	const doc = `name: prod
seeds: ["rediss://:hunter2@10.0.0.1:7000"]
username: mon
password_file: pw.txt
tls: {ca_file: ca.pem}
labels: {team: cache}
soft_fail_threshold: 1
refresh_interval: 30s
`
	var cfg ClusterConfig
	if err := yaml.UnmarshalStrict([]byte(doc), &cfg); err != nil {
		t.Fatal(err)
	}
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	cfg.SetDirectory("/etc/redwire")
	if cfg.PasswordFile != "/etc/redwire/pw.txt" || cfg.TLS.CAFile != "/etc/redwire/ca.pem" ||
		cfg.RefreshInterval != model.Duration(30*time.Second) || cfg.Username != "mon" {
		t.Errorf("decoded %+v", cfg)
	}
	if err := yaml.UnmarshalStrict([]byte(doc+"seed: x\n"), &ClusterConfig{}); err == nil {
		t.Error("unknown key accepted")
	}
	cfg.Password = "s3cret"
	out, err := yaml.Marshal(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if s := string(out); strings.Contains(s, "hunter2") || strings.Contains(s, "s3cret") || !strings.Contains(s, "xxxxx@10.0.0.1:7000") {
		t.Errorf("printed config shows a secret or lost the seed:\n%s", s)
	}
}
