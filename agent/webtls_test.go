package agent

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/redwire/redwire/internal/harness"
	"github.com/redwire/redwire/sources/redis"
)

// scrapePassHash is bcrypt("scrape-pass"), as exporter-toolkit's
// basic_auth_users wants it.
const scrapePassHash = "$2a$10$6q0z.1/8R9ywZNUryDm.9.59Uzg1UJdK9hJxNWSA9h28HbqjXSUim"

// TestWebTLSAndBasicAuth serves /metrics, the API and /-/reload with TLS
// and basic auth from a --web.config.file: nothing answers without both.
func TestWebTLSAndBasicAuth(t *testing.T) {
	r := harness.StartRedis(t)
	dir := t.TempDir()
	ca := harness.NewTestCA(t, "redwire web CA")
	certFile, keyFile := ca.Issue(t, dir, "web", x509.ExtKeyUsageServerAuth)
	webFile := filepath.Join(dir, "web.yml")
	harness.WriteFile(t, webFile, fmt.Appendf(nil, "tls_server_config:\n  cert_file: %s\n  key_file: %s\nbasic_auth_users:\n  prom: %s\n",
		certFile, keyFile, scrapePassHash))
	cfg := editedTestConfig(t, "", func(c *Config) { c.Web.ConfigFile = webFile }, redis.TargetConfig{Addr: r.URL()})

	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	logs := &syncBuffer{}
	go func() {
		done <- Run(ctx, cfg, Options{Logger: slog.New(slog.NewTextHandler(logs, nil)), Registry: prometheus.NewRegistry(),
			Reload: func() (*Config, error) { return cfg, nil }})
	}()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("agent: %v", err)
		}
		if t.Failed() {
			t.Logf("agent log:\n%s", logs.String())
		}
	}()

	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(ca.PEM)
	client := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}}
	base := "https://" + cfg.Web.ListenAddress
	do := func(method, path, user, pass string) (int, string) {
		req, err := http.NewRequest(method, base+path, nil)
		if err != nil {
			t.Fatal(err)
		}
		if user != "" {
			req.SetBasicAuth(user, pass)
		}
		resp, err := client.Do(req)
		if err != nil {
			return 0, err.Error()
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	harness.WaitFor(t, 30*time.Second, "agent ready over TLS with auth", func() (bool, error) {
		code, body := do(http.MethodGet, "/-/ready", "prom", "scrape-pass")
		return code == http.StatusOK, fmt.Errorf("%d %s", code, body)
	})

	for path, want := range map[string]string{"/metrics": "redwire_", "/api/v1/targets": r.Addr(), "/api/v1/status": "{"} {
		code, body := do(http.MethodGet, path, "prom", "scrape-pass")
		if code != http.StatusOK || !strings.Contains(body, want) {
			t.Errorf("GET %s with credentials: %d %.200s", path, code, body)
		}
		for _, cred := range [][2]string{{"", ""}, {"prom", "wrong"}, {"other", "scrape-pass"}} {
			if code, _ := do(http.MethodGet, path, cred[0], cred[1]); code != http.StatusUnauthorized {
				t.Errorf("GET %s as %q/%q: %d, want 401", path, cred[0], cred[1], code)
			}
		}
	}
	if code, _ := do(http.MethodPost, "/-/reload", "", ""); code != http.StatusUnauthorized {
		t.Errorf("POST /-/reload without credentials: %d, want 401", code)
	}
	if code, body := do(http.MethodPost, "/-/reload", "prom", "scrape-pass"); code != http.StatusOK {
		t.Errorf("POST /-/reload with credentials: %d %s", code, body)
	}
	// Plain HTTP gets no metrics.
	resp, err := http.Get("http://" + cfg.Web.ListenAddress + "/metrics")
	if err == nil {
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode == http.StatusOK || strings.Contains(string(b), "redwire_") {
			t.Errorf("plain HTTP /metrics: %d %.200s", resp.StatusCode, b)
		}
	}
}
