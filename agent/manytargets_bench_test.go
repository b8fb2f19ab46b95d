//go:build unix

package agent

import (
	"fmt"
	"os"
	"runtime"
	"syscall"
	"testing"
	"time"

	"github.com/redwire/redwire/buffer"
	"github.com/redwire/redwire/internal/harness"
	"github.com/redwire/redwire/remotewrite"
	"github.com/redwire/redwire/sources/redis"
)

// journalBenchSettings are the scales at which issue 16 asks the crash
// journal to cost at most +5 % CPU per scrape: one Redis at 1 s, as a new
// user would run the agent (the default queue: a batch waits up to 5 s),
// and 2000 Redis at 10 s (a queue sized to keep up, as manyConfig says;
// the default one spills to disk at 60,000 samples a second, which
// measures the disk).
var journalBenchSettings = []struct {
	targets      int
	interval     time.Duration
	defaultQueue bool
	// intervals each side is measured for in one round.
	intervals int
}{
	{targets: 1, interval: time.Second, defaultQueue: true, intervals: 20},
	{targets: 2000, interval: 10 * time.Second, intervals: 3},
}

// BenchmarkTargetScrapeCPU measures what the crash journal costs per
// target scrape at the scales of journalBenchSettings: real redis-servers
// polled by the agent, writing to a real Prometheus receiver. One round
// (one count of -benchtime 1x) runs the agent with the journal on (in a
// directory on /dev/shm, tmpfs) and then off (buffer.crash_journal: off)
// against the same servers, each after every target has been scraped
// twice, and reports for each the CPU time of this process (user +
// system, getrusage: CPU, not wall time, so a busy machine skews it
// less) per completed target scrape, and their ratio. A round is one
// pair so that -count 6 alternates on and off and benchstat's medians
// compare like with like. The CPU covers everything a scrape causes in
// the agent: INFO and the other commands, parsing, the memory queue and
// its journal, remote-write encoding and sending.
//
//	go test -run '^$' -bench 'TargetScrapeCPU/targets=1,' -benchtime 1x -count 6 ./agent
func BenchmarkTargetScrapeCPU(b *testing.B) {
	for _, s := range journalBenchSettings {
		b.Run(fmt.Sprintf("targets=%d,interval=%s", s.targets, s.interval), func(b *testing.B) {
			// hz 1: at the default hz 10, 2000 idle redis-servers' own
			// timers starve this 2-core machine (BenchmarkScaleCurve).
			rs := harness.StartRedisN(b, s.targets, harness.WithArgs("--hz", "1"))
			targets := make([]redis.TargetConfig, len(rs))
			names := make([]string, len(rs))
			for i, r := range rs {
				targets[i] = redis.TargetConfig{Addr: r.URL()}
				names[i] = r.Addr()
			}
			prom := harness.StartPrometheus(b)
			config := func(journal string) *Config {
				cfg := manyConfig(b, prom.WriteURL(), s.interval, 0, targets)
				if s.defaultQueue {
					cfg.RemoteWrite[0].QueueConfig = remotewrite.NewEndpointConfig(cfg.RemoteWrite[0].URL.URL).QueueConfig
				}
				cfg.Buffer.CrashJournal = journal
				return cfg
			}
			b.Run("journal=on-vs-off", func(b *testing.B) {
				var on, off scrapeCPU
				for b.Loop() {
					on.add(measureScrapeCPU(b, config(benchJournalDir(b)), names, s.intervals))
					off.add(measureScrapeCPU(b, config(buffer.CrashJournalOff), names, s.intervals))
				}
				b.ReportMetric(on.perScrape(), "on-cpu-µs/target-scrape")
				b.ReportMetric(off.perScrape(), "off-cpu-µs/target-scrape")
				b.ReportMetric(100*(on.perScrape()/off.perScrape()-1), "journal-cost-%")
				// Not 0: the receiver fell behind and batches went to disk,
				// so the CPU figures include disk writes and are not
				// comparable.
				b.ReportMetric(on.spilled+off.spilled, "spilled-batches")
			})
		})
	}
}

// scrapeCPU is the CPU an agent used over some completed target scrapes.
type scrapeCPU struct {
	cpu     time.Duration
	scrapes float64
	spilled float64
}

func (s *scrapeCPU) add(o scrapeCPU) {
	s.cpu += o.cpu
	s.scrapes += o.scrapes
	s.spilled += o.spilled
}

func (s scrapeCPU) perScrape() float64 { return float64(s.cpu.Microseconds()) / s.scrapes }

// measureScrapeCPU runs an agent with cfg until every target of names has
// been scraped twice, then measures the CPU of this process over the
// given number of scrape intervals, and stops the agent.
func measureScrapeCPU(b *testing.B, cfg *Config, names []string, intervals int) scrapeCPU {
	b.Helper()
	a := runAgent(b, cfg)
	defer a.stop()
	harness.WaitFor(b, 6*time.Duration(cfg.Global.ScrapeInterval)+30*time.Second, "every target scraped twice", func() (bool, error) {
		scrapes := byTarget(b, a.reg, "redwire_target_scrapes_total")
		behind := countWhere(names, scrapes, func(v float64, _ bool) bool { return v < 2 })
		return behind == 0, fmt.Errorf("%d targets scraped less than twice", behind)
	})
	runtime.GC() // not the garbage of what ran before
	scrapes0 := sumOf(names, byTarget(b, a.reg, "redwire_target_scrapes_total"))
	cpu0 := cpuTime(b)
	// A measurement window, not synchronisation: the agent runs on its
	// own schedule and is only observed before and after.
	time.Sleep(time.Duration(intervals) * time.Duration(cfg.Global.ScrapeInterval))
	m := scrapeCPU{cpu: cpuTime(b) - cpu0}
	m.scrapes = sumOf(names, byTarget(b, a.reg, "redwire_target_scrapes_total")) - scrapes0
	for _, v := range byLabel(b, a.reg, "redwire_buffer_batches", "endpoint") {
		m.spilled += v
	}
	if m.scrapes == 0 {
		b.Fatal("no scrape completed in the window")
	}
	return m
}

// benchJournalDir is a crash journal directory on tmpfs (/dev/shm), as
// buffer.crash_journal: auto picks, removed when the benchmark ends; the
// temp dir where there is no /dev/shm.
func benchJournalDir(b *testing.B) string {
	b.Helper()
	if fi, err := os.Stat("/dev/shm"); err != nil || !fi.IsDir() {
		return b.TempDir()
	}
	dir, err := os.MkdirTemp("/dev/shm", "redwire-bench")
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { os.RemoveAll(dir) })
	return dir
}

// cpuTime is the user plus system CPU time this process has used.
func cpuTime(tb testing.TB) time.Duration {
	tb.Helper()
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		tb.Fatalf("getrusage: %v", err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// heapInUse is the heap in use after a collection: live data, not garbage
// waiting for the next cycle.
func heapInUse() int64 {
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return int64(ms.HeapInuse)
}
