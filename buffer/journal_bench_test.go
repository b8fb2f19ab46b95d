package buffer

import (
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/redwire/redwire/internal/batchtest"
	"github.com/redwire/redwire/sample"
)

// BenchmarkHealthyScrape is the buffer's work for one scrape of a loaded
// Redis while the receiver answers: append it to memory, and every fifth
// scrape (1 s interval, 5 s batch deadline) lease and ack a batch. With
// journal=tmpfs the crash journal mirrors memory into /dev/shm (or the
// temp dir where there is none); the difference is the journal's cost
// per scrape, to set against the agent's whole CPU per scrape
// (BenchmarkTargetScrapeCPU in agent).
func BenchmarkHealthyScrape(b *testing.B) {
	for _, mode := range []string{"off", "tmpfs"} {
		b.Run("journal="+mode, func(b *testing.B) {
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
			scrapes := make([]sample.Batch, 5)
			for i := range scrapes {
				scrapes[i] = batchtest.Redis(batchtest.T0+int64(i)*1000, i)
			}
			ctx := context.Background()
			b.ReportAllocs()
			b.ResetTimer()
			for i := range b.N {
				if _, err := buf.Append(scrapes[i%5]); err != nil {
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
			b.ReportMetric(float64(len(scrapes[0].Samples)), "samples/scrape")
		})
	}
}
