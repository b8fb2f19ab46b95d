//go:build unix

package agent

import (
	"os"
	"runtime"
	"syscall"
	"testing"
	"time"

	"github.com/redwire/redwire/buffer"
	"github.com/redwire/redwire/internal/harness"
	"github.com/redwire/redwire/sources/redis"
)

// benchTargets is how many real redis-servers BenchmarkTargetScrapeCPU
// polls.
const benchTargets = 200

// BenchmarkTargetScrapeCPU measures what one agent costs per target: it
// polls 200 real redis-servers every second, writing to a real Prometheus
// receiver, and reports the CPU time of this process (user + system,
// getrusage) per completed target scrape, and the heap in use per target.
// The CPU covers everything a scrape causes in the agent: INFO and the
// other commands, parsing, the memory queue, remote-write encoding and
// sending. One iteration is one scrape interval, measured after every
// target has been scraped once: run with -benchtime 5x for five seconds.
func BenchmarkTargetScrapeCPU(b *testing.B) {
	rs := harness.StartRedisN(b, benchTargets)
	targets := make([]redis.TargetConfig, len(rs))
	names := make([]string, len(rs))
	for i, r := range rs {
		targets[i] = redis.TargetConfig{Addr: r.URL()}
		names[i] = r.Addr()
	}
	prom := harness.StartPrometheus(b)
	// Slots to spare: this measures cost, not queueing.
	cfg := manyConfig(b, prom.WriteURL(), time.Second, 64, targets)
	// The crash journal is on by default (tmpfs); REDWIRE_BENCH_CRASH_JOURNAL=off
	// measures without it, for the A/B of its cost in BENCHMARKS.md.
	if os.Getenv("REDWIRE_BENCH_CRASH_JOURNAL") == buffer.CrashJournalOff {
		cfg.Buffer.CrashJournal = buffer.CrashJournalOff
	}
	heap0 := heapInUse()
	reg := startManyAgent(b, cfg)
	harness.WaitFor(b, 60*time.Second, "every target scraped twice", func() (bool, error) {
		scrapes := byTarget(b, reg, "redwire_target_scrapes_total")
		return countWhere(names, scrapes, func(v float64, _ bool) bool { return v < 2 }) == 0, nil
	})

	scrapes0 := sumOf(names, byTarget(b, reg, "redwire_target_scrapes_total"))
	cpu0 := cpuTime(b)
	b.ResetTimer()
	// A benchmark window, not synchronisation: the agent runs on its own
	// schedule and is only observed before and after.
	time.Sleep(time.Duration(b.N) * time.Duration(cfg.Global.ScrapeInterval))
	b.StopTimer()
	cpu := cpuTime(b) - cpu0
	scrapes := sumOf(names, byTarget(b, reg, "redwire_target_scrapes_total")) - scrapes0
	heap := heapInUse() - heap0
	spilled := 0.0
	for _, v := range byLabel(b, reg, "redwire_buffer_batches", "endpoint") {
		spilled += v
	}

	if scrapes == 0 {
		b.Fatal("no scrape completed in the window")
	}
	b.ReportMetric(float64(cpu.Microseconds())/scrapes, "cpu-µs/target-scrape")
	b.ReportMetric(float64(heap)/benchTargets/1024, "heap-KiB/target")
	b.ReportMetric(scrapes/float64(b.N), "target-scrapes/interval")
	// Not 0: the receiver fell behind and batches went to disk, so the CPU
	// figure includes disk writes and is not comparable.
	b.ReportMetric(spilled, "spilled-batches")
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
