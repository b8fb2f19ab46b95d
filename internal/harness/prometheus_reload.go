package harness

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/prometheus/common/model"
)

// SetOutOfOrderWindow gives the running server storage.tsdb.
// out_of_order_time_window d, as an operator would: it rewrites the
// config file and sends SIGHUP, and returns once the server's loaded
// config shows the window. Prometheus applies the window to its TSDB on
// reload, without a restart.
func (p *Prometheus) SetOutOfOrderWindow(ctx context.Context, d time.Duration) error {
	config := filepath.Join(p.srv.dir, "prometheus.yml")
	if err := os.WriteFile(config, []byte(PrometheusOptions{OutOfOrderWindow: d}.config()), 0o644); err != nil {
		return fmt.Errorf("prometheus config: %w", err)
	}
	pid := p.srv.pid()
	if pid == 0 {
		return fmt.Errorf("prometheus %s: not running", p.URL())
	}
	if err := syscall.Kill(pid, syscall.SIGHUP); err != nil {
		return fmt.Errorf("prometheus %s: SIGHUP: %w", p.URL(), err)
	}
	want := "out_of_order_time_window: " + model.Duration(d).String()
	for {
		body, err := p.api.fetch(ctx, p.URL()+"/api/v1/status/config")
		if err == nil {
			var c struct {
				Data struct {
					YAML string `json:"yaml"`
				} `json:"data"`
			}
			if json.Unmarshal(body, &c) == nil && strings.Contains(c.Data.YAML, want) {
				return nil
			}
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("prometheus %s: the reloaded config never showed %q: %w", p.URL(), want, ctx.Err())
		case <-time.After(50 * time.Millisecond):
		}
	}
}
