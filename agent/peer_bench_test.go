//go:build linux

package agent

import (
	"context"
	"fmt"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/redwire/redwire/internal/harness"
)

// BenchmarkPeerSteadyState puts redwire beside the stack it replaces,
// prometheus-redis-exporter + vmagent, in one run on one machine: the
// same redis-servers, the same Prometheus receiver, the same 1 s
// interval, each at its shipped defaults. After a warm-up with both
// delivering, it measures over a fixed window the CPU time (utime+stime)
// and peak RSS (VmHWM) of each stack's processes, and counts in the
// receiver the samples each stack delivered that were taken in the window.
//
// The stacks do not send the same series (redwire sends families
// redis_exporter does not, and neither sends the other's self-metrics),
// so CPU is compared per delivered sample; the table in the log shows
// what each sends. The Redis servers' and the receiver's CPU is shared and
// counted for neither.
//
// Run with -benchtime 1x -count N (one iteration is one window; every run
// starts everything afresh) and compare medians. Settings, from the
// environment:
//
//	REDWIRE_PEER_TARGETS   redis-servers (default 10)
//	REDWIRE_PEER_WINDOW    measurement window (default 60s)
//	REDWIRE_PEER_WARMUP    steady state before it (default 15s)
//	REDWIRE_PEER_EXPORTER  per-target: one exporter per Redis (default,
//	                       the common deployment); multi: one exporter in
//	                       multi-target mode (/scrape?target=) for all
//	REDWIRE_PEER_PROFILE   <prefix>: redwire's CPU profile over the window
//	                       to <prefix>.cpu and its heap after it to
//	                       <prefix>.heap (profiling costs CPU: keep such
//	                       runs out of the figures)
func BenchmarkPeerSteadyState(b *testing.B) {
	exporters := "exporters=per-target"
	if peerSettingsFromEnv(b).multiExporter {
		exporters = "exporters=multi"
	}
	b.Run(exporters, benchPeerSteadyState)
}

func benchPeerSteadyState(b *testing.B) {
	s := peerSettingsFromEnv(b)
	bin := buildReleaseRedwire(b)
	rs := harness.StartRedisN(b, s.targets)
	for _, r := range rs {
		fillLikeACache(b, r)
	}
	prom := harness.StartPrometheus(b)
	peer := startPeerStack(b, s, prom.WriteURL(), rs)
	profile := os.Getenv("REDWIRE_PEER_PROFILE")
	rw := startRedwireBinary(b, bin, prom.WriteURL(), rs, profile != "")
	stacks := []*benchStack{rw, peer}

	for _, st := range stacks {
		harness.WaitFor(b, 60*time.Second, st.name+" delivering every target", func() (bool, error) {
			return st.upTargets(b, prom, time.Time{}) == s.targets, nil
		})
	}
	// A benchmark window, not synchronisation: both stacks run on their
	// own schedule and are only observed before and after.
	time.Sleep(s.warmUp)

	before := make([][]harness.ProcUsage, len(stacks))
	for i, st := range stacks {
		before[i] = st.usage(b)
	}
	// Whole milliseconds, the receiver's timestamp resolution, so that the
	// sample count below covers exactly (t0, t1].
	t0 := time.Now().Truncate(time.Millisecond)
	b.ResetTimer()
	var profiled chan error
	if profile != "" {
		profiled = make(chan error, 1)
		go func() {
			profiled <- rw.fetchProfile(fmt.Sprintf("profile?seconds=%d", int(time.Duration(b.N)*s.window/time.Second)), profile+".cpu")
		}()
	}
	time.Sleep(time.Duration(b.N) * s.window)
	b.StopTimer()
	if profiled != nil {
		if err := <-profiled; err != nil {
			b.Fatal(err)
		}
		if err := rw.fetchProfile("heap", profile+".heap"); err != nil {
			b.Fatal(err)
		}
	}
	t1 := time.Now().Truncate(time.Millisecond)
	after := make([][]harness.ProcUsage, len(stacks))
	for i, st := range stacks {
		after[i] = st.usage(b)
	}

	results := make([]stackResult, len(stacks))
	for i, st := range stacks {
		st.waitDeliveredPast(b, prom, t1)
		if up := st.upTargets(b, prom, t1); up != s.targets {
			b.Fatalf("%s: %d of %d targets up at the end of the window", st.name, up, s.targets)
		}
		results[i] = stackResult{
			name:     st.name,
			procs:    st.procs(),
			families: familySamples(b, prom, st.name, t0, t1),
			series:   seriesCount(b, prom, st.name, t0, t1),
			window:   t1.Sub(t0),
		}
		// CPU adds up exactly; peak RSS is the sum of each process's
		// peak, an upper bound of the stack's (the peaks need not
		// coincide; in steady state they are close).
		for j := range after[i] {
			results[i].procCPU = append(results[i].procCPU, after[i][j].CPU-before[i][j].CPU)
			results[i].procPeakRSS = append(results[i].procPeakRSS, after[i][j].PeakRSS)
			results[i].cpu += after[i][j].CPU - before[i][j].CPU
			results[i].peakRSS += after[i][j].PeakRSS
			results[i].anonRSS += after[i][j].AnonRSS
		}
		if results[i].samples() == 0 {
			b.Fatalf("%s delivered no sample taken in the window", st.name)
		}
	}
	redwire, other := results[0], results[1]
	cpuRatio := redwire.cpuPerSample() / other.cpuPerSample()
	rssRatio := float64(redwire.peakRSS) / float64(other.peakRSS)
	b.ReportMetric(redwire.cpuPerSample(), "redwire-cpu-ns/sample")
	b.ReportMetric(other.cpuPerSample(), "peer-cpu-ns/sample")
	b.ReportMetric(cpuRatio, "cpu-ratio")
	b.ReportMetric(mib(redwire.peakRSS), "redwire-peak-RSS-MiB")
	b.ReportMetric(mib(other.peakRSS), "peer-peak-RSS-MiB")
	b.ReportMetric(rssRatio, "rss-ratio")
	// Without the pages of their binaries: what memory pressure sees.
	b.ReportMetric(mib(redwire.anonRSS), "redwire-anon-RSS-MiB")
	b.ReportMetric(mib(other.anonRSS), "peer-anon-RSS-MiB")
	b.ReportMetric(float64(redwire.anonRSS)/float64(other.anonRSS), "anon-rss-ratio")
	b.ReportMetric(redwire.perSecond(redwire.samples()), "redwire-samples/s")
	b.ReportMetric(other.perSecond(other.samples()), "peer-samples/s")
	b.ReportMetric(float64(redwire.series), "redwire-series")
	b.ReportMetric(float64(other.series), "peer-series")
	// Not 0: the receiver fell behind and redwire wrote batches to disk,
	// so its CPU figure includes disk writes.
	b.ReportMetric(rw.spilledBatches(b, prom, t0, t1), "redwire-spilled-batches")
	b.Log(peerTable(s, results, cpuRatio, rssRatio))
	// Too long for the benchmark log, which is cut at ten lines; with -v
	// the result line follows the run, so stdout does not split it.
	if testing.Verbose() {
		fmt.Print(detailReport(results))
	}
}

// peerSettings are BenchmarkPeerSteadyState's knobs.
type peerSettings struct {
	targets       int
	window        time.Duration
	warmUp        time.Duration
	multiExporter bool
}

// peerInterval is both stacks' scrape interval.
const peerInterval = time.Second

func peerSettingsFromEnv(tb testing.TB) peerSettings {
	tb.Helper()
	s := peerSettings{targets: 10, window: 60 * time.Second, warmUp: 15 * time.Second}
	if v := os.Getenv("REDWIRE_PEER_TARGETS"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 {
			tb.Fatalf("REDWIRE_PEER_TARGETS=%q: want a positive number of redis-servers", v)
		}
		s.targets = n
	}
	for name, d := range map[string]*time.Duration{"REDWIRE_PEER_WINDOW": &s.window, "REDWIRE_PEER_WARMUP": &s.warmUp} {
		if v := os.Getenv(name); v != "" {
			parsed, err := time.ParseDuration(v)
			if err != nil || parsed < 0 {
				tb.Fatalf("%s=%q: want a duration such as 60s", name, v)
			}
			*d = parsed
		}
	}
	// Samples are counted per window and delivered within seconds; a
	// window of a few intervals would be all edges.
	if s.window < 10*peerInterval {
		tb.Fatalf("REDWIRE_PEER_WINDOW=%v: want at least %v", s.window, 10*peerInterval)
	}
	switch v := os.Getenv("REDWIRE_PEER_EXPORTER"); v {
	case "", "per-target":
	case "multi":
		s.multiExporter = true
	default:
		tb.Fatalf("REDWIRE_PEER_EXPORTER=%q: want per-target or multi", v)
	}
	return s
}

// buildReleaseRedwire builds redwire as `make build` does: without the
// race detector (which multiplies CPU and memory), without cgo, symbols
// stripped. Into the run's temp dir: the build cache makes a rebuild a
// link, and nothing outlives the run.
func buildReleaseRedwire(tb testing.TB) string {
	tb.Helper()
	bin := filepath.Join(tb.TempDir(), "redwire")
	cmd := exec.Command("go", "build", "-trimpath", "-ldflags=-s -w", "-o", bin, "../cmd/redwire")
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		tb.Fatalf("go build redwire: %v\n%s", err, out)
	}
	return bin
}

// fillLikeACache gives a server the keyspace and command mix of a small
// cache, so that INFO keyspace and commandstats (and the series both
// stacks derive from them) have the entries a real server has: two
// databases, keys with and without a TTL, the common data types.
func fillLikeACache(tb testing.TB, r *harness.Redis) {
	tb.Helper()
	ctx := context.Background()
	pipe := r.Client().Pipeline()
	pipe.Select(ctx, 0)
	for i := range 5000 {
		pipe.Set(ctx, fmt.Sprintf("session:%d", i), i, time.Duration(i%2)*time.Hour)
	}
	for i := range 500 {
		pipe.HSet(ctx, fmt.Sprintf("user:%d", i), "name", i, "visits", i)
		pipe.Get(ctx, fmt.Sprintf("session:%d", i))
		pipe.Incr(ctx, "counter")
	}
	for i := range 100 {
		pipe.RPush(ctx, fmt.Sprintf("queue:%d", i), 1, 2, 3)
		pipe.SAdd(ctx, fmt.Sprintf("tags:%d", i), "a", "b")
		pipe.Expire(ctx, fmt.Sprintf("tags:%d", i), time.Hour)
	}
	pipe.Select(ctx, 1)
	for i := range 1000 {
		pipe.Set(ctx, fmt.Sprintf("cache:%d", i), "x", time.Hour)
	}
	// The pipeline's connection goes back to the pool; leave it on db 0.
	pipe.Select(ctx, 0)
	if _, err := pipe.Exec(ctx); err != nil {
		tb.Fatalf("fill %s: %v", r.Addr(), err)
	}
}

// stackResult is one stack's figures over the window.
type stackResult struct {
	name        string
	procs       []benchProc
	procCPU     []time.Duration    // in the window, by process
	procPeakRSS []int64            // by process
	cpu         time.Duration      // the sum of procCPU
	peakRSS     int64              // the sum of procPeakRSS
	anonRSS     int64              // the processes' own memory (RssAnon) at the end of the window
	families    map[string]float64 // samples delivered, by family
	series      int
	window      time.Duration
}

func (r stackResult) samples() float64 {
	sum := 0.0
	for _, n := range r.families {
		sum += n
	}
	return sum
}

func (r stackResult) cpuPerSample() float64 { return float64(r.cpu.Nanoseconds()) / r.samples() }

func (r stackResult) perSecond(n float64) float64 { return n / r.window.Seconds() }

// familyKind sorts a family into what it is about: Redis itself, the
// monitoring processes' own metrics, or vmagent's per-scrape series.
func familyKind(name string) string {
	switch {
	case strings.HasPrefix(name, "redis_exporter_"), strings.HasPrefix(name, "redwire_"),
		strings.HasPrefix(name, "go_"), strings.HasPrefix(name, "process_"), strings.HasPrefix(name, "promhttp_"):
		return "self"
	case name == "up", strings.HasPrefix(name, "scrape_"):
		return "scrape"
	default:
		return "redis"
	}
}

func mib(b int64) float64 { return float64(b) / (1 << 20) }

// peerTable renders the figures in nine lines: the testing package keeps
// only the first ten lines of a benchmark's log.
func peerTable(s peerSettings, rs []stackResult, cpuRatio, rssRatio float64) string {
	var sb strings.Builder
	peer := fmt.Sprintf("%d exporters, one per Redis", s.targets)
	if s.multiExporter {
		peer = "one multi-target exporter"
	}
	fmt.Fprintf(&sb, "%d redis-servers, %v interval, %v window; peer = vmagent + %s\n",
		s.targets, peerInterval, rs[0].window.Round(time.Millisecond), peer)
	row := func(label string, f func(r stackResult) string) {
		fmt.Fprintf(&sb, "%-34s", label)
		for _, r := range rs {
			fmt.Fprintf(&sb, "%20s", f(r))
		}
		sb.WriteByte('\n')
	}
	row("", func(r stackResult) string { return r.name })
	row("CPU s (% of a core)", func(r stackResult) string {
		return fmt.Sprintf("%.2f (%.1f%%)", r.cpu.Seconds(), 100*r.cpu.Seconds()/r.window.Seconds())
	})
	row("peak RSS MiB (processes)", func(r stackResult) string { return fmt.Sprintf("%.1f (%d)", mib(r.peakRSS), len(r.procs)) })
	row("series / families", func(r stackResult) string { return fmt.Sprintf("%d / %d", r.series, len(r.families)) })
	row("samples/s (per target-scrape)", func(r stackResult) string {
		scrapes := float64(s.targets) * r.window.Seconds() / peerInterval.Seconds()
		return fmt.Sprintf("%.0f (%.0f)", r.perSecond(r.samples()), r.samples()/scrapes)
	})
	row("  of which redis / self / scrape", func(r stackResult) string {
		by := map[string]float64{}
		for f, c := range r.families {
			by[familyKind(f)] += c
		}
		return fmt.Sprintf("%.0f/%.0f/%.0f", r.perSecond(by["redis"]), r.perSecond(by["self"]), r.perSecond(by["scrape"]))
	})
	row("CPU ns per delivered sample", func(r stackResult) string { return fmt.Sprintf("%.0f", r.cpuPerSample()) })
	fmt.Fprintf(&sb, "redwire/peer: CPU per sample %.3f, peak RSS %.3f", cpuRatio, rssRatio)
	return sb.String()
}

// detailReport lists each stack's processes with their CPU and peak RSS,
// and its families with their samples per second, marking those the
// other stack does not send.
func detailReport(rs []stackResult) string {
	var sb strings.Builder
	for _, r := range rs {
		fmt.Fprintf(&sb, "processes of %s: CPU s in the window, peak RSS MiB:\n", r.name)
		for j, p := range r.procs {
			fmt.Fprintf(&sb, "  %-60s %8.2f %8.1f\n", p.name, r.procCPU[j].Seconds(), mib(r.procPeakRSS[j]))
		}
	}
	for i, r := range rs {
		fmt.Fprintf(&sb, "families %s delivered, samples/s (* = %s sends none):\n", r.name, rs[1-i].name)
		for _, f := range slices.Sorted(maps.Keys(r.families)) {
			mark := " "
			if _, ok := rs[1-i].families[f]; !ok {
				mark = "*"
			}
			fmt.Fprintf(&sb, "  %s %-60s %8.1f\n", mark, f, r.perSecond(r.families[f]))
		}
	}
	return sb.String()
}
