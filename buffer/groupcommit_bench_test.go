package buffer

import (
	"fmt"
	"math"
	"path/filepath"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/redwire/redwire/internal/batchtest"
	"github.com/redwire/redwire/sample"
)

// BenchmarkAlwaysConcurrentScrapes appends one scrape (a Redis target's
// ~300 series) per target to a buffer.mode always Buffer, all targets at
// the same moment, as a round of scrapes that land together does; one op
// is one such round, on a real filesystem with fsync. It reports the
// commits (each one bbolt commit: two fdatasyncs) and the CPU time per
// scrape. Sealing is off, as while a healthy receiver drains the store.
//
//	go test -run '^$' -bench AlwaysConcurrentScrapes -benchtime 5x -count 5 ./buffer/
func BenchmarkAlwaysConcurrentScrapes(b *testing.B) {
	for _, targets := range []int{200, 2000} {
		b.Run(fmt.Sprintf("targets=%d", targets), func(b *testing.B) {
			s, _, err := OpenStore(filepath.Join(b.TempDir(), "ep.bbolt"), StoreOptions{})
			if err != nil {
				b.Fatal(err)
			}
			s.sealAt = math.MaxInt64
			buf := New(s, Options{Always: true, Capacity: 1 << 20, MaxBatch: 1 << 20, Deadline: time.Hour})
			defer buf.Close()
			scrapes := make([]sample.Batch, targets)
			for i := range scrapes {
				scrapes[i] = batchtest.Redis(t0, i)
			}
			commits := s.commitCount()
			cpu := cpuTime()
			b.ResetTimer()
			for range b.N {
				var wg sync.WaitGroup
				for _, sc := range scrapes {
					wg.Add(1)
					go func() {
						defer wg.Done()
						if _, err := buf.Append(sc); err != nil {
							b.Error(err)
						}
					}()
				}
				wg.Wait()
			}
			b.StopTimer()
			n := float64(b.N * targets)
			b.ReportMetric(float64(cpuTime()-cpu)/n, "cpu-ns/scrape")
			if c := s.commitCount(); c >= 0 {
				b.ReportMetric(float64(c-commits)/n, "commits/scrape")
			}
		})
	}
}

// BenchmarkAlwaysSpreadScrapes is BenchmarkAlwaysConcurrentScrapes with
// the scrapes spread evenly over a 1 s interval, as the agent spreads
// its targets: 200 targets at 1 s is the rate of 2000 targets at 10 s.
// One op is one interval; an op longer than 1 s means the appends could
// not keep up with the scrapes.
func BenchmarkAlwaysSpreadScrapes(b *testing.B) {
	const targets, interval = 200, time.Second
	s, _, err := OpenStore(filepath.Join(b.TempDir(), "ep.bbolt"), StoreOptions{})
	if err != nil {
		b.Fatal(err)
	}
	s.sealAt = math.MaxInt64
	buf := New(s, Options{Always: true, Capacity: 1 << 20, MaxBatch: 1 << 20, Deadline: time.Hour})
	defer buf.Close()
	scrapes := make([]sample.Batch, targets)
	for i := range scrapes {
		scrapes[i] = batchtest.Redis(t0, i)
	}
	commits := s.commitCount()
	cpu := cpuTime()
	b.ResetTimer()
	for range b.N {
		start := time.Now()
		var wg sync.WaitGroup
		for i, sc := range scrapes {
			wg.Add(1)
			go func() {
				defer wg.Done()
				time.Sleep(time.Until(start.Add(time.Duration(i) * interval / targets)))
				if _, err := buf.Append(sc); err != nil {
					b.Error(err)
				}
			}()
		}
		wg.Wait()
	}
	b.StopTimer()
	n := float64(b.N * targets)
	b.ReportMetric(float64(cpuTime()-cpu)/n, "cpu-ns/scrape")
	if c := s.commitCount(); c >= 0 {
		b.ReportMetric(float64(c-commits)/n, "commits/scrape")
	}
}

// cpuTime is the user and system CPU time of the process so far.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
