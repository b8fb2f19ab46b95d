//go:build linux

package agent

import (
	"context"
	"fmt"
	"io"
	"maps"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/prometheus/prometheus/model/labels"

	"github.com/redwire/redwire/buffer"
	"github.com/redwire/redwire/internal/harness"
)

// The fleet benchmark's knobs.
const (
	fleetSizeEnv    = "REDWIRE_FLEET_N"       // agents; default defaultFleetSize
	fleetBacklogEnv = "REDWIRE_FLEET_BACKLOG" // each agent's backlog at 1 s; default defaultFleetBacklog
	// defaultFleetSize is what this 2-CPU machine holds beside the
	// receiver with room to spare (issue 15 asks for 20 to 50).
	defaultFleetSize = 20
	// defaultFleetBacklog is half an hour at 1 s, ≈540k samples per
	// agent. It must stay under an hour: Prometheus refuses samples
	// older than its head's newest minus an hour (out of bounds).
	defaultFleetBacklog = 30 * time.Minute
	// fleetFirehoseWindow is how long each firehose variant runs to
	// measure the receiver's maximum ingest.
	fleetFirehoseWindow = 10 * time.Second
	// fleetDrainDeadline bounds the drain: past it the benchmark fails.
	fleetDrainDeadline = 20 * time.Minute
)

// BenchmarkFleetReconnect is issue 15's fleet: edge sites lose their
// link together, and when it comes back every agent replays its backlog
// into the one receiver at the same moment.
//
// One iteration:
//
//  1. A real Prometheus 2.42 and a real redis-server start. The
//     receiver's maximum ingest is measured first, in the same run:
//     pre-encoded remote-write 1.0 requests of the agents' replay size
//     (replay.max_samples_per_send, 10,000) and the agents' series shape
//     (the INFO capture of BenchmarkReplayDrain), POSTed as fast as they
//     go over K connections (K = 4 and K = N), ≈10 s each; the best
//     rate is the maximum.
//  2. The receiver stops. Each of N agents gets a buffer directory whose
//     endpoint file already holds a backlog (REDWIRE_FLEET_BACKLOG of
//     scrapes at 1 s, default 30 min) labelled as that agent's own
//     scrapes would be: job, instance of the shared Redis, and the
//     agent's external label site=<i>. Written with the buffer package
//     beforehand rather than scraped in real time: a bigger backlog than
//     the run could wait for, of a known size.
//  3. N release-built redwire processes start, at shipped defaults
//     (replay.start_jitter 5 s, probe every 2 s, no replay rate limit)
//     but for a 1 s scrape interval, all scraping the one Redis and
//     writing to the stopped receiver; the benchmark waits until every
//     one is degraded and holds its backlog.
//  4. The receiver starts again on the same URL. The clock runs from
//     its readiness until every agent reports redwire_buffer_samples 0
//     and redwire_degraded 0.
//
// Reported: the samples the agents delivered meanwhile (backlog and the
// live scrapes that queued behind it), the drain time, the ideal time
// (samples / maximum ingest) and their ratio (goal ≤ 1.25), what the
// receiver refused (its out-of-order and out-of-bounds counters, and
// the agents' refused requests) and the agents' failed tries: 429s, and
// retries (5xx, timeouts, network errors). Also the ratio against the
// firehose over N connections, and the agents' and the receiver's CPU per
// delivered sample, which say where the time went when the ratio is
// high. Run with -benchtime 1x; each
// iteration is a whole fleet with its own receiver.
//
// REDWIRE_RECEIVER_CPUS holds the receiver to CPUs as in
// BenchmarkDrainVsFirehose; by default everything shares the machine.
func BenchmarkFleetReconnect(b *testing.B) {
	n := defaultFleetSize
	if v := os.Getenv(fleetSizeEnv); v != "" {
		var err error
		if n, err = strconv.Atoi(v); err != nil || n < 1 {
			b.Fatalf("%s=%q: want a number of agents ≥ 1", fleetSizeEnv, v)
		}
	}
	backlog := defaultFleetBacklog
	if v := os.Getenv(fleetBacklogEnv); v != "" {
		var err error
		if backlog, err = time.ParseDuration(v); err != nil || backlog < time.Second || backlog > 55*time.Minute {
			b.Fatalf("%s=%q: want a duration from 1s to 55m (the receiver refuses samples an hour behind its newest)", fleetBacklogEnv, v)
		}
	}
	b.Run(fmt.Sprintf("agents=%d/backlog=%s", n, backlog), func(b *testing.B) {
		benchFleetReconnect(b, n, backlog)
	})
}

func benchFleetReconnect(b *testing.B, n int, backlog time.Duration) {
	bin := buildReleaseRedwire(b)
	var rs []fleetResult
	iter := 0
	for b.Loop() {
		b.StopTimer()
		iter++
		r := newReplayBench(b)
		red := harness.StartRedis(b)
		maxRate, atN := fleetMaxIngest(b, r, n, iter)
		f := startFleet(b, r, bin, red, n, backlog)
		b.StartTimer()
		res := f.reconnect(b, r)
		b.StopTimer()
		res.maxRate, res.rateAtN = maxRate, atN
		b.Log(res.String())
		rs = append(rs, res)
		f.stop()
		r.prom.Stop()
		b.StartTimer()
	}
	// One iteration at -benchtime 1x; over several, sums (counts, times)
	// and means (rates).
	var samples, drain, ideal, idealAtN, maxRate, rejections, limited, retries, rx5xx, dropped, first float64
	for _, r := range rs {
		samples += r.samples
		drain += r.drain.Seconds()
		ideal += r.ideal().Seconds()
		idealAtN += r.samples / r.rateAtN
		maxRate += r.maxRate / float64(len(rs))
		rejections += r.rejections()
		limited += r.agent["rate_limited"]
		retries += r.agent["retry"]
		rx5xx += r.rx5xx
		dropped += r.dropped
		first += r.firstDone.Seconds() / float64(len(rs))
	}
	b.ReportMetric(samples, "samples")
	b.ReportMetric(drain, "drain-s")
	b.ReportMetric(ideal, "ideal-s")
	b.ReportMetric(drain/ideal, "ratio")
	// The same against the firehose over N connections: what N writers
	// at once cost the receiver is not the agents' doing.
	b.ReportMetric(drain/idealAtN, "ratio-vs-N-conns")
	b.ReportMetric(samples/drain, "drain-samples/s")
	b.ReportMetric(maxRate, "max-ingest-samples/s")
	b.ReportMetric(rejections, "rejections")
	b.ReportMetric(limited, "429s")
	b.ReportMetric(retries, "retries")
	b.ReportMetric(rx5xx, "rx-5xx")
	b.ReportMetric(dropped, "dropped")
	b.ReportMetric(first, "first-done-s")
	var agentCPU, rxCPU time.Duration
	for _, r := range rs {
		agentCPU += r.agentCPU
		rxCPU += r.rxCPU
	}
	b.ReportMetric(float64(agentCPU.Nanoseconds())/samples, "agents-cpu-ns/sample")
	b.ReportMetric(float64(rxCPU.Nanoseconds())/samples, "rx-cpu-ns/sample")
}

// fleetMaxIngest is the receiver's maximum ingest rate in samples/s:
// the best of firehoses over 4 and n connections (and the rate over n), each sending rounds
// of BenchmarkDrainVsFirehose's firehose (one hour of the INFO capture,
// in requests of the replay's size, under fresh instance labels: the
// head takes nothing an hour older than its newest sample) for
// fleetFirehoseWindow. Every request must be taken and every sample
// appended (replayBench.measure).
func fleetMaxIngest(b *testing.B, r *replayBench, n, iter int) (best, atN float64) {
	b.Helper()
	var lines []string
	for _, k := range slices.Compact([]int{4, n}) {
		var total phase
		for round := 0; total.wall < fleetFirehoseWindow; round++ {
			p := r.firehose(b, DefaultReplayMaxSamplesPerSend, k, fmt.Sprintf("fleet-fh-%d-c%d-r%d", iter, k, round))
			total.samples += p.samples
			total.requests += p.requests
			total.wall += p.wall
			total.rx += p.rx
		}
		best = max(best, total.rate())
		if k == n {
			atN = total.rate()
		}
		lines = append(lines, fmt.Sprintf("firehose K=%d: %.0f samples in %.1f s = %.0f samples/s, receiver CPU %.0f ns/sample",
			k, float64(total.samples), total.wall.Seconds(), total.rate(), total.rxNsPerSample()))
	}
	b.Log(strings.Join(lines, "\n"))
	return best, atN
}

// fleet is N redwire processes sharing one Redis and one receiver.
type fleet struct {
	agents []*fleetAgent
}

// fleetAgent is one agent of the fleet.
type fleetAgent struct {
	site    int
	web     string // host:port of its /metrics
	proc    *benchProcess
	backlog int // samples written into its buffer file before it started
}

// startFleet stops the receiver, writes each agent's backlog into its
// buffer file, starts the agents, and returns once every one is degraded
// and holds at least its backlog on disk.
func startFleet(b *testing.B, r *replayBench, bin string, red *harness.Redis, n int, backlog time.Duration) *fleet {
	b.Helper()
	r.prom.Stop()
	f := &fleet{}
	endpoint := r.ec.Label() // the endpoint's name, as --remote-write.url gives it
	t0 := time.Now()
	for i := range n {
		dir := b.TempDir()
		bufDir := filepath.Join(dir, "buffer")
		base := labels.FromStrings("instance", red.Addr(), "job", "redis", "site", strconv.Itoa(i))
		a := &fleetAgent{site: i, web: fmt.Sprintf("127.0.0.1:%d", harness.FreePort(b))}
		a.backlog = writeFleetBacklog(b, r, buffer.EndpointFile(bufDir, endpoint).Path, base, backlog)
		a.proc = startBenchProcess(b, bin, filepath.Join(dir, "redwire.log"), []string{
			"--remote-write.url=" + r.prom.WriteURL(),
			"--redis.addr=" + red.URL(),
			"--scrape.interval=1s",
			"--global.external-labels=site=" + strconv.Itoa(i),
			"--buffer.path=" + bufDir,
			// Its own journal directory: nothing left in /dev/shm.
			"--buffer.crash-journal=" + filepath.Join(dir, "journal"),
			"--web.listen-address=" + a.web,
		})
		f.agents = append(f.agents, a)
	}
	b.Logf("%d backlogs of %d samples written and %d agents started in %.1f s",
		n, f.agents[0].backlog, n, time.Since(t0).Seconds())
	harness.WaitFor(b, 2*time.Minute, "every agent degraded, holding its backlog", func() (bool, error) {
		for _, a := range f.agents {
			m, err := a.metrics()
			if err != nil {
				return false, nil // not serving yet
			}
			if m.get("redwire_degraded") != 1 || m.get("redwire_buffer_samples") < float64(a.backlog) {
				return false, nil
			}
		}
		return true, nil
	})
	return f
}

// writeFleetBacklog writes backlog's worth of scrapes at 1 s, ending now,
// labelled base, into the store file path, and returns their samples.
func writeFleetBacklog(b *testing.B, r *replayBench, path string, base labels.Labels, backlog time.Duration) int {
	b.Helper()
	// No fsync while writing: the agent opens the file after Close, and
	// this measures the drain, not the disk.
	store, _, err := buffer.OpenStore(path, buffer.StoreOptions{NoSync: true})
	if err != nil {
		b.Fatal(err)
	}
	scrapes := int(backlog / time.Second)
	start := time.Now().Add(-time.Duration(scrapes) * time.Second)
	n := 0
	for k := range scrapes {
		batch := r.scrape(start, k, base)
		if _, err := store.Append(batch); err != nil {
			b.Fatal(err)
		}
		n += batch.Len()
	}
	if err := store.Close(); err != nil {
		b.Fatal(err)
	}
	return n
}

// fleetResult is one reconnect, or the sum of several.
type fleetResult struct {
	samples   float64            // delivered by the agents during the drain
	appended  float64            // appended by the receiver during the drain
	drain     time.Duration      // receiver ready → every agent drained
	firstDone time.Duration      // receiver ready → the first agent drained
	maxRate   float64            // the receiver's maximum ingest, samples/s
	rateAtN   float64            // its ingest from as many connections as agents
	agent     map[string]float64 // the agents' requests during the drain, by result
	rxOOO     float64            // receiver: out-of-order samples
	rxOOB     float64            // receiver: out-of-bounds samples
	rx5xx     float64            // receiver: remote-write requests answered 5xx
	dropped   float64            // the agents' dropped samples
	startTook time.Duration      // the receiver's start, WAL replay included
	agentCPU  time.Duration      // the agents' CPU during the drain
	rxCPU     time.Duration      // the receiver's CPU during the drain
	inSend    time.Duration      // the agents' requests' durations, summed
}

// perSample is d per delivered sample, in ns.
func (r fleetResult) perSample(d time.Duration) float64 {
	return float64(d.Nanoseconds()) / r.samples
}

func (r fleetResult) ideal() time.Duration {
	return time.Duration(r.samples / r.maxRate * float64(time.Second))
}

func (r fleetResult) rejections() float64 { return r.rxOOO + r.rxOOB + r.agent["rejected"] }

func (r fleetResult) String() string {
	var results []string
	for _, k := range slices.Sorted(maps.Keys(r.agent)) {
		results = append(results, fmt.Sprintf("%s %.0f", k, r.agent[k]))
	}
	return fmt.Sprintf("receiver started in %.1f s (WAL replay included, not timed)\n"+
		"drained %.0f samples (receiver appended %.0f) in %.1f s (first agent done at %.1f s); "+
		"max ingest %.0f samples/s → ideal %.1f s, ratio %.2f\n"+
		"agents' requests: %s; dropped %.0f\n"+
		"receiver: out-of-order %.0f, out-of-bounds %.0f, 5xx answers %.0f\n"+
		"CPU per sample: agents %.0f ns, receiver %.0f ns (%.2f of 2 CPUs over the drain); mean request %.0f ms",
		r.startTook.Seconds(), r.samples, r.appended, r.drain.Seconds(), r.firstDone.Seconds(),
		r.maxRate, r.ideal().Seconds(), r.drain.Seconds()/r.ideal().Seconds(),
		strings.Join(results, ", "), r.dropped, r.rxOOO, r.rxOOB, r.rx5xx,
		r.perSample(r.agentCPU), r.perSample(r.rxCPU), (r.agentCPU+r.rxCPU).Seconds()/r.drain.Seconds()/2,
		r.inSend.Seconds()*1000/r.agent["success"])
}

// reconnect starts the receiver and waits until every agent has drained
// its backlog and is back to normal.
func (f *fleet) reconnect(b *testing.B, r *replayBench) fleetResult {
	b.Helper()
	before := f.totals(b)
	t0 := time.Now()
	r.prom.Start()
	ready := time.Now()
	res := fleetResult{startTook: ready.Sub(t0)}
	// The tries that failed while the receiver was starting (WAL replay)
	// belong to the outage: results count from its readiness.
	atReady := f.totals(b)
	rx5xx := func() float64 {
		n := 0.0
		for _, code := range []string{"500", "503"} {
			n += r.promMetric(b, fmt.Sprintf(`prometheus_http_requests_total{handler="/api/v1/write",code=%q}`, code))
		}
		return n
	}
	rx5xx0 := rx5xx() // the 503s of a receiver not ready yet
	rxCPU0 := r.promMetric(b, "process_cpu_seconds_total")
	// Counted from the receiver's restart: what the agents sent between
	// its readiness and this read is a few milliseconds' worth.
	appended0 := r.promMetric(b, "prometheus_tsdb_head_samples_appended_total")

	done := make([]time.Duration, len(f.agents))
	left := len(f.agents)
	harness.WaitFor(b, fleetDrainDeadline, "every agent drained and back to normal", func() (bool, error) {
		for i, a := range f.agents {
			if done[i] != 0 {
				continue
			}
			m, err := a.metrics()
			if err != nil {
				b.Fatalf("agent site=%d: %v", a.site, err)
			}
			if m.has("redwire_buffer_samples") && m.get("redwire_buffer_samples") == 0 && m.get("redwire_degraded") == 0 {
				done[i] = time.Since(ready)
				left--
			}
		}
		return left == 0, fmt.Errorf("%d of %d agents still hold a backlog or are degraded", left, len(f.agents))
	})
	res.drain, res.firstDone = slices.Max(done), slices.Min(done)

	after := f.totals(b)
	res.samples = after.get("redwire_remote_write_samples_total|success") - before.get("redwire_remote_write_samples_total|success")
	res.dropped = after.get("redwire_samples_dropped_total") - before.get("redwire_samples_dropped_total")
	res.agent = map[string]float64{}
	for k, v := range after {
		if result, ok := strings.CutPrefix(k, "redwire_remote_write_requests_total|"); ok && v-atReady[k] != 0 {
			res.agent[result] = v - atReady[k]
		}
	}
	res.appended = r.promMetric(b, "prometheus_tsdb_head_samples_appended_total") - appended0
	// The receiver's counters started at 0 with its restart.
	res.rxOOO = r.promMetric(b, "prometheus_tsdb_out_of_order_samples_total")
	res.rxOOB = r.promMetric(b, "prometheus_tsdb_out_of_bound_samples_total")
	res.rx5xx = rx5xx() - rx5xx0
	res.rxCPU = fleetSeconds(r.promMetric(b, "process_cpu_seconds_total") - rxCPU0)
	res.agentCPU = fleetSeconds(after.get("process_cpu_seconds_total") - atReady.get("process_cpu_seconds_total"))
	const inSend = "redwire_remote_write_request_duration_seconds_sum"
	res.inSend = fleetSeconds(after.get(inSend) - atReady.get(inSend))
	slices.Sort(done)
	b.Logf("agents drained at (s after the receiver was ready): first %.1f, median %.1f, last %.1f",
		done[0].Seconds(), done[len(done)/2].Seconds(), done[len(done)-1].Seconds())
	return res
}

func fleetSeconds(s float64) time.Duration { return time.Duration(s * float64(time.Second)) }

// totals sums the fleet's counters that reconnect reports.
func (f *fleet) totals(b *testing.B) agentMetrics {
	b.Helper()
	sum := agentMetrics{}
	for _, a := range f.agents {
		m, err := a.metrics()
		if err != nil {
			b.Fatalf("agent site=%d: %v", a.site, err)
		}
		for k, v := range m {
			sum[k] += v
		}
	}
	return sum
}

// stop ends every agent now; Cleanup would otherwise do it at the end of
// the benchmark, and the next iteration's fleet should not share the
// machine with this one.
func (f *fleet) stop() {
	for _, a := range f.agents {
		a.proc.terminate()
	}
}

// terminate sends SIGTERM and waits; a no-op once the process has exited.
func (p *benchProcess) terminate() {
	if p.pid() == 0 {
		return
	}
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(30 * time.Second):
		_ = p.cmd.Process.Kill()
		<-p.done
	}
}

// agentMetrics is an agent's /metrics: each family's sum under its name,
// and each family with a result label also under "name|result".
type agentMetrics map[string]float64

func (m agentMetrics) get(k string) float64 { return m[k] }

func (m agentMetrics) has(k string) bool { _, ok := m[k]; return ok }

var fleetHTTP = &http.Client{Timeout: 10 * time.Second}

// metrics reads the agent's /metrics once.
func (a *fleetAgent) metrics() (agentMetrics, error) {
	req, err := http.NewRequestWithContext(context.Background(), http.MethodGet, "http://"+a.web+"/metrics", nil)
	if err != nil {
		return nil, err
	}
	resp, err := fleetHTTP.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("GET /metrics: %s", resp.Status)
	}
	m := agentMetrics{}
	for _, line := range strings.Split(string(body), "\n") {
		if line == "" || line[0] == '#' {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		if i < 0 {
			continue
		}
		v, err := strconv.ParseFloat(line[i+1:], 64)
		if err != nil {
			continue
		}
		series := line[:i]
		name, rest, _ := strings.Cut(series, "{")
		m[name] += v
		if _, r, ok := strings.Cut(rest, `result="`); ok {
			if result, _, ok := strings.Cut(r, `"`); ok {
				m[name+"|"+result] += v
			}
		}
	}
	return m, nil
}
