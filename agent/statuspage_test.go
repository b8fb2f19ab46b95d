package agent

import (
	"encoding/json"
	"fmt"
	"html/template"
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

// statusRig is a running agent with a live Redis target and a dead one
// (a port nobody listens on), writing to a real Prometheus through the
// fault proxy, taken through one receiver outage and its replay: every
// part of the status page has something to show.
type statusRig struct {
	cfg        *Config
	base       string // http://host:port of the agent
	live, dead string // the targets' instances
	endpoint   string
}

func startStatusRig(t *testing.T) *statusRig {
	t.Helper()
	r := harness.StartRedis(t)
	prom := harness.StartPrometheus(t)
	proxy := harness.StartProxy(t, prom.URL())
	dead := fmt.Sprintf("127.0.0.1:%d", harness.FreePort(t))
	cfg := testConfig(t, proxy.URL()+"/api/v1/write",
		redis.TargetConfig{Addr: r.URL()}, redis.TargetConfig{Addr: "redis://" + dead})
	rig := &statusRig{cfg: cfg, base: "http://" + cfg.Web.ListenAddress, live: r.Addr(), dead: dead,
		endpoint: cfg.RemoteWrite[0].Label()}

	proxy.Fail(-1, http.StatusServiceUnavailable, nil, "down for the test")
	runAgent(t, cfg)
	harness.WaitFor(t, 30*time.Second, "the endpoint degraded", func() (bool, error) {
		e, err := rig.endpointStatus()
		return err == nil && e.Mode == "degraded", fmt.Errorf("%+v, %v", e, err)
	})
	proxy.Clear()
	harness.WaitFor(t, 60*time.Second, "the backlog replayed", func() (bool, error) {
		st, err := apiGet[status](rig.base + "/api/v1/status")
		return err == nil && len(st.RecentChanges) == 3 && st.RecentChanges[0].To == "normal", fmt.Errorf("%+v, %v", st, err)
	})
	harness.WaitFor(t, 30*time.Second, "both targets scraped", func() (bool, error) {
		ts, err := apiGet[[]targetInfo](rig.base + "/api/v1/targets")
		scraped := 0
		for _, ti := range ts {
			if !ti.LastSuccess.IsZero() || ti.LastError != "" {
				scraped++
			}
		}
		return err == nil && scraped == 2, fmt.Errorf("%+v, %v", ts, err)
	})
	return rig
}

// endpointStatus is the rig's endpoint in /api/v1/status.
func (r *statusRig) endpointStatus() (endpointStatus, error) {
	st, err := apiGet[status](r.base + "/api/v1/status")
	if err != nil {
		return endpointStatus{}, err
	}
	for _, e := range st.Endpoints {
		if e.Name == r.endpoint {
			return e, nil
		}
	}
	return endpointStatus{}, fmt.Errorf("endpoint %s not in %+v", r.endpoint, st.Endpoints)
}

// apiGet reads the data of one /api/v1 answer.
func apiGet[T any](url string) (T, error) {
	var answer struct {
		Status string `json:"status"`
		Data   T      `json:"data"`
	}
	resp, err := http.Get(url)
	if err != nil {
		return answer.Data, err
	}
	defer resp.Body.Close()
	if err := json.NewDecoder(resp.Body).Decode(&answer); err != nil {
		return answer.Data, fmt.Errorf("GET %s: %w", url, err)
	}
	if answer.Status != "success" {
		return answer.Data, fmt.Errorf("GET %s: status %q", url, answer.Status)
	}
	return answer.Data, nil
}

// getPage fetches a page of the agent and fails the test unless it
// answers 200 with HTML.
func getPage(t *testing.T, url string) string {
	t.Helper()
	body, ct := getTyped(t, url)
	if !strings.HasPrefix(ct, "text/html") {
		t.Fatalf("GET %s: %s, not HTML\n%s", url, ct, body)
	}
	return body
}

// TestStatusPageShowsWhatTheAPISays: after an outage of the receiver,
// /api/v1/status says where the endpoint stands and what changed, and
// /api/v1/targets each target's last error and success; the page at /
// names every target and the endpoint with those values, and links to
// the machine-readable paths.
func TestStatusPageShowsWhatTheAPISays(t *testing.T) {
	rig := startStatusRig(t)

	targets, err := apiGet[[]targetInfo](rig.base + "/api/v1/targets")
	if err != nil {
		t.Fatal(err)
	}
	st, err := apiGet[status](rig.base + "/api/v1/status")
	if err != nil {
		t.Fatal(err)
	}
	page := getPage(t, rig.base+"/")

	if len(targets) != 2 {
		t.Fatalf("/api/v1/targets lists %+v, want the live and the dead target", targets)
	}
	for _, ti := range targets {
		switch ti.Instance {
		case rig.live:
			if !ti.Up || ti.LastSuccess.IsZero() || ti.LastError != "" {
				t.Errorf("live target %+v: want up, a last success and no error", ti)
			}
		case rig.dead:
			if ti.Up || !ti.LastSuccess.IsZero() || !strings.Contains(ti.LastError, "connection refused") {
				t.Errorf("dead target %+v: want down, never a success, connection refused", ti)
			}
		default:
			t.Errorf("unexpected target %+v", ti)
		}
		if !strings.Contains(page, fmt.Sprintf(`<tr class="target" data-instance="%s">`, template.HTMLEscapeString(ti.Instance))) {
			t.Errorf("the page has no row for target %s", ti.Instance)
		}
		if ti.LastError != "" && !strings.Contains(page, template.HTMLEscapeString(ti.LastError)) {
			t.Errorf("the page does not show target %s's last error %q", ti.Instance, ti.LastError)
		}
	}

	if len(st.Endpoints) != 1 {
		t.Fatalf("/api/v1/status endpoints %+v, want one", st.Endpoints)
	}
	e := st.Endpoints[0]
	if e.Name != rig.endpoint || e.Mode != "normal" || e.Paused || e.LastSend.IsZero() || e.DeliveryLag == nil {
		t.Errorf("endpoint %+v: want %s, normal, not paused, a last send and a delivery lag", e, rig.endpoint)
	}
	if !strings.Contains(page, fmt.Sprintf(`<article class="endpoint" data-endpoint="%s">`, template.HTMLEscapeString(e.Name))) {
		t.Errorf("the page has no section for endpoint %s", e.Name)
	}

	want := [][2]string{{"replay", "normal"}, {"degraded", "replay"}, {"normal", "degraded"}} // newest first
	if len(st.RecentChanges) != len(want) {
		t.Fatalf("recent changes %+v, want %v", st.RecentChanges, want)
	}
	for i, ch := range st.RecentChanges {
		if ch.Endpoint != rig.endpoint || ch.From != want[i][0] || ch.To != want[i][1] {
			t.Errorf("recent change %d: %+v, want %s → %s", i, ch, want[i][0], want[i][1])
		}
		if row := fmt.Sprintf("%s → <strong>%s</strong>", ch.From, ch.To); !strings.Contains(page, row) {
			t.Errorf("the page does not show the change %s", row)
		}
	}
	if !strings.Contains(st.RecentChanges[2].Error, "503") || !strings.Contains(page, template.HTMLEscapeString(st.RecentChanges[2].Error)) {
		t.Errorf("going down: cause %q, want the 503, shown on the page", st.RecentChanges[2].Error)
	}

	for _, path := range []string{"/metrics", "/api/v1/targets", "/api/v1/status"} {
		if !strings.Contains(page, fmt.Sprintf(`<a href="%s">`, path)) {
			t.Errorf("the page does not link to %s", path)
		}
	}
	// Names may be URLs (an unnamed endpoint's is), but nothing is loaded
	// from one.
	for _, offline := range []string{"<script", "<link", "<img", "src=", `href="http`, "@import", "url("} {
		if strings.Contains(page, offline) {
			t.Errorf("the page has %q: it must need nothing from elsewhere", offline)
		}
	}
	if !strings.Contains(page, `<meta name="viewport" content="width=device-width, initial-scale=1">`) {
		t.Error("the page has no viewport meta: unreadable on a phone")
	}
	if code := getStatus(t, rig.base+"/no-such-page"); code != http.StatusNotFound {
		t.Errorf("GET /no-such-page: %d, want 404 (only / is the status page)", code)
	}
}

func getStatus(t *testing.T, url string) int {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return resp.StatusCode
}

// TestStatusPageAsksForWebConfigAuth: the page is on the same mux as
// /metrics, behind --web.config.file's basic auth; while the agent
// starts it says so rather than failing.
func TestStatusPageAsksForWebConfigAuth(t *testing.T) {
	webFile := filepath.Join(t.TempDir(), "web.yml")
	harness.WriteFile(t, webFile, fmt.Appendf(nil, "basic_auth_users:\n  prom: %s\n", scrapePassHash))
	w, err := startWeb(WebConfig{ListenAddress: "127.0.0.1:0", ConfigFile: webFile}, prometheus.NewRegistry(), slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	defer w.stop(t.Context())
	get := func(user, pass string) (int, string) {
		req, err := http.NewRequest(http.MethodGet, "http://"+w.addr()+"/", nil)
		if err != nil {
			t.Fatal(err)
		}
		if user != "" {
			req.SetBasicAuth(user, pass)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	for _, cred := range [][2]string{{"", ""}, {"prom", "wrong"}, {"other", "scrape-pass"}} {
		if code, body := get(cred[0], cred[1]); code != http.StatusUnauthorized || strings.Contains(body, "redwire") {
			t.Errorf("GET / as %q/%q: %d %.200s; want 401 and nothing of the page", cred[0], cred[1], code, body)
		}
	}
	if code, body := get("prom", "scrape-pass"); code != http.StatusOK || !strings.Contains(body, "The agent is starting") {
		t.Errorf("GET / with credentials while starting: %d %.300s", code, body)
	}
}

// TestStatusPageFormats: the few formatting helpers say what a person
// expects.
func TestStatusPageFormats(t *testing.T) {
	now := time.Date(2026, 5, 1, 12, 0, 0, 0, time.UTC)
	for _, tc := range []struct{ got, want string }{
		{since(now, time.Time{}), "never"},
		{since(now, now.Add(-250*time.Millisecond)), "250 ms ago"},
		{since(now, now.Add(-(4*time.Minute + 10*time.Second))), "4 min 10 s ago"},
		{since(now, now.Add(-(3*24*time.Hour + 4*time.Hour + 5*time.Minute))), "3 d 4 h ago"},
		{since(now, now.Add(-time.Hour)), "1 h 0 min ago"},
		{since(now, now.Add(2*time.Second)), "in 2 s"},
		{seconds(90.5), "1 min 30 s"},
		{byteSize(512), "512 B"},
		{byteSize(1536), "1.5 KiB"},
		{byteSize(3 << 30), "3.0 GiB"},
		{clock(now), "2026-05-01 12:00:00 UTC"},
	} {
		if tc.got != tc.want {
			t.Errorf("got %q, want %q", tc.got, tc.want)
		}
	}
	for n, want := range map[any]string{0: "0", 999: "999", int64(1000): "1\u202f000", int64(-1234567): "-1\u202f234\u202f567"} {
		if got, err := count(n); err != nil || got != want {
			t.Errorf("count(%v) = %q, %v; want %q", n, got, err, want)
		}
	}
	if _, err := count("12"); err == nil {
		t.Error("count of a string: no error")
	}
}

// TestStatusPageRendersEveryState renders what the running agent of the
// other tests seldom shows: an endpoint down with a backlog, one
// replaying with a drain estimate, one paused, buffer-only mode, and the
// page while the agent starts. Each says so in words.
func TestStatusPageRendersEveryState(t *testing.T) {
	now := time.Date(2026, 5, 1, 12, 0, 0, 0, time.UTC)
	lag, drain := 95.0, 30.0
	down := statusPageData{Now: now, Ready: true,
		Targets: []targetInfo{{Instance: "cache-1", Addr: "redis://cache-1:6379", Source: "config", Up: true, ConsecutiveFailures: 2,
			LastError: `target cache-1: connect: "refused" <here>`, LastSuccess: now.Add(-3 * time.Second)}},
		Status: status{Version: "v1", StartedAt: now.Add(-time.Hour), Degraded: true, Targets: 1, Endpoints: []endpointStatus{
			{Name: "down", Degraded: true, Mode: "degraded", BacklogSamples: 1234567, BacklogBytes: 3 << 20,
				Oldest: now.Add(-10 * time.Minute), DeliveryLag: &lag, LastSend: now.Add(-10 * time.Minute)},
			{Name: "back", Mode: "replay", BacklogSamples: 5000, Oldest: now.Add(-time.Minute), DeliveryLag: &lag, BacklogDrain: &drain},
			{Name: "refused", Mode: "normal", Paused: true},
		}, RecentChanges: []stateChange{{At: now.Add(-time.Minute), Endpoint: "down", From: "normal", To: "degraded", Error: "server returned HTTP 503"}}},
	}
	local := statusPageData{Now: now, Ready: true, Status: status{Endpoints: []endpointStatus{{Name: localBuffer}}}}
	for _, tc := range []struct {
		name string
		data statusPageData
		want []string
	}{
		{"an endpoint down, one replaying, one paused", down, []string{
			`<span class="badge soft"`, "3 s ago", `target cache-1: connect: &#34;refused&#34; &lt;here&gt;`,
			`<span class="badge mode-degraded">degraded</span>`, "samples go to the disk buffer",
			"1\u202f234\u202f567 samples, 3.0 MiB", "10 min 0 s ago", "1 min 35 s",
			`<span class="badge mode-replay">replay</span>`, "about 30 s at the current pace",
			`<span class="badge paused">paused</span>`, "Fix the config",
			"normal → <strong>degraded</strong>", "server returned HTTP 503",
			"Endpoint refused refuses our credentials or URL", `class="verdict bad"`,
		}},
		{"buffer-only mode", local, []string{"No remote-write endpoint is configured", "No targets", "No state change since the agent started"}},
		{"starting", statusPageData{Now: now}, []string{"The agent is starting", `class="verdict info"`}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var b strings.Builder
			if err := statusTemplate.Execute(&b, tc.data); err != nil {
				t.Fatal(err)
			}
			for _, w := range tc.want {
				if !strings.Contains(b.String(), w) {
					t.Errorf("the page lacks %q:\n%s", w, b.String())
				}
			}
			if tc.data.Status.Endpoints != nil && tc.data.Status.Endpoints[0].Mode == "" && strings.Contains(b.String(), "Delivery lag") {
				t.Error("buffer-only mode shows a delivery lag: it delivers nothing")
			}
		})
	}
}
