//go:build unix

package agent

import (
	"context"
	"errors"
	"fmt"
	"os"
	"runtime/pprof"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/prometheus/model/labels"

	"github.com/redwire/redwire/remotewrite"
	"github.com/redwire/redwire/sample"
)

// firehoseLargeRequest is the larger request size the firehose tries
// besides the default max_samples_per_send.
const firehoseLargeRequest = 10000

// BenchmarkDrainVsFirehose puts the replay drain next to the receiver's
// own maximum ingest rate, measured in the same run against the same
// Prometheus, so that their ratio holds however busy the machine is.
//
// Firehose: the same 1-hour backlog (≈300 series at 1 s), encoded ahead
// of time by the agent's own encoder into snappy-compressed requests of
// whole scrapes up to max_samples_per_send samples (as the store hands
// them out), and again up to 10,000, then POSTed by the agent's HTTP client
// as fast as it goes over C connections. Each connection sends its own
// contiguous slice of the hour under its own instance label, in time
// order, so the receiver never sees a sample out of order and requests
// keep the drain's shape. Every request must be accepted.
//
// Drain: exactly BenchmarkReplayDrain's path (bbolt store, buffer,
// endpoint.run with its default settings: one request in flight, the next
// prepared meanwhile).
//
// Each iteration drains once before the firehose runs and once after,
// because the receiver's head grows by ≈10M samples per iteration and
// both sides should see it at the same average size. Run with -benchtime
// 1x (one iteration ≈ 20 s on 2 cores); each -count starts a fresh
// Prometheus.
//
// REDWIRE_RECEIVER_CPUS=<list> runs Prometheus on those CPUs only (taskset
// -c), as on its own host; run the benchmark itself on the others, e.g.
//
//	REDWIRE_RECEIVER_CPUS=1 taskset -c 0 go test -run '^$' -bench DrainVsFirehose -benchtime 1x ./agent
//
// REDWIRE_DRAIN_PROFILE=<file> writes a CPU profile of each drain (and
// nothing else) to <file>.1, <file>.2, …, the first unused numbers;
// `go tool pprof -top <files>` merges them.
func BenchmarkDrainVsFirehose(b *testing.B) {
	// The name says whether the receiver had CPUs of its own, which the
	// ratio depends on.
	where := "receiver=shared-cpus"
	if os.Getenv("REDWIRE_RECEIVER_CPUS") != "" {
		where = "receiver=own-cpus"
	}
	b.Run(where, benchDrainVsFirehose)
}

func benchDrainVsFirehose(b *testing.B) {
	r := newReplayBench(b)
	sizes := []int{r.ec.QueueConfig.MaxSamplesPerSend, firehoseLargeRequest}
	// The receiver's maximum ingest rate is the best of these.
	firehoseConns := []int{1, 2, 4, 8}
	drain := &phaseTotals{size: r.ec.QueueConfig.MaxSamplesPerSend, conns: 1}
	var fire []*phaseTotals
	for _, size := range sizes {
		for _, c := range firehoseConns {
			fire = append(fire, &phaseTotals{size: size, conns: c})
		}
	}
	var send time.Duration
	iter := 0
	for b.Loop() {
		b.StopTimer()
		iter++
		head := fmt.Sprintf("iteration %d; receiver head before: %.0f series, %.3g samples",
			iter, r.promMetric(b, "prometheus_tsdb_head_series"), r.promMetric(b, "prometheus_tsdb_head_samples_appended_total"))
		var fh []phase // in the order of fire
		var drains []string
		for i, when := range []string{"before", "after"} {
			if i == 1 {
				for _, f := range fire {
					p := r.firehose(b, f.size, f.conns, fmt.Sprintf("fh-%d-%d-c%d", iter, f.size, f.conns))
					f.add(p)
					fh = append(fh, p)
				}
			}
			d := r.newDrain(b, fmt.Sprintf("drain-%d-%s", iter, when))
			var t drainTimes
			p := r.measure(b, d.samples, func() {
				stop := startDrainProfile(b)
				t = d.run(b)
				stop()
			})
			p.wall = t.wall // without the profile's start and stop
			p.requests = int(byLabel(b, d.reg, "redwire_remote_write_requests_total", "result")["success"])
			d.close(b)
			send += t.send
			drain.add(p)
			drains = append(drains, fmt.Sprintf("%-12s | %s | own CPU %.0f ns/sample; in Send %.0f%%",
				"drain "+when, p.cell(1), p.ownNsPerSample(), 100*t.send.Seconds()/t.wall.Seconds()))
		}
		// At most 10 lines: the testing package cuts a benchmark's log
		// there.
		var table strings.Builder
		fmt.Fprintf(&table, "%s\n%-12s", head, "")
		for _, size := range sizes {
			fmt.Fprintf(&table, " | %-28s", fmt.Sprintf("≤%d samples/req", size))
		}
		fmt.Fprintf(&table, "\n%-12s", "")
		for range sizes {
			fmt.Fprintf(&table, " | %10s %9s %7s", "samples/s", "rx-ns/smp", "ms/req")
		}
		for ci, c := range firehoseConns {
			fmt.Fprintf(&table, "\n%-12s", fmt.Sprintf("firehose C=%d", c))
			for si := range sizes {
				fmt.Fprintf(&table, " | %s", fh[si*len(firehoseConns)+ci].cell(c))
			}
		}
		for _, d := range drains {
			fmt.Fprintf(&table, "\n%s", d)
		}
		b.Log(table.String())
		b.StartTimer()
	}

	best := slices.MaxFunc(fire, compareRate)
	sameSize := slices.MaxFunc(fire[:len(firehoseConns)], compareRate) // the drain's request size
	b.ReportMetric(drain.rate(), "drain-samples/s")
	b.ReportMetric(best.rate(), "firehose-max-samples/s")
	b.ReportMetric(drain.rate()/best.rate(), "drain/firehose-max")
	b.ReportMetric(drain.rate()/sameSize.rate(), "drain/firehose-same-size")
	for _, f := range fire {
		b.ReportMetric(f.rate(), fmt.Sprintf("fh%d-c%d-samples/s", f.size, f.conns))
	}
	b.ReportMetric(send.Seconds()/drain.wall.Seconds(), "drain-send-share")
	b.ReportMetric(drain.ownNsPerSample(), "drain-own-cpu-ns/sample")
	b.ReportMetric(drain.rxNsPerSample(), "drain-rx-cpu-ns/sample")
	b.ReportMetric(best.rxNsPerSample(), "firehose-max-rx-cpu-ns/sample")
}

// phaseTotals adds up one kind of phase (a firehose variant, or the
// drain) over iterations.
type phaseTotals struct {
	size, conns int // samples per request, connections
	phase
}

func (t *phaseTotals) add(p phase) {
	t.samples += p.samples
	t.requests += p.requests
	t.wall += p.wall
	t.own += p.own
	t.rx += p.rx
}

func compareRate(x, y *phaseTotals) int {
	switch {
	case x.rate() < y.rate():
		return -1
	case x.rate() > y.rate():
		return 1
	}
	return 0
}

// phase is one measured send of a whole backlog.
type phase struct {
	samples, requests int
	wall              time.Duration
	own               time.Duration // this process's CPU (user+system)
	rx                time.Duration // the receiver's CPU
}

func (p phase) rate() float64 { return float64(p.samples) / p.wall.Seconds() }

func (p phase) ownNsPerSample() float64 { return float64(p.own) / float64(p.samples) }

func (p phase) rxNsPerSample() float64 { return float64(p.rx) / float64(p.samples) }

// cell is p as a cell of the iteration's table: samples/s, the
// receiver's CPU per sample, and the time one connection spent per
// request.
func (p phase) cell(conns int) string {
	return fmt.Sprintf("%10.0f %9.0f %7.2f", p.rate(), p.rxNsPerSample(), p.wall.Seconds()*1000*float64(conns)/float64(p.requests))
}

// measure runs send, which must deliver exactly samples samples, with the
// benchmark timer running, and checks that the receiver appended exactly
// that many: a 2xx is not taken on trust.
func (r *replayBench) measure(b *testing.B, samples int, send func()) phase {
	b.Helper()
	appended0 := r.promMetric(b, "prometheus_tsdb_head_samples_appended_total")
	rx0 := r.promMetric(b, "process_cpu_seconds_total")
	own0 := cpuTime(b)
	t0 := time.Now()
	b.StartTimer()
	send()
	b.StopTimer()
	p := phase{samples: samples, wall: time.Since(t0), own: cpuTime(b) - own0}
	p.rx = time.Duration((r.promMetric(b, "process_cpu_seconds_total") - rx0) * float64(time.Second))
	if got := r.promMetric(b, "prometheus_tsdb_head_samples_appended_total") - appended0; got != float64(samples) {
		b.Fatalf("sent %d samples, the receiver appended %.0f", samples, got)
	}
	return p
}

// firehose sends a 1-hour backlog ending now over conns connections in
// requests of whole scrapes up to size samples, connection w sending its
// slice of the hour as instance=<instance>-w<w>. Encoding happens before
// the clock starts.
func (r *replayBench) firehose(b *testing.B, size, conns int, instance string) phase {
	b.Helper()
	start := time.Now().Add(-backlogScrapes * time.Second)
	bodies := make([][][]byte, conns)
	samples, requests := 0, 0
	var enc remotewrite.Encoder
	for w := range conns {
		base := labels.FromStrings("instance", instance+"-w"+strconv.Itoa(w), "job", "redis")
		var req sample.Batch
		flush := func() {
			body, err := enc.Encode(&req)
			if err != nil {
				b.Fatal(err)
			}
			bodies[w] = append(bodies[w], slices.Clone(body))
			samples += req.Len()
			req.Samples = req.Samples[:0]
		}
		for k := w * backlogScrapes / conns; k < (w+1)*backlogScrapes/conns; k++ {
			// Samples only: the store keeps no metadata, and a drained
			// request carries none in BenchmarkReplayDrain either.
			sc := r.scrape(start, k, base).Samples
			if req.Len() > 0 && req.Len()+len(sc) > size {
				flush()
			}
			req.Samples = append(req.Samples, sc...)
		}
		flush()
		requests += len(bodies[w])
	}

	ctx, cancel := context.WithCancelCause(context.Background())
	defer cancel(nil)
	p := r.measure(b, samples, func() {
		var wg sync.WaitGroup
		for w := range conns {
			wg.Go(func() {
				for i, body := range bodies[w] {
					if err := r.client.Send(ctx, body); err != nil {
						cancel(fmt.Errorf("firehose connection %d, request %d of %d: %w", w, i+1, len(bodies[w]), err))
						return
					}
				}
			})
		}
		wg.Wait()
		if err := context.Cause(ctx); err != nil && !errors.Is(err, context.Canceled) {
			b.Fatal(err)
		}
	})
	p.requests = requests
	return p
}

// promMetric reads one of the receiver's own metrics.
func (r *replayBench) promMetric(b *testing.B, series string) float64 {
	b.Helper()
	v, err := r.prom.Metric(context.Background(), series)
	if err != nil {
		b.Fatal(err)
	}
	return v
}

// startDrainProfile starts a CPU profile into the first unused
// $REDWIRE_DRAIN_PROFILE.<n> if that variable is set, and writes the
// allocation profile to <n>.allocs0 now and <n>.allocs1 when the returned
// func stops it: `go tool pprof -sample_index=alloc_space -base <n>.allocs0
// <n>.allocs1` shows what the drain allocated.
func startDrainProfile(b *testing.B) (stop func()) {
	b.Helper()
	path := os.Getenv("REDWIRE_DRAIN_PROFILE")
	if path == "" {
		return func() {}
	}
	var f *os.File
	for n := 1; f == nil; n++ {
		var err error
		f, err = os.OpenFile(path+"."+strconv.Itoa(n), os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
		if err != nil && !errors.Is(err, os.ErrExist) {
			b.Fatal(err)
		}
	}
	writeAllocs := func(suffix string) {
		a, err := os.Create(f.Name() + suffix)
		if err != nil {
			b.Fatal(err)
		}
		defer a.Close()
		if err := pprof.Lookup("allocs").WriteTo(a, 0); err != nil {
			b.Fatal(err)
		}
	}
	writeAllocs(".allocs0")
	if err := pprof.StartCPUProfile(f); err != nil {
		b.Fatalf("REDWIRE_DRAIN_PROFILE: %v (is -cpuprofile set too?)", err)
	}
	return func() {
		pprof.StopCPUProfile()
		if err := f.Close(); err != nil {
			b.Fatal(err)
		}
		writeAllocs(".allocs1")
	}
}
