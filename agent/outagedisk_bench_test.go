package agent

import (
	"context"
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/prometheus/common/model"

	"github.com/redwire/redwire/buffer"
	"github.com/redwire/redwire/internal/codec"
	"github.com/redwire/redwire/internal/harness"
	"github.com/redwire/redwire/sample"
	"github.com/redwire/redwire/sources/redis"
)

// BenchmarkOutageDisk measures bytes on disk per buffered sample during a
// real outage: the agent scrapes real redis-servers under a light write
// load every second (degraded mode at the same pace, every family kept)
// while its receiver is unreachable, for REDWIRE_OUTAGE (default 10m).
// It reports the buffer's record bytes and the file's disk blocks per
// sample, and logs both every REDWIRE_OUTAGE_STEP (default: once, at the
// end). Run with -benchtime 1x.
//
// With REDWIRE_OUTAGE_SAVE=<file> it also writes the whole backlog as one
// compact segment to that file: how internal/codec/testdata/real-outage-v1.seg, the
// real data the encoding benchmarks and tests use, was made.
func BenchmarkOutageDisk(b *testing.B) {
	span := 10 * time.Minute
	if s := os.Getenv("REDWIRE_OUTAGE"); s != "" {
		d, err := time.ParseDuration(s)
		if err != nil {
			b.Fatalf("REDWIRE_OUTAGE=%q: %v", s, err)
		}
		span = d
	}
	step := span
	if s := os.Getenv("REDWIRE_OUTAGE_STEP"); s != "" {
		d, err := time.ParseDuration(s)
		if err != nil || d <= 0 {
			b.Fatalf("REDWIRE_OUTAGE_STEP=%q: want a positive duration", s)
		}
		step = d
	}
	const targets = 3
	for b.Loop() {
		var tcs []redis.TargetConfig
		ctx, cancel := context.WithCancel(context.Background())
		for i := range targets {
			r := harness.StartRedis(b)
			tcs = append(tcs, redis.TargetConfig{Addr: r.URL()})
			go outageLoad(ctx, r, uint64(i))
		}
		// Nothing listens on the write URL: every send fails at once.
		down := fmt.Sprintf("http://127.0.0.1:%d/api/v1/write", harness.FreePort(b))
		cfg := editedTestConfig(b, down, func(c *Config) {
			c.Degraded.Interval = model.Duration(time.Second)
			off := false
			c.SelfMetrics.Enabled = &off
		}, tcs...)
		a := runAgent(b, cfg)
		ep := map[string]string{"endpoint": cfg.RemoteWrite[0].Label()}
		var samples, bytes float64
		var blocks int64
		// The outage is the measurement; every step says where it stands.
		for elapsed := time.Duration(0); elapsed < span; {
			d := min(step, span-elapsed)
			time.Sleep(d)
			elapsed += d
			samples = gathered(b, a.reg, "redwire_buffer_samples", ep)
			bytes = gathered(b, a.reg, "redwire_buffer_bytes", ep)
			blocks = diskBlocks(cfg.Buffer.Path)
			b.Logf("after %s: %.0f samples buffered, records %.3f B/sample, disk %.3f B/sample",
				elapsed, samples, bytes/samples, float64(blocks)/samples)
		}
		a.stop()
		cancel()
		if out := os.Getenv("REDWIRE_OUTAGE_SAVE"); out != "" {
			saveBacklog(b, cfg.Buffer.Path, out)
		}
		b.ReportMetric(samples, "buffered-samples")
		b.ReportMetric(bytes/samples, "record-B/sample")
		b.ReportMetric(float64(blocks)/samples, "disk-B/sample")
	}
}

// outageLoad writes to r at a few hundred commands a second until ctx
// ends, so that INFO's counters move as on a live server.
func outageLoad(ctx context.Context, r *harness.Redis, seed uint64) {
	rng := rand.New(rand.NewPCG(seed, 1))
	c := r.Client()
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		k := fmt.Sprintf("key:%d", rng.IntN(5000))
		switch rng.IntN(4) {
		case 0:
			c.Set(ctx, k, rng.Int64(), 0)
		case 1:
			c.Get(ctx, k)
		case 2:
			c.Incr(ctx, "counter:"+k)
		default:
			c.LPush(ctx, "list:"+k, rng.Int64())
		}
	}
}

// diskBlocks is the disk space the files in dir take.
func diskBlocks(dir string) int64 {
	files, _ := filepath.Glob(filepath.Join(dir, "*"))
	var blocks int64
	for _, f := range files {
		var st syscall.Stat_t
		if syscall.Stat(f, &st) == nil {
			blocks += st.Blocks * 512
		}
	}
	return blocks
}

// saveBacklog writes every batch in the store in dir as one compact
// segment to out.
func saveBacklog(b *testing.B, dir, out string) {
	b.Helper()
	files, _ := filepath.Glob(filepath.Join(dir, "*.bbolt"))
	if len(files) == 0 {
		b.Fatalf("no store in %s", dir)
	}
	store, _, err := buffer.OpenStore(files[0], buffer.StoreOptions{})
	if err != nil {
		b.Fatal(err)
	}
	defer store.Close()
	recs, err := store.Peek(math.MaxInt)
	if err != nil {
		b.Fatal(err)
	}
	batches := make([]sample.Batch, len(recs))
	for i, r := range recs {
		batches[i] = r.Batch
	}
	seg, err := codec.EncodeSegment(batches)
	if err != nil {
		b.Fatal(err)
	}
	if err := os.WriteFile(out, seg, 0o644); err != nil {
		b.Fatal(err)
	}
	b.Logf("saved %d batches to %s (%d bytes)", len(batches), out, len(seg))
}
