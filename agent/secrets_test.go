package agent

import (
	"bytes"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/common/config"

	"github.com/redwire/redwire/internal/harness"
	"github.com/redwire/redwire/sources/discovery"
	"github.com/redwire/redwire/sources/redis"
)

// canary is a secret that must never show up anywhere.
const canary = "canary-Secret-9f3b"

// TestSecretsNeverLeak runs the agent with the canary as every kind of
// secret it knows: a Redis password in a URL, in password and in
// password_file, a wrong one (so auth errors are logged), a sentinel
// password and remote-write basic auth. Then it greps every output for
// the canary: the debug log, /metrics, the JSON API, the printed config,
// what was pushed to the receiver and the buffer files.
func TestSecretsNeverLeak(t *testing.T) {
	t.Parallel()
	good := harness.StartRedis(t, harness.WithPassword(canary))
	wrong := harness.StartRedis(t, harness.WithPassword("other-password"))
	prom := harness.StartPrometheus(t)
	proxy := harness.StartProxy(t, prom.URL())
	pwFile := filepath.Join(t.TempDir(), "pw")
	if err := os.WriteFile(pwFile, []byte(canary+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg := editedTestConfig(t, proxy.URL()+"/api/v1/write", func(c *Config) {
		c.RemoteWrite[0].HTTPClientConfig.BasicAuth = &config.BasicAuth{Username: "u", Password: config.Secret(canary)}
		c.Sentinels = []discovery.SentinelConfig{{MasterName: "m", Addrs: []string{fmt.Sprintf("redis://u:%s@127.0.0.1:%d", canary, harness.FreePort(t))},
			SentinelPassword: canary, Password: canary}}
	},
		redis.TargetConfig{Name: "url", Addr: strings.Replace(good.URL(), "redis://", "redis://:"+canary+"@", 1)},
		redis.TargetConfig{Name: "field", Addr: "redis://" + good.Addr(), Password: canary},
		redis.TargetConfig{Name: "file", Addr: "redis://" + good.Addr(), PasswordFile: pwFile},
		redis.TargetConfig{Name: "wrong", Addr: "redis://" + wrong.Addr(), Password: canary},
	)
	logs := &syncBuffer{}
	a := runAgent(t, cfg, func(o *Options) {
		o.Logger = slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	})
	queryOne(t, prom, `redis_up{instance="file"} == 1`, nil)
	harness.WaitFor(t, 30*time.Second, "the wrong password to be logged", func() (bool, error) {
		return logs.Count("target down", "wrong") > 0, nil
	})

	outputs := map[string]string{
		"log":          logs.String(),
		"/metrics":     metricsText(t, cfg),
		"check-config": cfg.String(),
	}
	for _, path := range []string{"/api/v1/targets", "/api/v1/status", "/"} {
		resp, err := http.Get("http://" + cfg.Web.ListenAddress + path)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		outputs[path] = string(body)
	}
	var pushed bytes.Buffer
	for _, req := range proxy.Requests() {
		if req.Write != nil {
			fmt.Fprintln(&pushed, req.Write.String())
		}
	}
	outputs["pushed samples"] = pushed.String()
	a.stop()
	files, _ := filepath.Glob(filepath.Join(cfg.Buffer.Path, "*"))
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err == nil {
			outputs["buffer file "+filepath.Base(f)] = string(data)
		}
	}
	for where, out := range outputs {
		if out == "" {
			t.Errorf("%s: empty, nothing was checked", where)
		}
		if strings.Contains(out, canary) {
			i := strings.Index(out, canary)
			t.Errorf("%s shows the secret: …%s…", where, out[max(0, i-80):min(len(out), i+40)])
		}
	}
}
