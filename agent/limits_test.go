package agent

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/alecthomas/units"
	"github.com/prometheus/common/model"

	"github.com/redwire/redwire/buffer"
	"github.com/redwire/redwire/internal/harness"
	"github.com/redwire/redwire/sources/redis"
)

// The buffer's limits are where an outage costs samples: the disk buffer
// over buffer.max_bytes, data older than buffer.max_age, a disk too full
// to take more. Each test provokes one on real servers and checks the
// promise still holds to the sample: every sample taken was sent, is
// counted as dropped for that reason, or is still held.

// limitConfig is outageConfig with degraded scrapes every second, so a
// limit is reached in seconds, and edit applied before Finalize.
func limitConfig(t *testing.T, writeURL string, r *harness.Redis, edit func(*Config)) *Config {
	t.Helper()
	return editedTestConfig(t, writeURL, func(c *Config) {
		off := false
		c.SelfMetrics.Enabled = &off
		c.Degraded.Interval = model.Duration(time.Second)
		edit(c)
	}, redis.TargetConfig{Addr: r.URL()})
}

// outageUntilDropped stops the receiver and waits until the agent is
// degraded and has dropped several scrapes' worth of samples (a Redis
// scrape has a few hundred) for reason.
func outageUntilDropped(t *testing.T, a *testAgent, prom *harness.Prometheus, ep, reason string) {
	t.Helper()
	prom.Stop()
	dropped := map[string]string{"endpoint": ep, "reason": reason}
	harness.WaitFor(t, 2*time.Minute, "samples dropped as "+reason+" while degraded", func() (bool, error) {
		d, n := gathered(t, a.reg, "redwire_degraded", map[string]string{"endpoint": ep}), gathered(t, a.reg, "redwire_samples_dropped_total", dropped)
		return d == 1 && n >= 1000, fmt.Errorf("degraded %v, %v samples dropped as %s", d, n, reason)
	})
}

// replayAndStop starts the receiver again, waits until the backlog is
// replayed and the agent back to normal, and stops the agent.
func replayAndStop(t *testing.T, a *testAgent, prom *harness.Prometheus, ep string) {
	t.Helper()
	endpoint := map[string]string{"endpoint": ep}
	prom.Start()
	harness.WaitFor(t, 2*time.Minute, "backlog replayed and normal mode", func() (bool, error) {
		d, b := gathered(t, a.reg, "redwire_degraded", endpoint), gathered(t, a.reg, "redwire_buffer_batches", endpoint)
		return d == 0 && b == 0, fmt.Errorf("degraded %v, %v batches on disk", d, b)
	})
	a.stop() // graceful: what is queued is sent, the counters final
}

// assertReceiverHoldsSent: the receiver stores exactly the samples the
// agent counted as sent, none of those it counted as dropped.
func assertReceiverHoldsSent(t *testing.T, prom *harness.Prometheus, acc account) {
	t.Helper()
	if n, err := storedSamples(prom, `{job="redis"}`); err != nil || float64(n) != acc.sent {
		t.Errorf("receiver holds %d samples (%v); the agent sent %v", n, err, acc.sent)
	}
	assertNoRejections(t, prom)
}

// TestBufferFullDropsOldestAndCounts: an outage fills a small disk buffer
// (buffer.max_bytes); the oldest records go, counted as buffer_full, and
// the rest is replayed when the receiver is back. The oldest records are
// also the probe the sender retries meanwhile: a sample is counted once,
// as sent or as dropped, never as both.
func TestBufferFullDropsOldestAndCounts(t *testing.T) {
	t.Parallel()
	r := harness.StartRedis(t)
	prom := harness.StartPrometheus(t)
	cfg := limitConfig(t, prom.WriteURL(), r, func(c *Config) { c.Buffer.MaxBytes = 32 << 10 })
	a := runAgent(t, cfg)
	ep := cfg.RemoteWrite[0].Label()

	queryOne(t, prom, `redis_up`, nil)
	outageUntilDropped(t, a, prom, ep, buffer.DropBufferFull)
	replayAndStop(t, a, prom, ep)

	acc := assertAccounted(t, a.reg, ep, buffer.DropBufferFull)
	assertReceiverHoldsSent(t, prom, acc)
}

// TestTooOldDropsAndCounts: an outage outlasts buffer.max_age; what grew
// older than that goes, counted as too_old, and the rest is replayed when
// the receiver is back. As with max_bytes, what expires may be the probe
// in flight, and is counted once.
func TestTooOldDropsAndCounts(t *testing.T) {
	t.Parallel()
	r := harness.StartRedis(t)
	prom := harness.StartPrometheus(t)
	cfg := limitConfig(t, prom.WriteURL(), r, func(c *Config) { c.Buffer.MaxAge = model.Duration(3 * time.Second) })
	a := runAgent(t, cfg)
	ep := cfg.RemoteWrite[0].Label()

	queryOne(t, prom, `redis_up`, nil)
	outageUntilDropped(t, a, prom, ep, buffer.DropTooOld)
	replayAndStop(t, a, prom, ep)

	acc := assertAccounted(t, a.reg, ep, buffer.DropTooOld)
	assertReceiverHoldsSent(t, prom, acc)
}

// TestDiskFullDropsAndCounts: the disk under the buffer is full when the
// receiver goes down. Nothing can be spilled, so memory holds what it
// can (queue_config.capacity) and the oldest beyond that is dropped,
// counted as disk_full. Once space is freed the backlog goes to disk
// again, and all of it is delivered when the receiver is back.
func TestDiskFullDropsAndCounts(t *testing.T) {
	t.Parallel()
	disk := harness.MountTmpfs(t, "32m")
	r := harness.StartRedis(t)
	prom := harness.StartPrometheus(t)
	cfg := limitConfig(t, prom.WriteURL(), r, func(c *Config) {
		c.Buffer.Path = disk
		q := &c.RemoteWrite[0].QueueConfig
		q.Capacity, q.MaxSamplesPerSend = 1000, 500 // a few scrapes
	})
	a := runAgent(t, cfg)
	ep := cfg.RemoteWrite[0].Label()
	endpoint := map[string]string{"endpoint": ep}

	queryOne(t, prom, `redis_up`, nil)
	// Leave less free than the store keeps free (16 MiB): every append
	// to it fails as the disk being full.
	filler := filepath.Join(disk, "filler")
	var st syscall.Statfs_t
	if err := syscall.Statfs(disk, &st); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filler, make([]byte, int64(st.Bavail)*st.Bsize-8<<20), 0o600); err != nil {
		t.Fatal(err)
	}
	outageUntilDropped(t, a, prom, ep, buffer.DropDiskFull)
	if n := gathered(t, a.reg, "redwire_buffer_batches", endpoint); n != 0 {
		t.Fatalf("%v batches on a full disk", n)
	}
	harness.WaitFor(t, time.Minute, "the disk-full warning", func() (bool, error) {
		return a.logs.Count("buffer disk full") == 1, nil
	})

	if err := os.Remove(filler); err != nil {
		t.Fatal(err)
	}
	harness.WaitFor(t, time.Minute, "scrapes on disk once space is freed", func() (bool, error) {
		n := gathered(t, a.reg, "redwire_buffer_batches", endpoint)
		return n > 0, fmt.Errorf("%v batches on disk", n)
	})
	harness.WaitFor(t, time.Minute, "the room-again line", func() (bool, error) {
		return a.logs.Count("buffer disk has room again") == 1, nil
	})
	gaps := apiGaps(t, cfg.Web.ListenAddress)
	replayAndStop(t, a, prom, ep)

	acc := assertAccounted(t, a.reg, ep, buffer.DropDiskFull)
	assertReceiverHoldsSent(t, prom, acc)
	if n := a.logs.Count("buffer disk full"); n != 1 || !strings.Contains(a.logs.String(), "buffer.min_free_bytes") {
		t.Errorf("%d disk-full warnings, naming buffer.min_free_bytes: %v; want one that does", n, strings.Contains(a.logs.String(), "buffer.min_free_bytes"))
	}
	// The drops are lost ranges of the target, as many samples as counted.
	var lost int64
	for _, g := range gaps {
		if g.Reason == buffer.DropDiskFull && g.Target == r.Addr() {
			lost += g.Samples
		}
	}
	if dropped := gathered(t, a.reg, "redwire_samples_dropped_total", map[string]string{"endpoint": ep, "reason": buffer.DropDiskFull}); float64(lost) != dropped {
		t.Errorf("disk_full ranges hold %d samples; %v were dropped; ranges %+v", lost, dropped, gaps)
	}
}

// TestMinFreeBytesIsASetting: buffer.min_free_bytes above what the
// filesystem has free makes every write to the store a full disk, as a
// full disk would.
func TestMinFreeBytesIsASetting(t *testing.T) {
	t.Parallel()
	r := harness.StartRedis(t)
	prom := harness.StartPrometheus(t)
	huge := units.Base2Bytes(1 << 50)
	cfg := limitConfig(t, prom.WriteURL(), r, func(c *Config) {
		c.Buffer.MinFreeBytes = &huge
		q := &c.RemoteWrite[0].QueueConfig
		q.Capacity, q.MaxSamplesPerSend = 1000, 500
	})
	a := runAgent(t, cfg)
	ep := cfg.RemoteWrite[0].Label()
	queryOne(t, prom, `redis_up`, nil)
	outageUntilDropped(t, a, prom, ep, buffer.DropDiskFull)
	if n := gathered(t, a.reg, "redwire_buffer_batches", map[string]string{"endpoint": ep}); n != 0 {
		t.Fatalf("%v batches stored past buffer.min_free_bytes", n)
	}
	harness.WaitFor(t, time.Minute, "the disk-full and will-be-full warnings", func() (bool, error) {
		return a.logs.Count("buffer disk full") == 1 && a.logs.Count("the buffer will be full before long") == 1, nil
	})
	// No room at all: full now, in /metrics and in the status.
	metrics := get(t, "http://"+cfg.Web.ListenAddress+"/metrics")
	if want := fmt.Sprintf("redwire_buffer_time_to_full_seconds{endpoint=%q} 0\n", ep); !strings.Contains(metrics, want) {
		t.Errorf("/metrics lacks %q", want)
	}
	if status := get(t, "http://"+cfg.Web.ListenAddress+"/api/v1/status"); !strings.Contains(status, `"time_to_full_seconds": 0`) {
		t.Errorf("/api/v1/status lacks time_to_full_seconds 0:\n%s", status)
	}
}
