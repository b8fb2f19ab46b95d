package main

import (
	"context"
	"encoding/json"
	"fmt"
	"image/png"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/common/model"
)

const target = "127.0.0.1:6379"

// fakeRedwire serves /metrics with the given counters of the Redis
// target, beside those of redwire's own loop (which the demo ignores).
func fakeRedwire(t *testing.T, taken, scrapes, dropped int) *httptest.Server {
	t.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/metrics" {
			http.NotFound(w, r)
			return
		}
		fmt.Fprintf(w, `# TYPE redwire_samples_scraped_total counter
redwire_samples_scraped_total{target=%[1]q} %[2]d
redwire_samples_scraped_total{target="redwire"} 777
# TYPE redwire_target_scrapes_total counter
redwire_target_scrapes_total{target=%[1]q} %[3]d
redwire_target_scrapes_total{target="redwire"} 7
# TYPE redwire_samples_dropped_total counter
redwire_samples_dropped_total{endpoint="e",reason="rejected"} %[4]d
redwire_samples_dropped_total{endpoint="e",reason="too_old"} 0
# TYPE redwire_replay_samples_total counter
redwire_replay_samples_total{endpoint="e"} 1200
`, target, taken, scrapes, dropped)
	}))
	t.Cleanup(srv.Close)
	return srv
}

// fakeReceiver answers /api/v1/query with the target's raw samples: a
// redis_up and a redis_connected_clients sample at each stamp.
func fakeReceiver(t *testing.T, ts []time.Time) *httptest.Server {
	t.Helper()
	var up, clients model.SampleStream
	up.Metric = model.Metric{"__name__": "redis_up", "job": "redis", "instance": target}
	clients.Metric = model.Metric{"__name__": "redis_connected_clients", "job": "redis", "instance": target}
	for _, s := range ts {
		up.Values = append(up.Values, model.SamplePair{Timestamp: model.TimeFromUnixNano(s.UnixNano()), Value: 1})
		clients.Values = append(clients.Values, model.SamplePair{Timestamp: model.TimeFromUnixNano(s.UnixNano()), Value: 3})
	}
	body, err := json.Marshal(map[string]any{"status": "success", "data": map[string]any{
		"resultType": "matrix", "result": model.Matrix{&up, &clients}}})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/api/v1/query" || !strings.Contains(r.URL.Query().Get("query"), `instance="`+target+`"`) {
			http.Error(w, "unexpected request "+r.URL.String(), http.StatusBadRequest)
			return
		}
		w.Write(body)
	}))
	t.Cleanup(srv.Close)
	return srv
}

func runReport(t *testing.T, rw, recv *httptest.Server, pngPath string) (string, int) {
	t.Helper()
	var out, errs strings.Builder
	code := run(context.Background(), []string{"report",
		"-redwire", rw.URL, "-receiver", recv.URL,
		"-from", fmt.Sprint(t0.Add(-time.Second).UnixMilli()),
		"-down-from", fmt.Sprint(t0.Add(5500 * time.Millisecond).UnixMilli()),
		"-down-to", fmt.Sprint(t0.Add(15500 * time.Millisecond).UnixMilli()),
		"-png", pngPath, "-timeout", "0s",
	}, &out, &errs)
	t.Logf("stdout:\n%s\nstderr:\n%s", out.String(), errs.String())
	return out.String(), code
}

func lastLine(s string) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	return lines[len(lines)-1]
}

func TestReportNothingLost(t *testing.T) {
	// 20 scrapes of 2 samples counted; the receiver holds them and one more.
	rw, recv := fakeRedwire(t, 40, 20, 0), fakeReceiver(t, stamps(21, 2*time.Millisecond))
	pngPath := filepath.Join(t.TempDir(), "timeline.png")
	out, code := runReport(t, rw, recv, pngPath)
	if code != 0 {
		t.Errorf("exit %d, want 0", code)
	}
	if got, want := lastLine(out), "40 taken, 40 delivered, 0 lost"; got != want {
		t.Errorf("last line %q, want %q", got, want)
	}
	if !strings.Contains(out, strings.Repeat(cellPresent, 21)) {
		t.Error("the timeline does not show 21 scrapes in a row")
	}
	assertPNG(t, pngPath)
}

func TestReportLostScrapeFails(t *testing.T) {
	rw, recv := fakeRedwire(t, 40, 20, 2), fakeReceiver(t, stamps(21, 0, 8))
	out, code := runReport(t, rw, recv, filepath.Join(t.TempDir(), "timeline.png"))
	if code != 1 {
		t.Errorf("exit %d, want 1", code)
	}
	if got, want := lastLine(out), "40 taken, 38 delivered, 2 lost"; got != want {
		t.Errorf("last line %q, want %q", got, want)
	}
	for _, want := range []string{"1 of those scrapes have no sample", "redwire counted 2 samples dropped", cellMissing} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q", want)
		}
	}
}

func TestReportWaitsNoLongerThanItsTimeout(t *testing.T) {
	// The receiver holds only 20 of the 21 counted scrapes and never gets
	// the 21st: the report gives up after -timeout (0 here) and counts
	// the rest lost.
	rw, recv := fakeRedwire(t, 42, 21, 0), fakeReceiver(t, stamps(20, 0))
	out, code := runReport(t, rw, recv, filepath.Join(t.TempDir(), "timeline.png"))
	if code != 1 {
		t.Errorf("exit %d, want 1", code)
	}
	if got, want := lastLine(out), "42 taken, 40 delivered, 2 lost"; got != want {
		t.Errorf("last line %q, want %q", got, want)
	}
}

func assertPNG(t *testing.T, path string) {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatalf("no PNG: %v", err)
	}
	defer f.Close()
	img, err := png.Decode(f)
	if err != nil {
		t.Fatalf("%s is no PNG: %v", path, err)
	}
	if b := img.Bounds(); b.Dx() < 800 || b.Dy() < 300 {
		t.Errorf("%s is %dx%d, want a picture at least 800x300", path, b.Dx(), b.Dy())
	}
}

func TestParseCountersIgnoresRedwiresOwnLoop(t *testing.T) {
	body := []byte(`redwire_samples_scraped_total{target="a:1"} 500
redwire_samples_scraped_total{target="redwire"} 70
redwire_target_scrapes_total{target="a:1"} 5
redwire_target_scrapes_total{target="redwire"} 5
redwire_samples_dropped_total{endpoint="x",reason="rejected"} 3
redwire_samples_dropped_total{endpoint="y",reason="too_old"} 4
redwire_replay_samples_total{endpoint="x"} 9
`)
	got, err := parseCounters(body)
	if err != nil {
		t.Fatal(err)
	}
	want := counters{Target: "a:1", Taken: 500, Scrapes: 5, Dropped: 7, Replayed: 9}
	if got != want {
		t.Errorf("got %+v, want %+v", got, want)
	}
}

func TestParseCountersWantsOneRedisTarget(t *testing.T) {
	body := []byte(`redwire_samples_scraped_total{target="a:1"} 500
redwire_samples_scraped_total{target="b:1"} 500
`)
	if _, err := parseCounters(body); err == nil || !strings.Contains(err.Error(), "have 2") {
		t.Errorf("two Redis targets: got error %v, want one saying so", err)
	}
}

func TestStatusDescribesEachMode(t *testing.T) {
	lag, drain := 5.04, 3.96
	oldest := time.Date(2026, 5, 1, 12, 0, 7, 0, time.Local)
	for _, c := range []struct {
		e    endpointStatus
		mode string
		says []string
	}{
		{endpointStatus{Degraded: true, BacklogSamples: 12345, BacklogBytes: 200 << 10, Oldest: oldest, DeliveryLag: &lag}, modeDegraded,
			[]string{"degraded", "12,345 samples (200 KiB) kept on disk", "oldest taken at 12:00:07", "5.0 s old"}},
		{endpointStatus{BacklogSamples: 900, BacklogBytes: 3 << 20, BacklogDrain: &drain}, modeReplaying,
			[]string{"replaying", "900 samples (3.0 MiB) still on disk", "about 4.0 s to go"}},
		{endpointStatus{MemorySamples: 410, DeliveryLag: &lag}, modeNormal,
			[]string{"normal: nothing on disk", "410 samples in memory"}},
	} {
		if got := c.e.mode(); got != c.mode {
			t.Errorf("%+v: mode %q, want %q", c.e, got, c.mode)
		}
		s := c.e.describe()
		for _, want := range c.says {
			if !strings.Contains(s, want) {
				t.Errorf("%s: %q lacks %q", c.mode, s, want)
			}
		}
	}
}

func TestRunRejectsUnknownCommand(t *testing.T) {
	var out, errs strings.Builder
	if code := run(context.Background(), []string{"plot"}, &out, &errs); code != 2 {
		t.Errorf("exit %d, want 2", code)
	}
	if !strings.Contains(errs.String(), `unknown command "plot"`) {
		t.Errorf("stderr %q does not name the command", errs.String())
	}
}

func TestGrouped(t *testing.T) {
	for n, want := range map[int64]string{0: "0", 999: "999", 1000: "1,000", 47246: "47,246", 1234567: "1,234,567", -1500: "-1,500"} {
		if got := grouped(n); got != want {
			t.Errorf("grouped(%d) = %q, want %q", n, got, want)
		}
	}
}
