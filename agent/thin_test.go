package agent

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/alecthomas/units"
	"github.com/prometheus/common/model"

	"github.com/redwire/redwire/buffer"
	"github.com/redwire/redwire/internal/harness"
)

// TestThinnedOutageReachesTheReceiver: an outage several times
// buffer.max_bytes (128 KiB; 100 s of one Redis at 1 s is about 580 KB
// as it arrives), scraped every second, reaches the receiver whole at a
// coarser resolution, nothing dropped: every 15 s of it holds a redis_up sample, the
// thinned ranges are in GET /api/v1/gaps with the resolution kept, and
// taken = sent + dropped + thinned + pending still holds to the sample.
func TestThinnedOutageReachesTheReceiver(t *testing.T) {
	t.Parallel()
	r := harness.StartRedis(t)
	prom := harness.StartPrometheus(t)
	const outage = 100 * time.Second
	cfg := limitConfig(t, prom.WriteURL(), r, func(c *Config) {
		c.Buffer.MaxBytes = 128 * units.KiB
		floor := model.Duration(10 * time.Second)
		c.Buffer.ThinFloor = &floor
	})
	a := runAgent(t, cfg)
	ep := cfg.RemoteWrite[0].Label()
	endpoint := map[string]string{"endpoint": ep}

	queryOne(t, prom, `redis_up`, nil)
	prom.Stop()
	from := time.Now()
	harness.WaitFor(t, time.Minute, "degraded", func() (bool, error) {
		d := gathered(t, a.reg, "redwire_degraded", endpoint)
		return d == 1, fmt.Errorf("degraded %v", d)
	})
	time.Sleep(outage - time.Since(from)) // the outage is the test: its length is the input
	to := time.Now()
	thinned := gathered(t, a.reg, "redwire_samples_thinned_total", endpoint)
	if thinned == 0 {
		t.Fatalf("nothing thinned in a %v outage over max_bytes %d", outage, cfg.Buffer.MaxBytes)
	}
	var kept []buffer.Gap
	for _, g := range apiGaps(t, cfg.Web.ListenAddress) {
		if g.Reason == buffer.GapThinned && g.KeptEverySeconds > 1 {
			kept = append(kept, g.Gap)
		}
	}
	if len(kept) == 0 {
		t.Fatalf("%v samples thinned, and no thinned range in /api/v1/gaps", thinned)
	}
	for _, g := range kept {
		if g.KeptEverySeconds > 10 || g.From.Before(from.Add(-time.Minute)) || g.To.After(to) {
			t.Errorf("thinned range %+v: outside the outage or coarser than the floor", g)
		}
	}
	t.Logf("%v samples thinned, ranges %+v", thinned, kept)
	replayAndStop(t, a, prom, ep)

	acc := sampleAccount(t, a.reg, endpoint)
	t.Logf("samples: %v", acc)
	if !acc.balanced() || acc.thinned < thinned {
		t.Errorf("the samples do not add up with thinning: %v", acc)
	}
	series, err := prom.Samples(context.Background(), `redis_up`, sampleWindow)
	if err != nil || len(series) != 1 {
		t.Fatalf("redis_up in the receiver: %d series, %v", len(series), err)
	}
	const window = 15 * time.Second
	have := map[int64]bool{}
	for _, p := range series[0].Points {
		have[p.T.UnixMilli()/window.Milliseconds()] = true
	}
	// Whole windows of the outage, from the first after it began to
	// the last before it ended.
	for w := from.UnixMilli()/window.Milliseconds() + 1; (w+1)*window.Milliseconds() <= to.UnixMilli(); w++ {
		if !have[w] {
			t.Errorf("no redis_up sample in the receiver from %v for %v of the outage", time.UnixMilli(w*window.Milliseconds()).UTC(), window)
		}
	}
	if acc.dropped != 0 {
		t.Errorf("%v samples dropped while the floor would have fitted", acc.dropped)
	}
	assertNoRejections(t, prom)
}
