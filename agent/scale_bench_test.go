//go:build unix

package agent

import (
	"fmt"
	"os"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/redwire/redwire/internal/harness"
	"github.com/redwire/redwire/sources/redis"
)

// BenchmarkScaleCurve runs the agent on one core (GOMAXPROCS=1) against N
// real redis-servers at 10 s, for each N in REDWIRE_SCALE (default
// "200,500,1000"), pushing to a real Prometheus. After every target has
// been scraped twice it watches three intervals and reports the fraction
// of a core the agent used, CPU per target scrape, heap per target, the
// scrapes skipped for want of a slot (not keeping up), and how many
// targets one core would carry at that cost. Run with -benchtime 1x.
func BenchmarkScaleCurve(b *testing.B) {
	sizes := []int{200, 500, 1000}
	if s := os.Getenv("REDWIRE_SCALE"); s != "" {
		sizes = nil
		for _, f := range strings.Split(s, ",") {
			n, err := strconv.Atoi(strings.TrimSpace(f))
			if err != nil || n <= 0 {
				b.Fatalf("REDWIRE_SCALE=%q: %q is not a target count", s, f)
			}
			sizes = append(sizes, n)
		}
	}
	const interval = 10 * time.Second
	for _, n := range sizes {
		b.Run(fmt.Sprintf("targets=%d", n), func(b *testing.B) {
			defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(1))
			// At the default hz 10, 2000 idle redis-servers' own timers load
			// this 2-core machine to 30 and starve everything; hz 1 leaves
			// the CPU to the agent under test.
			rs := harness.StartRedisN(b, n, harness.WithArgs("--hz", "1"))
			targets := make([]redis.TargetConfig, n)
			names := make([]string, n)
			for i, r := range rs {
				targets[i] = redis.TargetConfig{Addr: r.URL()}
				names[i] = r.Addr()
			}
			prom := harness.StartPrometheus(b)
			cfg := manyConfig(b, prom.WriteURL(), interval, 0, targets)
			heap0 := heapInUse()
			reg := startManyAgent(b, cfg)
			harness.WaitFor(b, 12*interval, "every target scraped twice", func() (bool, error) {
				scrapes := byTarget(b, reg, "redwire_target_scrapes_total")
				behind := countWhere(names, scrapes, func(v float64, _ bool) bool { return v < 2 })
				skipped := sumOf(names, byTarget(b, reg, "redwire_target_scrapes_skipped_total"))
				return behind == 0, fmt.Errorf("%d targets scraped less than twice, %v scrapes skipped", behind, skipped)
			})
			for b.Loop() {
				scrapes0 := sumOf(names, byTarget(b, reg, "redwire_target_scrapes_total"))
				skipped0 := sumOf(names, byTarget(b, reg, "redwire_target_scrapes_skipped_total"))
				cpu0, t0 := cpuTime(b), time.Now()
				// A measurement window, not synchronisation.
				time.Sleep(3 * interval)
				cpu, wall := cpuTime(b)-cpu0, time.Since(t0)
				scrapes := sumOf(names, byTarget(b, reg, "redwire_target_scrapes_total")) - scrapes0
				skipped := sumOf(names, byTarget(b, reg, "redwire_target_scrapes_skipped_total")) - skipped0
				heap := heapInUse() - heap0
				if scrapes == 0 {
					b.Fatal("no scrape completed in the window")
				}
				core := cpu.Seconds() / wall.Seconds()
				perScrape := cpu.Seconds() / scrapes
				b.ReportMetric(core, "core-fraction")
				b.ReportMetric(perScrape*1e6, "cpu-µs/target-scrape")
				b.ReportMetric(float64(heap)/float64(n)/1024, "heap-KiB/target")
				b.ReportMetric(skipped, "skipped-scrapes")
				b.ReportMetric(interval.Seconds()/perScrape, "targets-per-core-at-10s")
			}
		})
	}
}
