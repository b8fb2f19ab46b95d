package agent

import (
	"context"
	"fmt"
	"io"
	"math"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/redwire/redwire/buffer"
	"github.com/redwire/redwire/internal/harness"
	"github.com/redwire/redwire/sample"
)

var gapT0 = time.Date(2026, 12, 2, 10, 0, 0, 0, time.UTC)

func spanAt(target string, from, to time.Duration, samples int) sample.Span {
	return sample.Span{Target: target, From: gapT0.Add(from).UnixMilli(), To: gapT0.Add(to).UnixMilli(), Samples: samples}
}

// TestGapLogJoinsWhatFollows: a buffer that drops its oldest records one
// by one loses one range, not one per record, and the seconds counted
// are the range's length plus one interval, whatever the pieces.
func TestGapLogJoinsWhatFollows(t *testing.T) {
	g := newGapLog(time.Second, 5*time.Second, nil)
	var secs float64
	for i := range 10 { // records of 3 scrapes each, 1 s apart
		from := time.Duration(3*i) * time.Second
		secs += g.lost(buffer.DropBufferFull, []sample.Span{spanAt("a", from, from+2*time.Second, 30)})["a"]
	}
	secs += g.lost(buffer.DropBufferFull, []sample.Span{spanAt("b", 0, 0, 10)})["b"]
	// 40 s later a (too far to join, even at the degraded pace).
	secs += g.lost(buffer.DropBufferFull, []sample.Span{spanAt("a", 70*time.Second, 71*time.Second, 20)})["a"]
	// Another reason is another range.
	secs += g.lost(buffer.DropRejected, []sample.Span{spanAt("a", 72*time.Second, 72*time.Second, 10)})["a"]

	want := []buffer.Gap{
		{Target: "a", From: gapT0.Add(72 * time.Second), To: gapT0.Add(72 * time.Second), Samples: 10, Reason: buffer.DropRejected},
		{Target: "a", From: gapT0.Add(70 * time.Second), To: gapT0.Add(71 * time.Second), Samples: 20, Reason: buffer.DropBufferFull},
		{Target: "a", From: gapT0, To: gapT0.Add(29 * time.Second), Samples: 300, Reason: buffer.DropBufferFull},
		{Target: "b", From: gapT0, To: gapT0, Samples: 10, Reason: buffer.DropBufferFull},
	}
	if got := g.list(); fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("ranges:\n got %v\nwant %v", got, want)
	}
	// a: 30 s + 2 s + 1 s; b: 1 s.
	if secs != 34 {
		t.Errorf("lost seconds = %v, want 34", secs)
	}
	if gs, changed := g.changed(); !changed || len(gs) != 4 {
		t.Errorf("changed() = %d ranges, %v; want the 4, true", len(gs), changed)
	}
	if _, changed := g.changed(); changed {
		t.Error("changed() again with nothing new: true")
	}
}

// TestGapLogAgentDown: the range of a stop runs from the last scrape
// before it to the first after, and the seconds lost are the scrapes due
// in between.
func TestGapLogAgentDown(t *testing.T) {
	g := newGapLog(time.Second, 5*time.Second, nil)
	if secs := g.down("a", gapT0, gapT0.Add(10*time.Second)); secs != 9 {
		t.Errorf("lost seconds = %v, want 9", secs)
	}
	want := []buffer.Gap{{Target: "a", From: gapT0, To: gapT0.Add(10 * time.Second), Reason: buffer.GapAgentDown}}
	if got := g.list(); fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("ranges = %v, want %v", got, want)
	}
}

// TestGapLogKeepsTheNewest: the list is bounded; what falls off is the
// oldest.
func TestGapLogKeepsTheNewest(t *testing.T) {
	g := newGapLog(time.Second, time.Second, nil)
	for i := range maxGaps + 10 {
		at := time.Duration(i) * time.Minute
		g.lost(buffer.DropRejected, []sample.Span{spanAt("a", at, at, 1)})
	}
	got := g.list()
	if len(got) != maxGaps {
		t.Fatalf("%d ranges kept, want %d", len(got), maxGaps)
	}
	if newest, oldest := got[0].From, got[len(got)-1].From; !newest.Equal(gapT0.Add(time.Duration(maxGaps+9)*time.Minute)) || !oldest.Equal(gapT0.Add(10*time.Minute)) {
		t.Errorf("kept %v … %v, want the newest %d", newest, oldest, maxGaps)
	}
}

// apiGaps reads GET /api/v1/gaps of the agent serving on addr.
func apiGaps(t *testing.T, addr string) []gap {
	t.Helper()
	gaps, err := apiGet[[]gap]("http://" + addr + "/api/v1/gaps")
	if err != nil {
		t.Fatal(err)
	}
	return gaps
}

// TestRestartAfterKill9ReportsOneAgentDownRange: a SIGKILLed agent,
// restarted a few seconds later in the default configuration, reports
// exactly one agent_down range, and it is exactly the hole the receiver
// shows: from the last scrape before the kill to the first after the
// restart. Nothing else is reported lost. A clean stop and start later
// still shows it: the range is saved in the buffer file.
func TestRestartAfterKill9ReportsOneAgentDownRange(t *testing.T) {
	t.Parallel()
	bin := buildRedwire(t)
	r := harness.StartRedis(t)
	prom := harness.StartPrometheus(t)
	dir := t.TempDir()
	agent := startProcess(t, bin, dir, prom.WriteURL(), r.URL())
	harness.WaitFor(t, 30*time.Second, "scrapes", func() (bool, error) {
		return agent.metric(t, "redwire_target_scrapes_total") >= 3, nil
	})
	agent.kill()
	killed := time.Now()
	// The agent stays down for a few scrape intervals: that is the
	// scenario, not a wait for something to happen.
	harness.WaitFor(t, 30*time.Second, "some dead time", func() (bool, error) {
		return time.Since(killed) >= 4*time.Second, nil
	})
	agent = startProcess(t, bin, dir, prom.WriteURL(), r.URL())
	var gaps []gap
	harness.WaitFor(t, 30*time.Second, "the agent_down range", func() (bool, error) {
		gaps = apiGaps(t, agent.addr)
		return len(gaps) > 0 && agent.metric(t, "redwire_buffer_samples") == 0, nil
	})
	harness.WaitFor(t, 30*time.Second, "scrapes after the restart delivered", func() (bool, error) {
		return agent.metric(t, "redwire_target_scrapes_total") >= 3 && agent.metric(t, "redwire_queue_samples") == 0, nil
	})
	lostSecs := agent.metric(t, "redwire_lost_seconds_total")
	agent.terminate()

	if len(gaps) != 1 || gaps[0].Reason != buffer.GapAgentDown || gaps[0].Target != r.Addr() {
		t.Fatalf("gaps = %+v, want one agent_down range of %s", gaps, r.Addr())
	}
	g := gaps[0]
	// The receiver's largest hole between consecutive redis_up samples
	// is the range reported, to the millisecond.
	series, err := prom.Samples(context.Background(), fmt.Sprintf(`redis_up{instance=%q}`, r.Addr()), outageWindow)
	if err != nil || len(series) != 1 {
		t.Fatalf("redis_up in the receiver: %v, %v", series, err)
	}
	var from, to time.Time
	pts := series[0].Points
	for i := 1; i < len(pts); i++ {
		if d := pts[i].T.Sub(pts[i-1].T); d > to.Sub(from) {
			from, to = pts[i-1].T, pts[i].T
		}
	}
	if !g.From.Equal(from) || !g.To.Equal(to) {
		t.Errorf("agent_down range %v – %v; the receiver's hole is %v – %v", g.From, g.To, from, to)
	}
	if !g.From.Before(killed) || g.To.Sub(g.From) < 4*time.Second {
		t.Errorf("agent_down range %v – %v does not cover the kill at %v and 4 s after", g.From, g.To, killed)
	}
	// Seconds lost: the scrapes due in the hole, at 1 s.
	if want := g.To.Sub(g.From).Seconds() - 1; math.Abs(lostSecs-want) > 1e-6 {
		t.Errorf("redwire_lost_seconds_total = %v, want %v", lostSecs, want)
	}

	// Saved: a clean restart shows it again, beside the range of the
	// restart itself.
	agent = startProcess(t, bin, dir, prom.WriteURL(), r.URL())
	again := apiGaps(t, agent.addr)
	agent.terminate()
	if i := slices.IndexFunc(again, func(a gap) bool { return a.From.Equal(g.From) && a.To.Equal(g.To) }); i < 0 {
		t.Errorf("after a clean restart, gaps = %+v; want the agent_down range %v – %v among them", again, g.From, g.To)
	}
}

// TestDegradedModeListsAThinnedRange: an outage that degraded mode rode
// out at its slower pace lost nothing, and says where it took fewer
// samples: one thinned range, at degraded.interval, and no lost seconds.
func TestDegradedModeListsAThinnedRange(t *testing.T) {
	t.Parallel()
	r := harness.StartRedis(t)
	prom := harness.StartPrometheus(t)
	cfg := outageConfig(t, prom.WriteURL(), r)
	a := runAgent(t, cfg)
	queryOne(t, prom, `redis_up`, nil)
	beginOutage(t, a, prom, cfg, r.Addr(), 3)
	endOutage(t, a, prom, cfg)
	gaps := apiGaps(t, cfg.Web.ListenAddress)
	page := get(t, "http://"+cfg.Web.ListenAddress+"/")
	a.stop()
	if !strings.Contains(page, "thinned: kept one scrape every") || !strings.Contains(page, r.Addr()) {
		t.Errorf("the status page does not show the thinned range of %s", r.Addr())
	}

	every := time.Duration(cfg.Degraded.Interval)
	if len(gaps) != 1 || gaps[0].Reason != buffer.GapThinned || gaps[0].Target != r.Addr() ||
		gaps[0].KeptEverySeconds != every.Seconds() || gaps[0].Samples != 0 {
		t.Fatalf("gaps = %+v; want one thinned range of %s, kept every %v", gaps, r.Addr(), every)
	}
	if d := gaps[0].To.Sub(gaps[0].From); d < 2*every {
		t.Errorf("thinned range %v – %v is shorter than the 3 degraded scrapes", gaps[0].From, gaps[0].To)
	}
	if v := gathered(t, a.reg, "redwire_lost_seconds_total", nil); v != 0 {
		t.Errorf("redwire_lost_seconds_total = %v after an outage that lost nothing", v)
	}
}

// get returns the body of a 200 answer to GET url.
func get(t *testing.T, url string) string {
	t.Helper()
	body, _ := getTyped(t, url)
	return body
}

// getTyped is get, with the answer's Content-Type.
func getTyped(t *testing.T, url string) (body, contentType string) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: %s, %v\n%s", url, resp.Status, err, raw)
	}
	return string(raw), resp.Header.Get("Content-Type")
}
