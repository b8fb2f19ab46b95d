package agent

import (
	"context"
	"log/slog"
	"net/http"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
)

// TestPprofOnlyWhenEnabled: /debug/pprof/ answers only with
// web.enable_pprof, since a profile shows what the agent does to anyone
// who reaches the port.
func TestPprofOnlyWhenEnabled(t *testing.T) {
	for _, enabled := range []bool{false, true} {
		w, err := startWeb(WebConfig{ListenAddress: "127.0.0.1:0", EnablePprof: enabled}, prometheus.NewRegistry(), slog.New(slog.DiscardHandler))
		if err != nil {
			t.Fatal(err)
		}
		resp, err := http.Get("http://" + w.addr() + "/debug/pprof/cmdline")
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if want := map[bool]int{false: http.StatusNotFound, true: http.StatusOK}[enabled]; resp.StatusCode != want {
			t.Errorf("enable_pprof %v: /debug/pprof/cmdline answers %d, want %d", enabled, resp.StatusCode, want)
		}
		if err := w.stop(context.Background()); err != nil {
			t.Fatal(err)
		}
	}
}
