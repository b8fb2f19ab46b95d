package buffer

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"runtime/debug"
	"testing"
	"time"

	"github.com/prometheus/prometheus/model/labels"

	"github.com/redwire/redwire/internal/batchtest"
	"github.com/redwire/redwire/sample"
)

// BenchmarkHealthyScrape is the buffer's work for one scrape of a loaded
// Redis while the receiver answers: append it to memory, and every fifth
// scrape (1 s interval, 5 s batch deadline) lease and ack a batch. With
// journal=tmpfs the crash journal mirrors memory into /dev/shm (or the
// temp dir where there is none); the difference is the journal's cost
// per scrape, to set against the agent's whole CPU per scrape
// (BenchmarkTargetScrapeCPU in agent). With targets=2000 the scrapes come
// from 2000 targets in turn, as at 2000 targets / 10 s: no label set
// comes back before the journal is emptied, the series table's worst
// case.
func BenchmarkHealthyScrape(b *testing.B) {
	for _, targets := range []int{1, 2000} {
		scrapes := make([]sample.Batch, max(5, targets))
		for i := range scrapes {
			scrapes[i] = batchtest.Redis(batchtest.T0+int64(i/targets)*1000, i)
			if targets > 1 {
				instance := fmt.Sprintf("redis-%04d.edge.example:6379", i)
				for k := range scrapes[i].Samples {
					ls := &scrapes[i].Samples[k].Labels
					*ls = labels.NewBuilder(*ls).Set("instance", instance).Labels()
				}
			}
		}
		for _, mode := range []string{"off", "tmpfs"} {
			b.Run(fmt.Sprintf("targets=%d/journal=%s", targets, mode), func(b *testing.B) {
				benchHealthyScrape(b, mode, scrapes)
			})
		}
	}
}

func benchHealthyScrape(b *testing.B, mode string, scrapes []sample.Batch) {
	opts := Options{Capacity: 100000, MaxBatch: 10000, Deadline: time.Hour}
	if mode == "tmpfs" {
		opts.JournalDir = b.TempDir()
		if fi, err := os.Stat("/dev/shm"); err == nil && fi.IsDir() {
			dir, err := os.MkdirTemp("/dev/shm", "redwire-bench")
			if err != nil {
				b.Fatal(err)
			}
			b.Cleanup(func() { os.RemoveAll(dir) })
			opts.JournalDir = dir
		}
	}
	store, _, err := OpenStore(filepath.Join(b.TempDir(), "b.bbolt"), StoreOptions{})
	if err != nil {
		b.Fatal(err)
	}
	buf := New(store, opts)
	defer buf.Close()
	buf.Drain() // Next hands out what memory holds at once, as at the deadline
	ctx := context.Background()
	// The garbage of building the scrapes collected and returned to the
	// OS now, not during the measurement.
	debug.FreeOSMemory()
	b.ReportAllocs()
	b.ResetTimer()
	cpu0 := processCPU(b)
	for i := range b.N {
		if _, err := buf.Append(scrapes[i%len(scrapes)]); err != nil {
			b.Fatal(err)
		}
		if i%5 == 4 {
			l, err := buf.Next(ctx)
			if err != nil {
				b.Fatal(err)
			}
			if err := buf.Ack(l); err != nil {
				b.Fatal(err)
			}
		}
	}
	b.StopTimer()
	b.ReportMetric(float64(processCPU(b)-cpu0)/float64(b.N), "cpu-ns/op")
	b.ReportMetric(float64(len(scrapes[0].Samples)), "samples/scrape")
}
