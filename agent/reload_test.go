package agent

import (
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/redwire/redwire/buffer"
	"github.com/redwire/redwire/internal/harness"
	"github.com/redwire/redwire/sources/redis"
)

// reloadConfig is the YAML of the reload test: one endpoint named main,
// thinning off, a replay rate limit so a backlog drains for a while.
func reloadConfig(listen, bufDir, writeURL, extra string, replayRate int, targets ...*harness.Redis) string {
	var b strings.Builder
	fmt.Fprintf(&b, "global: {scrape_interval: 1s}\ndegraded: {interval: 1s}\nself_metrics: {enabled: false}\n")
	fmt.Fprintf(&b, "web: {listen_address: %q}\nbuffer: {path: %q}\nreplay: {max_samples_per_second: %d}\n", listen, bufDir, replayRate)
	b.WriteString("targets:\n")
	for _, r := range targets {
		fmt.Fprintf(&b, "  - addr: %s\n", r.URL())
	}
	fmt.Fprintf(&b, "remote_write:\n  - name: main\n    url: %s\n%s", writeURL, extra)
	b.WriteString("    queue_config: {batch_send_deadline: 100ms, min_backoff: 50ms, max_backoff: 200ms, max_samples_per_send: 200}\n")
	return b.String()
}

// configFile is a config file in a temp dir for reload tests: write
// replaces its content, load reads it as the agent's Reload does.
type configFile struct {
	t      *testing.T
	path   string
	listen string // web.listen_address, fixed across reloads
	bufDir string
}

func newConfigFile(t *testing.T) *configFile {
	dir := t.TempDir()
	return &configFile{t: t, path: filepath.Join(dir, "redwire.yml"),
		listen: fmt.Sprintf("127.0.0.1:%d", harness.FreePort(t)), bufDir: filepath.Join(dir, "data")}
}

func (f *configFile) write(content string) {
	f.t.Helper()
	if err := os.WriteFile(f.path, []byte(content), 0o600); err != nil {
		f.t.Fatal(err)
	}
}

func (f *configFile) load() (*Config, error) {
	c, err := LoadFile(f.path)
	if err != nil {
		return nil, err
	}
	return c, c.Finalize()
}

// mustLoad is load for the first config, which must be valid.
func (f *configFile) mustLoad() *Config {
	f.t.Helper()
	cfg, err := f.load()
	if err != nil {
		f.t.Fatal(err)
	}
	return cfg
}

func postReload(t *testing.T, cfg *Config) (int, string) {
	t.Helper()
	resp, err := http.Post("http://"+cfg.Web.ListenAddress+"/-/reload", "", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(body)
}

// TestReloadWhileDrainingLosesNothing reloads the config while a backlog
// drains into a real Prometheus: a new target, a new header (so the
// endpoint's sender is replaced mid-drain) and a new replay rate. Every
// scrape taken must arrive, in order; then an invalid config is refused
// whole and the agent keeps running on the old one.
func TestReloadWhileDrainingLosesNothing(t *testing.T) {
	t.Parallel()
	r1, r2 := harness.StartRedis(t), harness.StartRedis(t)
	prom := harness.StartPrometheus(t)
	f := newConfigFile(t)
	write := func(extra string, rate int, rs ...*harness.Redis) {
		f.write(reloadConfig(f.listen, f.bufDir, prom.WriteURL(), extra, rate, rs...))
	}
	write("", 400, r1)
	cfg := f.mustLoad()
	a := runAgent(t, cfg, func(o *Options) { o.Reload = f.load })
	ep := map[string]string{"endpoint": "main"}

	queryOne(t, prom, fmt.Sprintf(`redis_up{instance=%q}`, r1.Addr()), nil)
	beginOutage(t, a, prom, cfg, r1.Addr(), 8)
	prom.Start()
	harness.WaitFor(t, time.Minute, "the backlog to start draining", func() (bool, error) {
		return gathered(t, a.reg, "redwire_replay_samples_total", ep) > 0, nil
	})
	if gathered(t, a.reg, "redwire_buffer_batches", ep) == 0 {
		t.Fatal("the backlog drained before the reload: nothing tested (raise the outage or lower the rate)")
	}

	write("    headers: {X-Reloaded: \"1\"}\n", 2000, r1, r2)
	if code, body := postReload(t, cfg); code != http.StatusOK {
		t.Fatalf("reload: %d %s", code, body)
	}
	if gathered(t, a.reg, "redwire_config_last_reload_successful", nil) != 1 {
		t.Error("redwire_config_last_reload_successful != 1 after a good reload")
	}
	queryOne(t, prom, fmt.Sprintf(`redis_up{instance=%q}`, r2.Addr()), nil)
	harness.WaitFor(t, 2*time.Minute, "backlog replayed and normal mode", func() (bool, error) {
		return gathered(t, a.reg, "redwire_degraded", ep) == 0 && gathered(t, a.reg, "redwire_buffer_batches", ep) == 0, nil
	})

	// An invalid config is refused whole, naming the field.
	write("    queue_confg: {}\n", 2000, r1, r2)
	code, body := postReload(t, cfg)
	if code != http.StatusInternalServerError || !strings.Contains(body, "queue_confg") {
		t.Errorf("invalid reload: %d %q, want 500 naming queue_confg", code, body)
	}
	if gathered(t, a.reg, "redwire_config_last_reload_successful", nil) != 0 {
		t.Error("redwire_config_last_reload_successful != 0 after a refused reload")
	}
	before := gathered(t, a.reg, "redwire_target_scrapes_total", map[string]string{"target": r2.Addr()})
	harness.WaitFor(t, 30*time.Second, "scraping to go on under the old config", func() (bool, error) {
		return gathered(t, a.reg, "redwire_target_scrapes_total", map[string]string{"target": r2.Addr()}) > before, nil
	})

	a.stop()
	for _, r := range []*harness.Redis{r1, r2} {
		taken := int(gathered(t, a.reg, "redwire_target_scrapes_total", map[string]string{"target": r.Addr()}))
		if got := delivered(t, prom, r.Addr()); got != taken {
			t.Errorf("%s: receiver has %d redis_up samples, agent took %d scrapes", r.Addr(), got, taken)
		}
	}
	if v := gathered(t, a.reg, "redwire_samples_dropped_total", nil); v != 0 {
		t.Errorf("dropped %v samples", v)
	}
	assertNoRejections(t, prom)
	if a.logs.Count("sender replaced, buffer kept") != 1 {
		t.Error("the reload did not replace the endpoint's sender: the header change was not applied")
	}
}

// TestAPITargetsAndStatus: tooling can ask the agent what it scrapes and
// how its endpoints are doing, and never sees a password.
func TestAPITargetsAndStatus(t *testing.T) {
	t.Parallel()
	r := harness.StartRedis(t, harness.WithPassword("canary-secret"))
	prom := harness.StartPrometheus(t)
	cfg := testConfig(t, prom.WriteURL(), redis.TargetConfig{Addr: r.URL()})
	runAgent(t, cfg)
	get := func(path string) string {
		t.Helper()
		resp, err := http.Get("http://" + cfg.Web.ListenAddress + path)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != http.StatusOK || resp.Header.Get("Content-Type") != "application/json" {
			t.Fatalf("GET %s: %d %s", path, resp.StatusCode, resp.Header.Get("Content-Type"))
		}
		return string(body)
	}
	harness.WaitFor(t, 30*time.Second, "the target to be reported up", func() (bool, error) {
		body := get("/api/v1/targets")
		return strings.Contains(body, `"instance": "`+r.Addr()+`"`) && strings.Contains(body, `"up": true`), nil
	})
	status := get("/api/v1/status")
	for _, want := range []string{`"version": "test"`, `"degraded": false`, `"name": "` + cfg.RemoteWrite[0].Label() + `"`} {
		if !strings.Contains(status, want) {
			t.Errorf("status lacks %s:\n%s", want, status)
		}
	}
	if body := get("/api/v1/targets") + status; strings.Contains(body, "canary-secret") {
		t.Errorf("the API shows a password:\n%s", body)
	}
}

// TestReloadURLChangeKeepsBacklog: an unnamed endpoint (its buffer file is
// named after its URL) gets a new URL while it holds a backlog. The
// backlog follows it: the file is renamed and everything is delivered
// through the new URL.
func TestReloadURLChangeKeepsBacklog(t *testing.T) {
	t.Parallel()
	r := harness.StartRedis(t)
	prom := harness.StartPrometheus(t)
	proxy := harness.StartProxy(t, prom.URL())
	f := newConfigFile(t)
	write := func(url string) {
		f.write(strings.Replace(reloadConfig(f.listen, f.bufDir, url, "", 0, r), "  - name: main\n    url:", "  - url:", 1))
	}
	write(prom.WriteURL())
	cfg := f.mustLoad()
	a := runAgent(t, cfg, func(o *Options) { o.Reload = f.load })
	oldEP := map[string]string{"endpoint": cfg.RemoteWrite[0].Label()}
	queryOne(t, prom, fmt.Sprintf(`redis_up{instance=%q}`, r.Addr()), nil)
	beginOutage(t, a, prom, cfg, r.Addr(), 5)
	backlog := gathered(t, a.reg, "redwire_buffer_samples", oldEP)
	if backlog == 0 {
		t.Fatal("no backlog to move")
	}

	newURL := proxy.URL() + "/api/v1/write"
	write(newURL)
	// Reloaded while the receiver is still away: were it back first, the
	// old sender could have the backlog's next request in flight when the
	// reload stops it, and a request cancelled after the receiver stored
	// it comes again from the new sender, refused as out of order.
	if code, body := postReload(t, cfg); code != http.StatusOK {
		t.Fatalf("reload: %d %s", code, body)
	}
	prom.Start()
	newCfg := f.mustLoad()
	newEP := map[string]string{"endpoint": newCfg.RemoteWrite[0].Label()}
	harness.WaitFor(t, 2*time.Minute, "the moved backlog to drain through the new URL", func() (bool, error) {
		return gathered(t, a.reg, "redwire_replay_samples_total", newEP) > 0 &&
			gathered(t, a.reg, "redwire_buffer_batches", newEP) == 0 && gathered(t, a.reg, "redwire_degraded", newEP) == 0, nil
	})
	if _, err := os.Stat(buffer.EndpointFile(f.bufDir, newCfg.RemoteWrite[0].Label()).Path); err != nil {
		t.Errorf("the buffer file was not renamed to the new URL's name: %v", err)
	}
	a.stop()
	taken := int(gathered(t, a.reg, "redwire_target_scrapes_total", map[string]string{"target": r.Addr()}))
	if got := delivered(t, prom, r.Addr()); got != taken {
		t.Errorf("receiver has %d redis_up samples, agent took %d scrapes", got, taken)
	}
	assertNoRejections(t, prom)
}

// TestReloadTriggers: SIGHUP (Options.ReloadSignal) reloads, and with
// WatchConfig so does writing the config file.
func TestReloadTriggers(t *testing.T) {
	t.Parallel()
	r1, r2 := harness.StartRedis(t), harness.StartRedis(t)
	prom := harness.StartPrometheus(t)
	for _, watch := range []bool{false, true} {
		t.Run(fmt.Sprintf("watch=%v", watch), func(t *testing.T) {
			f := newConfigFile(t)
			write := func(rs ...*harness.Redis) {
				f.write(reloadConfig(f.listen, f.bufDir, prom.WriteURL(), "", 0, rs...))
			}
			write(r1)
			cfg := f.mustLoad()
			hup := make(chan os.Signal, 1)
			a := runAgent(t, cfg, func(o *Options) {
				o.Reload, o.ReloadSignal, o.ConfigFile, o.WatchConfig = f.load, hup, f.path, watch
			})
			write(r1, r2)
			if !watch {
				hup <- syscall.SIGHUP
			}
			r2Scrapes := map[string]string{"target": r2.Addr()}
			harness.WaitFor(t, 30*time.Second, "the added target to be scraped", func() (bool, error) {
				return gathered(t, a.reg, "redwire_target_scrapes_total", r2Scrapes) > 0, nil
			})
			if watch && a.logs.Count("config file changed") == 0 {
				t.Error("the reload was not triggered by the file watch")
			}
			if !watch && a.logs.Count("SIGHUP") != 1 {
				t.Error("the reload was not triggered by SIGHUP")
			}
		})
	}
}
