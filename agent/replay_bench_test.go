package agent

import (
	"context"
	"fmt"
	"log/slog"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/prometheus/model/labels"

	"github.com/redwire/redwire/buffer"
	"github.com/redwire/redwire/internal/harness"
	"github.com/redwire/redwire/remotewrite"
	"github.com/redwire/redwire/sample"
	"github.com/redwire/redwire/sources/redis"
)

// backlogScrapes is a 1-hour backlog of one target scraped every second.
const backlogScrapes = 3600

// BenchmarkReplayDrain measures how fast a backlog on disk drains into a
// real Prometheus receiver: a 1-hour backlog of one Redis (≈300 series at
// 1 s, from a real INFO capture), no replay rate limit, default queue
// settings (2000 samples per request, one request at a time). Run with
// -benchtime=1x: one iteration is a whole drain.
func BenchmarkReplayDrain(b *testing.B) {
	r := newReplayBench(b)
	var drained, diskBytes, seconds float64
	iter := 0
	for b.Loop() {
		b.StopTimer()
		iter++
		// A fresh instance label per iteration: each drain writes new
		// series, so the receiver never sees out-of-order data.
		d := r.newDrain(b, fmt.Sprintf("bench-%d", iter))
		b.StartTimer()
		t := d.run(b)
		b.StopTimer()
		seconds = t.wall.Seconds()
		drained, diskBytes = float64(d.samples), d.diskBytes
		d.close(b)
		b.StartTimer()
	}
	b.ReportMetric(drained/seconds, "samples/s")
	b.ReportMetric(diskBytes, "disk-B/sample")
	b.ReportMetric(drained, "samples")
}

// replayBench is what the drain benchmarks share across iterations: the
// INFO capture every backlog is made of, a real Prometheus receiver, and
// the agent's endpoint config (all defaults, as --remote-write.url makes
// it) and HTTP client for that receiver.
type replayBench struct {
	info   *redis.Info
	prom   *harness.Prometheus
	ec     remotewrite.EndpointConfig
	client *remotewrite.Client
}

func newReplayBench(b *testing.B) *replayBench {
	b.Helper()
	return newReplayBenchFor(b, startBenchReceiver(b))
}

// newReplayBenchFor is newReplayBench with prom as the receiver.
func newReplayBenchFor(b *testing.B, prom *harness.Prometheus) *replayBench {
	b.Helper()
	raw, err := os.ReadFile("../sources/redis/testdata/info/redis-7.0-master.txt")
	if err != nil {
		b.Fatal(err)
	}
	info, err := redis.ParseInfo(string(raw))
	if err != nil {
		b.Fatal(err)
	}
	u, err := url.Parse(prom.WriteURL())
	if err != nil {
		b.Fatal(err)
	}
	ec := remotewrite.NewEndpointConfig(u)
	client, err := remotewrite.NewClient(ec, "bench")
	if err != nil {
		b.Fatal(err)
	}
	return &replayBench{info: info, prom: prom, ec: ec, client: client}
}

// startBenchReceiver starts the benchmarks' Prometheus, on the CPUs in
// REDWIRE_RECEIVER_CPUS if set; the benchmark must then not run on them.
func startBenchReceiver(b *testing.B) *harness.Prometheus {
	b.Helper()
	cpus := os.Getenv("REDWIRE_RECEIVER_CPUS")
	if cpus == "" {
		return harness.StartPrometheus(b)
	}
	status, err := os.ReadFile("/proc/self/status")
	if err != nil {
		b.Fatal(err)
	}
	for _, line := range strings.Split(string(status), "\n") {
		if own, ok := strings.CutPrefix(line, "Cpus_allowed_list:"); ok {
			own = strings.TrimSpace(own)
			if own == "" || !disjointCPUs(own, cpus) {
				b.Fatalf("REDWIRE_RECEIVER_CPUS=%s, but the benchmark may run on CPUs %s: start it under taskset -c with the others", cpus, own)
			}
			b.Logf("receiver on CPUs %s, agent on %s", cpus, own)
		}
	}
	return harness.StartPrometheusOn(b, cpus)
}

// disjointCPUs reports whether two CPU lists ("0-2,5") share no CPU.
func disjointCPUs(a, b string) bool {
	set := func(l string) map[int]bool {
		m := map[int]bool{}
		for _, part := range strings.Split(l, ",") {
			lo, hi, _ := strings.Cut(part, "-")
			from, err1 := strconv.Atoi(strings.TrimSpace(lo))
			to, err2 := strconv.Atoi(strings.TrimSpace(hi))
			if err2 != nil {
				to = from
			}
			if err1 != nil {
				return nil
			}
			for c := from; c <= to; c++ {
				m[c] = true
			}
		}
		return m
	}
	sa, sb := set(a), set(b)
	if sa == nil || sb == nil {
		return false
	}
	for c := range sa {
		if sb[c] {
			return false
		}
	}
	return true
}

// scrape is scrape k of a backlog that began at start: the INFO capture
// as one target's scrape at start+k seconds, labelled base.
func (r *replayBench) scrape(start time.Time, k int, base labels.Labels) sample.Batch {
	sc := sample.NewScrape(start.Add(time.Duration(k)*time.Second), base)
	redis.EmitInfo(sc, r.info)
	return sc.Batch()
}

// replayDrain is one 1-hour backlog in a bbolt store behind the agent's
// own buffer and endpoint sender, ready to drain.
type replayDrain struct {
	buf       *buffer.Buffer
	e         *sender
	reg       *prometheus.Registry
	samples   int
	diskBytes float64 // store file bytes per buffered sample
}

// newDrain writes a 1-hour backlog ending now, labelled
// instance=<instance>, into a fresh store (no fsync unless
// REDWIRE_DRAIN_FSYNC is set: this measures the drain, not the disk)
// and wires the endpoint exactly as the agent does
// for the default queue settings.
func (r *replayBench) newDrain(b *testing.B, instance string) *replayDrain {
	b.Helper()
	base := labels.FromStrings("instance", instance, "job", "redis")
	// REDWIRE_DRAIN_FSYNC=1 keeps the fsync of every commit, the acks'
	// included, as the agent has it.
	store, _, err := buffer.OpenStore(filepath.Join(b.TempDir(), "b.bbolt"), buffer.StoreOptions{NoSync: os.Getenv("REDWIRE_DRAIN_FSYNC") == ""})
	if err != nil {
		b.Fatal(err)
	}
	start := time.Now().Add(-backlogScrapes * time.Second)
	n := 0
	for k := range backlogScrapes {
		batch := r.scrape(start, k, base)
		if _, err := store.Append(batch); err != nil {
			b.Fatal(err)
		}
		n += batch.Len()
	}
	q := r.ec.QueueConfig
	buf := buffer.New(store, buffer.Options{Capacity: q.Capacity, MaxBatch: q.MaxSamplesPerSend, StoreBatch: DefaultReplayMaxSamplesPerSend,
		Deadline: time.Duration(q.BatchSendDeadline)})
	reg := prometheus.NewRegistry()
	e := &sender{
		name: "bench", client: r.client, buf: buf, threshold: 3,
		policy: remotewrite.Policy{MinBackoff: time.Duration(q.MinBackoff), MaxBackoff: time.Duration(q.MaxBackoff)},
		modes:  newModes(), m: newMetrics(reg), log: slog.New(slog.DiscardHandler),
	}
	return &replayDrain{
		buf: buf, e: e, reg: reg, samples: n,
		diskBytes: float64(store.Stats().FileBytes) / float64(n),
	}
}

// drainTimes splits a drain's wall time.
type drainTimes struct {
	wall time.Duration // the whole drain
	send time.Duration // in Client.Send: the request on the wire and the receiver's work
}

// run drains the backlog oldest-first with endpoint.run, until the store
// is empty. Whatever is not send is the agent's own work between
// requests that reading and encoding ahead did not hide: the ack (a bbolt
// delete), metrics, and waiting for the next body.
func (d *replayDrain) run(b *testing.B) drainTimes {
	b.Helper()
	var t drainTimes
	t0 := time.Now()
	d.buf.Drain()
	d.e.run(context.Background())
	t.wall = time.Since(t0)
	t.send = time.Duration(histogramSum(b, d.reg, "redwire_remote_write_request_duration_seconds") * float64(time.Second))
	if sent := byLabel(b, d.reg, "redwire_remote_write_samples_total", "result")["success"]; sent != float64(d.samples) {
		b.Fatalf("drain: the receiver accepted %v samples of %d", sent, d.samples)
	}
	return t
}

func (d *replayDrain) close(b *testing.B) {
	b.Helper()
	if _, err := d.buf.Close(); err != nil {
		b.Fatal(err)
	}
}

// histogramSum is the sum of observations of histogram name over all its
// series.
func histogramSum(b *testing.B, reg prometheus.Gatherer, name string) float64 {
	b.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		b.Fatal(err)
	}
	sum := 0.0
	for _, mf := range mfs {
		if mf.GetName() == name {
			for _, m := range mf.GetMetric() {
				sum += m.GetHistogram().GetSampleSum()
			}
		}
	}
	return sum
}
