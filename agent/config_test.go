package agent

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestShippedConfigsLoad(t *testing.T) {
	files, err := filepath.Glob("../configs/*.yml")
	if err != nil || len(files) == 0 {
		t.Fatalf("no configs found: %v", err)
	}
	for _, f := range files {
		t.Run(filepath.Base(f), func(t *testing.T) {
			cfg, err := LoadFile(f)
			if err != nil {
				t.Fatal(err)
			}
			if err := cfg.Finalize(); err != nil {
				t.Fatal(err)
			}
			if len(cfg.Targets) == 0 || len(cfg.RemoteWrite) == 0 {
				t.Fatalf("%s: want targets and remote_write, got %d and %d", f, len(cfg.Targets), len(cfg.RemoteWrite))
			}
		})
	}
}

func TestEmptyConfigGetsDefaults(t *testing.T) {
	cfg, err := Parse(nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := cfg.Finalize(); err != nil {
		t.Fatal(err)
	}
	if got := cfg.Targets[0].Addr; got != DefaultTarget {
		t.Errorf("default target = %q, want %q", got, DefaultTarget)
	}
	if got, want := time.Duration(cfg.Global.ScrapeTimeout), 8*time.Second; got != want {
		t.Errorf("default scrape_timeout = %s, want %s (80%% of 10s)", got, want)
	}
	if cfg.Buffer.Path != "./data" || cfg.Web.ListenAddress != ":9187" {
		t.Errorf("defaults: buffer.path %q, web.listen_address %q", cfg.Buffer.Path, cfg.Web.ListenAddress)
	}
	if cfg.Replay.Order != ReplayFIFO || cfg.Replay.startJitter() != time.Duration(DefaultReplayStartJitter) {
		t.Errorf("defaults: replay.order %q, replay.start_jitter %v", cfg.Replay.Order, cfg.Replay.startJitter())
	}
}

// TestReplayOrderPerEndpoint: an endpoint's replay_order overrides
// replay.order, and start_jitter 0 means none, not the default.
func TestReplayOrderPerEndpoint(t *testing.T) {
	cfg, err := Parse([]byte("replay:\n  order: live_first\n  start_jitter: 0s\nremote_write:\n  - {name: vm, url: http://vm/api/v1/write}\n  - {name: prom, url: http://prom/api/v1/write, replay_order: fifo}\n"))
	if err != nil {
		t.Fatal(err)
	}
	if err := cfg.Finalize(); err != nil {
		t.Fatal(err)
	}
	if got := cfg.Replay.orderOf(cfg.RemoteWrite[0]); got != ReplayLiveFirst {
		t.Errorf("vm replays %s, want replay.order live_first", got)
	}
	if got := cfg.Replay.orderOf(cfg.RemoteWrite[1]); got != ReplayFIFO {
		t.Errorf("prom replays %s, want its replay_order fifo", got)
	}
	if got := cfg.Replay.startJitter(); got != 0 {
		t.Errorf("start_jitter 0s: %v, want none", got)
	}
}

func TestConfigErrorsNameFieldAndLine(t *testing.T) {
	cases := []struct {
		name, yaml string
		want       []string
	}{
		{"unknown key", "global:\n  scrape_interval: 5s\n  scrap_timeout: 1s\n", []string{"line 3", "scrap_timeout"}},
		{"unknown top-level key", "targets: []\nremote_writes: []\n", []string{"line 2", "remote_writes"}},
		{"bad redis URL", "targets:\n  - addr: redis://ok:6379\n  - addr: http://nope:1\n", []string{"line 3", "targets[1]", "unsupported scheme"}},
		{"bad port", "targets:\n  - addr: redis://h:99999\n", []string{"line 2", "targets[0]", "bad port"}},
		{"remote write scheme", "remote_write:\n  - url: ftp://x/y\n", []string{"line 2", "remote_write[0]", "scheme"}},
		{"remote write no url", "remote_write:\n  - name: x\n", []string{"remote_write[0]", "url"}},
		{"timeout over interval", "global:\n  scrape_interval: 5s\n  scrape_timeout: 6s\n", []string{"global.scrape_timeout", "line 3"}},
		{"duplicate instance", "targets:\n  - addr: redis://a:1\n  - addr: redis://a:1\n", []string{"targets[1]", "also targets[0]"}},
		{"reserved header", "remote_write:\n  - url: http://x/y\n    headers: {Content-Type: text/plain}\n", []string{"remote_write[0]", "Content-Type"}},
		{"bad label", "global:\n  external_labels: {\"bad-name\": x}\n", []string{"global.external_labels", "bad-name"}},
		{"endpoints sharing a file", "remote_write:\n  - {name: a b, url: http://x/y}\n  - {name: a_b, url: http://z/y}\n", []string{"remote_write[1]", "share its buffer file"}},
		{"reserved endpoint name", "remote_write:\n  - {name: local, url: http://x/y}\n", []string{"remote_write[0].name", "reserved"}},
		{"bad replay order", "replay:\n  order: newest\n", []string{"replay.order", "newest", "live_first"}},
		{"bad endpoint replay order", "remote_write:\n  - {url: http://x/y, replay_order: lifo}\n", []string{"remote_write[0].replay_order", "lifo"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			cfg, err := Parse([]byte(c.yaml))
			if err == nil {
				err = cfg.Finalize()
			}
			if err == nil {
				t.Fatal("want an error")
			}
			for _, w := range c.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not mention %q", err, w)
				}
			}
		})
	}
}

func TestFieldErrorUnwraps(t *testing.T) {
	cfg, err := Parse([]byte("global:\n  scrape_interval: 5s\n  scrape_timeout: 10s\n"))
	if err != nil {
		t.Fatal(err)
	}
	err = cfg.Finalize()
	var fe *FieldError
	if !errors.As(err, &fe) || fe.Path != "global.scrape_timeout" || fe.Line != 3 {
		t.Fatalf("want FieldError for global.scrape_timeout at line 3, got %v", err)
	}
}

func TestStringRedactsSecrets(t *testing.T) {
	const canary = "s3cr3t-canary"
	yml := `
targets:
  - addr: redis://user:` + canary + `@127.0.0.1:6379
  - addr: redis://127.0.0.1:6380
    password: ` + canary + `
remote_write:
  - url: https://u:` + canary + `@example.net/api/v1/write
    basic_auth: {username: u, password: ` + canary + `}
`
	cfg, err := Parse([]byte(yml))
	if err != nil {
		t.Fatal(err)
	}
	if err := cfg.Finalize(); err != nil {
		t.Fatal(err)
	}
	out := cfg.String()
	if strings.Contains(out, canary) {
		t.Fatalf("effective config leaks a secret:\n%s", out)
	}
	if !strings.Contains(out, "<secret>") || !strings.Contains(out, "xxxxx") {
		t.Errorf("want redaction markers in:\n%s", out)
	}
	// The printed config must itself be a valid config.
	again, err := Parse([]byte(out))
	if err != nil {
		t.Fatalf("printed config does not parse: %v\n%s", err, out)
	}
	if got := time.Duration(again.Global.ScrapeInterval); got != time.Duration(DefaultScrapeInterval) {
		t.Errorf("round trip scrape_interval = %s", got)
	}
}

func TestRelativePathsFollowConfigFile(t *testing.T) {
	dir := t.TempDir()
	f := filepath.Join(dir, "r.yml")
	if err := os.WriteFile(f, []byte("buffer: {path: buf}\ntargets:\n  - addr: redis://h:1\n    password_file: pw\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, err := LoadFile(f)
	if err != nil {
		t.Fatal(err)
	}
	if want := filepath.Join(dir, "buf"); cfg.Buffer.Path != want {
		t.Errorf("buffer.path = %q, want %q", cfg.Buffer.Path, want)
	}
	if want := filepath.Join(dir, "pw"); cfg.Targets[0].PasswordFile != want {
		t.Errorf("password_file = %q, want %q", cfg.Targets[0].PasswordFile, want)
	}
}

func TestInsecureTLSIsListed(t *testing.T) {
	cfg, err := Parse([]byte(`
targets:
  - addr: rediss://h:1
    tls: {insecure_skip_verify: true}
  - addr: rediss://h:2
remote_write:
  - url: https://r/api/v1/write
    tls_config: {insecure_skip_verify: true}
`))
	if err != nil {
		t.Fatal(err)
	}
	got := cfg.insecureTLS()
	if len(got) != 2 || got[0] != "targets[0].tls" || got[1] != "remote_write[0].tls_config" {
		t.Errorf("insecureTLS = %q", got)
	}
}
