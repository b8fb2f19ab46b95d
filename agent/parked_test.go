package agent

import (
	"bytes"
	"context"
	"fmt"
	"net/http"
	"testing"
	"time"

	"github.com/golang/snappy"
	"github.com/prometheus/prometheus/prompb"

	"github.com/redwire/redwire/buffer"
	"github.com/redwire/redwire/internal/harness"
)

// The issue behind these tests: a central receiver that other sites keep
// current refuses a backlog older than its head window, and redwire used
// to drop what it refused. Here another "site" moves a real receiver's
// head ahead with one sample stamped in the future, so the receiver
// refuses the agent's samples for a while as out of bounds.

// headLead is how far past now the receiver's lower bound goes: its head
// takes samples no older than its newest minus an hour (half the 2 h
// block range), and the other site's sample is stamped an hour and
// headLead ahead.
const headLead = 20 * time.Second

// moveHeadAhead writes one sample of another site's series, stamped an
// hour and lead from now, into the receiver at writeURL.
func moveHeadAhead(t *testing.T, writeURL string, lead time.Duration) {
	t.Helper()
	wr := &prompb.WriteRequest{Timeseries: []prompb.TimeSeries{{
		Labels:  []prompb.Label{{Name: "__name__", Value: "other_site_up"}, {Name: "site", Value: "b"}},
		Samples: []prompb.Sample{{Value: 1, Timestamp: time.Now().Add(time.Hour + lead).UnixMilli()}},
	}}}
	raw, err := wr.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	req, err := http.NewRequest(http.MethodPost, writeURL, bytes.NewReader(snappy.Encode(nil, raw)))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Encoding", "snappy")
	req.Header.Set("Content-Type", "application/x-protobuf")
	req.Header.Set("X-Prometheus-Remote-Write-Version", "0.1.0")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode/100 != 2 {
		t.Fatalf("the other site's sample was refused: %s", resp.Status)
	}
}

// parkedOf counts the samples of family parked in the endpoint's buffer
// file under dir, read as `redwire buffer inspect` reads it.
func parkedOf(t *testing.T, dir, endpoint, family string) int {
	t.Helper()
	n := 0
	_, _, err := buffer.ReadStore(buffer.EndpointFile(dir, endpoint).Path, buffer.ReadOptions{Parked: true}, func(r buffer.FileRecord) error {
		if r.Err != nil {
			return r.Err
		}
		for _, b := range r.Batches {
			for _, s := range b.Batch.Samples {
				if s.Labels.Get("__name__") == family {
					n++
				}
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// assertParkedAccounted checks taken = sent + dropped + pending + parked
// for ep, with nothing dropped.
func assertParkedAccounted(t *testing.T, a *testAgent, ep map[string]string) {
	t.Helper()
	acc := sampleAccount(t, a.reg, ep)
	parked := gathered(t, a.reg, "redwire_buffer_parked_samples", ep)
	if acc.taken != acc.sent+acc.dropped+acc.thinned+acc.pending+parked {
		t.Errorf("taken %v != sent %v + dropped %v + thinned %v + pending %v + parked %v", acc.taken, acc.sent, acc.dropped, acc.thinned, acc.pending, parked)
	}
	if acc.dropped != 0 {
		t.Errorf("dropped %v samples, want none", acc.dropped)
	}
}

// TestParkedWhenAnotherSiteMovesTheHead: a receiver without an
// out-of-order window refuses the agent's first scrapes as out of bounds
// (Prometheus 2.42 rolls the whole request back with 400, Thanos Receive
// keeps the rest and answers 409). None is dropped: each scrape is in the
// receiver or parked in the buffer file, and live data reaches the
// receiver once its head allows it. VictoriaMetrics takes samples of any
// age: nothing is parked.
func TestParkedWhenAnotherSiteMovesTheHead(t *testing.T) {
	t.Parallel()
	t.Run("prometheus-2.42", func(t *testing.T) {
		t.Parallel()
		testParkedMovedHead(t, harness.StartPrometheus(t), true)
	})
	t.Run("thanos-receive", func(t *testing.T) {
		t.Parallel()
		testParkedMovedHead(t, harness.StartThanosReceive(t), true)
	})
	t.Run("victoriametrics", func(t *testing.T) {
		t.Parallel()
		testParkedMovedHead(t, harness.StartVictoriaMetrics(t), false)
	})
}

// testParkedMovedHead runs the agent against recv after moving its head
// ahead; refuses says whether recv refuses what is older than its head.
func testParkedMovedHead(t *testing.T, recv harness.Receiver, refuses bool) {
	r := harness.StartRedis(t)
	moveHeadAhead(t, recv.WriteURL(), headLead)
	cfg := outageConfig(t, recv.WriteURL(), r)
	a := runAgent(t, cfg)
	ep := map[string]string{"endpoint": cfg.RemoteWrite[0].Label()}
	target := map[string]string{"target": r.Addr()}

	if refuses {
		harness.WaitFor(t, time.Minute, "samples parked", func() (bool, error) {
			return gathered(t, a.reg, "redwire_buffer_parked_samples", ep) > 0, nil
		})
	}
	harness.WaitFor(t, 2*headLead+time.Minute, "live data delivered once the head allows it", func() (bool, error) {
		return delivered(t, recv, r.Addr()) > 0, nil
	})
	a.stop()

	assertParkedAccounted(t, a, ep)
	taken := int(gathered(t, a.reg, "redwire_target_scrapes_total", target))
	got, parked := delivered(t, recv, r.Addr()), parkedOf(t, cfg.Buffer.Path, cfg.RemoteWrite[0].Label(), "redis_up")
	if got+parked != taken || (parked == 0) == refuses {
		t.Errorf("%d scrapes taken: %d redis_up in the receiver + %d parked; want all of them, parked only if the receiver refuses", taken, got, parked)
	}
	if v := gathered(t, a.reg, "redwire_remote_write_refused_samples_total", map[string]string{"cause": "age"}); (v == 0) == refuses {
		t.Errorf("redwire_remote_write_refused_samples_total{cause=age} = %v", v)
	}
}

// TestParkedDeliveredOnceTheWindowIsDeclared: a Prometheus 3.x refuses
// everything the agent sends as out of bounds: its clock runs two hours
// behind the other site's, whose sample holds the receiver's head at
// now (3.x refuses samples over 10 minutes ahead, so here it is the
// agent that lags). The agent parks it all. Then the receiver's operator
// gives it an out-of-order window and redwire's config declares it (a
// reload): the parked samples are delivered without more ado, every
// scrape is in the receiver once, and nothing stays parked.
func TestParkedDeliveredOnceTheWindowIsDeclared(t *testing.T) {
	t.Parallel()
	const lag = 2 * time.Hour
	r := harness.StartRedis(t)
	prom := harness.StartPrometheus3(t)
	moveHeadAhead(t, prom.WriteURL(), -time.Hour) // the other site's sample at now
	f := newConfigFile(t)
	write := func(extra string) {
		f.write(reloadConfig(f.listen, f.bufDir, prom.WriteURL(), extra, 0, r))
	}
	write("")
	cfg := f.mustLoad()
	a := runAgent(t, cfg, func(o *Options) {
		o.Reload = f.load
		o.Now = func() time.Time { return time.Now().Add(-lag) }
	})
	ep := map[string]string{"endpoint": "main"}
	target := map[string]string{"target": r.Addr()}
	inReceiver := func() int {
		series, err := prom.Samples(context.Background(), fmt.Sprintf(`redis_up{instance=%q}`, r.Addr()), lag+time.Hour)
		if err != nil {
			t.Fatal(err)
		}
		n := 0
		for _, s := range series {
			n += len(s.Points)
		}
		return n
	}

	harness.WaitFor(t, time.Minute, "five scrapes parked", func() (bool, error) {
		return parkedOf(t, f.bufDir, "main", "redis_up") >= 5, nil
	})
	if n := inReceiver(); n != 0 {
		t.Fatalf("the receiver took %d samples two hours behind its head, before it had a window", n)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := prom.SetOutOfOrderWindow(ctx, lag+time.Hour); err != nil {
		t.Fatal(err)
	}
	write("    out_of_order_time_window: 3h\n")
	if code, body := postReload(t, cfg); code != http.StatusOK {
		t.Fatalf("reload: %d %s", code, body)
	}
	harness.WaitFor(t, time.Minute, "parked samples delivered", func() (bool, error) {
		return gathered(t, a.reg, "redwire_buffer_parked_samples", ep) == 0 && inReceiver() > 0, nil
	})
	a.stop()

	assertParkedAccounted(t, a, ep)
	if v := gathered(t, a.reg, "redwire_samples_unparked_total", ep); v == 0 {
		t.Error("redwire_samples_unparked_total = 0 after the parked samples were delivered")
	}
	taken := int(gathered(t, a.reg, "redwire_target_scrapes_total", target))
	if got := inReceiver(); got != taken {
		t.Errorf("receiver has %d redis_up samples, agent took %d scrapes", got, taken)
	}
	if n := parkedOf(t, f.bufDir, "main", "redis_up"); n != 0 {
		t.Errorf("%d redis_up samples still parked", n)
	}
}
