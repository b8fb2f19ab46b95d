package buffer

import (
	"fmt"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/redwire/redwire/internal/batchtest"
	"github.com/redwire/redwire/sample"
)

// benchBatches are n Redis INFO scrapes one second apart, ~300 samples
// each: what an endpoint's store holds during an outage.
func benchBatches(n int) []sample.Batch {
	out := make([]sample.Batch, n)
	for i := range out {
		out[i] = batchtest.Redis(t0+int64(i)*1000, i)
	}
	return out
}

func syncModes() []struct {
	name   string
	noSync bool
} {
	return []struct {
		name   string
		noSync bool
	}{{"fsync", false}, {"nosync", true}}
}

// BenchmarkStoreAppend appends one scrape per operation, each its own
// committed transaction, and reports samples/s; "nosync" shows the CPU
// cost alone. It also reports what 1000 scrapes take on disk: B/sample
// counts the pages bbolt uses, file-B/sample the file's length (bbolt
// extends it ahead of use, sparsely on ext4), record-B/sample the records
// alone (what MaxBytes caps).
func BenchmarkStoreAppend(b *testing.B) {
	batches := benchBatches(1000)
	perBatch := len(batches[0].Samples)
	for _, mode := range syncModes() {
		b.Run(mode.name, func(b *testing.B) {
			opts := StoreOptions{NoSync: mode.noSync, MinFreeBytes: -1}
			s, _, err := OpenStore(filepath.Join(b.TempDir(), "ep.bbolt"), opts)
			if err != nil {
				b.Fatal(err)
			}
			defer s.Close()
			b.ReportAllocs()
			b.ResetTimer()
			start := time.Now()
			for i := 0; i < b.N; i++ {
				if _, err := s.Append(batches[i%len(batches)]); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(b.N*perBatch)/time.Since(start).Seconds(), "samples/s")
			b.StopTimer()

			used, file, rec := diskPerSample(b, batches)
			b.ReportMetric(used, "B/sample")
			b.ReportMetric(file, "file-B/sample")
			b.ReportMetric(rec, "record-B/sample")
		})
	}
}

// diskPerSample fills a fresh store with batches and returns the bytes per
// sample of the pages in use, of the file, and of the records.
func diskPerSample(b *testing.B, batches []sample.Batch) (used, file, records float64) {
	s, _, err := OpenStore(filepath.Join(b.TempDir(), "size.bbolt"), StoreOptions{NoSync: true, MinFreeBytes: -1})
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	n := 0
	for _, batch := range batches {
		if _, err := s.Append(batch); err != nil {
			b.Fatal(err)
		}
		n += len(batch.Samples)
	}
	var hwm int64
	if err := s.db.View(func(tx *bolt.Tx) error { hwm = tx.Size(); return nil }); err != nil {
		b.Fatal(err)
	}
	st := s.Stats()
	return float64(hwm) / float64(n), float64(st.FileBytes) / float64(n), float64(st.Bytes) / float64(n)
}

// BenchmarkStorePeekDelete drains a backlog the way a replay does: Peek up
// to 2000 samples, then Delete them, one transaction per ack. It reports
// drained samples/s.
func BenchmarkStorePeekDelete(b *testing.B) {
	const maxSamples = 2000
	batches := benchBatches(1000)
	for _, mode := range syncModes() {
		b.Run(mode.name, func(b *testing.B) {
			s, _, err := OpenStore(filepath.Join(b.TempDir(), "ep.bbolt"), StoreOptions{NoSync: mode.noSync, MinFreeBytes: -1})
			if err != nil {
				b.Fatal(err)
			}
			defer s.Close()
			refill := func() {
				b.StopTimer()
				for _, batch := range batches {
					if _, err := s.Append(batch); err != nil {
						b.Fatal(err)
					}
				}
				b.StartTimer()
			}
			refill()
			b.ReportAllocs()
			b.ResetTimer()
			var drained int
			var elapsed time.Duration
			for i := 0; i < b.N; i++ {
				if s.Stats().Batches == 0 {
					refill()
				}
				start := time.Now()
				recs, err := s.Peek(maxSamples)
				if err != nil {
					b.Fatal(err)
				}
				if err := s.Delete(recs[len(recs)-1].Seq); err != nil {
					b.Fatal(err)
				}
				elapsed += time.Since(start)
				for _, r := range recs {
					drained += len(r.Batch.Samples)
				}
			}
			b.ReportMetric(float64(drained)/elapsed.Seconds(), "samples/s")
		})
	}
}

// BenchmarkStoreOpen measures OpenStore on a backlog of 1000 scrapes: the
// page-tree check and the header scan that Stats relies on.
func BenchmarkStoreOpen(b *testing.B) {
	for _, n := range []int{1000} {
		b.Run(fmt.Sprintf("batches=%d", n), func(b *testing.B) {
			path := filepath.Join(b.TempDir(), "ep.bbolt")
			s, _, err := OpenStore(path, StoreOptions{NoSync: true, MinFreeBytes: -1})
			if err != nil {
				b.Fatal(err)
			}
			for _, batch := range benchBatches(n) {
				if _, err := s.Append(batch); err != nil {
					b.Fatal(err)
				}
			}
			if err := s.Close(); err != nil {
				b.Fatal(err)
			}
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				s, _, err := OpenStore(path, StoreOptions{NoSync: true, MinFreeBytes: -1})
				if err != nil {
					b.Fatal(err)
				}
				b.StopTimer()
				if err := s.Close(); err != nil {
					b.Fatal(err)
				}
				b.StartTimer()
			}
			b.ReportMetric(float64(fileSize(path)), "file-B")
		})
	}
}

// BenchmarkStoreOutage appends an outage's backlog, one scrape of one
// ~300-series target per Append as the agent spills it, with sealing and
// merging as they run in the agent, and reports what it takes on disk per
// sample: record-B/sample (what MaxBytes caps), used-B/sample (bbolt's
// high-water mark), disk-B/sample (blocks the file occupies; bbolt grows
// it sparsely) and the append cost per sample, sealing included.
func BenchmarkStoreOutage(b *testing.B) {
	for _, c := range []struct {
		name     string
		interval int64 // ms
		span     time.Duration
	}{
		{"interval=1s/1h", 1000, time.Hour},
		{"interval=1s/6h", 1000, 6 * time.Hour},
		{"interval=10s/6h", 10000, 6 * time.Hour},
		{"interval=10s/24h", 10000, 24 * time.Hour},
	} {
		b.Run(c.name, func(b *testing.B) {
			batches := batchtest.Backlog(int(c.span.Milliseconds()/c.interval), 1, c.interval, 5)
			n := 0
			for i := range batches {
				n += len(batches[i].Samples)
			}
			var rec, used, disk float64
			var appendT time.Duration
			for b.Loop() {
				b.StopTimer()
				path := filepath.Join(b.TempDir(), "ep.bbolt")
				s, _, err := OpenStore(path, StoreOptions{NoSync: true, MinFreeBytes: -1})
				if err != nil {
					b.Fatal(err)
				}
				b.StartTimer()
				start := time.Now()
				for i := range batches {
					if _, err := s.Append(batches[i]); err != nil {
						b.Fatal(err)
					}
				}
				appendT += time.Since(start)
				b.StopTimer()
				var hwm int64
				if err := s.db.View(func(tx *bolt.Tx) error { hwm = tx.Size(); return nil }); err != nil {
					b.Fatal(err)
				}
				rec, used = float64(s.Stats().Bytes)/float64(n), float64(hwm)/float64(n)
				if err := s.Close(); err != nil {
					b.Fatal(err)
				}
				var st syscall.Stat_t
				if err := syscall.Stat(path, &st); err != nil {
					b.Fatal(err)
				}
				disk = float64(st.Blocks*512) / float64(n)
				b.StartTimer()
			}
			b.ReportMetric(rec, "record-B/sample")
			b.ReportMetric(used, "used-B/sample")
			b.ReportMetric(disk, "disk-B/sample")
			b.ReportMetric(float64(appendT.Nanoseconds())/float64(b.N*n), "append-ns/sample")
		})
	}
}
