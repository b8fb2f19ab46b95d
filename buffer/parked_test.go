package buffer

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/redwire/redwire/internal/batchtest"
	"github.com/redwire/redwire/sample"
)

// mustPark parks b and checks the store's invariants after.
func mustPark(t testing.TB, s *Store, b sample.Batch) []Dropped {
	t.Helper()
	d, err := s.Park(b)
	if err != nil {
		t.Fatal(err)
	}
	checkInvariants(t, s)
	return d
}

// peekParkedAll is every parked record, oldest first.
func peekParkedAll(t testing.TB, s *Store) []Record {
	t.Helper()
	recs, err := s.PeekParked(0, math.MaxInt, math.MinInt64)
	if err != nil {
		t.Fatal(err)
	}
	return recs
}

// requireParked checks that s holds exactly want parked, in order, and
// that Parked says so.
func requireParked(t testing.TB, s *Store, want ...sample.Batch) {
	t.Helper()
	recs := peekParkedAll(t, s)
	if len(recs) != len(want) {
		t.Fatalf("%d parked records, want %d", len(recs), len(want))
	}
	var st ParkedStats
	for i, r := range recs {
		batchtest.RequireEqual(t, want[i], r.Batch)
		b := want[i]
		st.Batches++
		st.Samples += int64(b.Len())
		st.Bytes += recordSize(b)
		for j, smp := range b.Samples {
			if (i == 0 && j == 0) || smp.T < st.MinT {
				st.MinT = smp.T
			}
			if (i == 0 && j == 0) || smp.T > st.MaxT {
				st.MaxT = smp.T
			}
		}
	}
	if got := s.Parked(); got != st {
		t.Fatalf("Parked() = %+v, want %+v", got, st)
	}
	if got := s.Stats().Parked; got != st {
		t.Fatalf("Stats().Parked = %+v, want %+v", got, st)
	}
}

// TestParkedSurvivesReopenAndStaysOutOfTheFIFO: parked batches are kept
// beside the FIFO under the same sequence counter, are no backlog, and a
// reopen recounts them from the file.
func TestParkedSurvivesReopenAndStaysOutOfTheFIFO(t *testing.T) {
	path := filepath.Join(t.TempDir(), "ep.bbolt")
	s := openT(t, path, testOptions())
	old1, old2 := batchtest.Small(1, 5, t0-3_600_000), batchtest.Small(2, 3, t0-7_200_000)
	mustAppend(t, s, batchtest.Small(10, 4, t0))
	mustPark(t, s, old1)
	mustAppend(t, s, batchtest.Small(11, 4, t0+1000))
	mustPark(t, s, old2)
	if got := seqs(peekAll(t, s)); fmt.Sprint(got) != "[1 3]" {
		t.Fatalf("FIFO holds %v, want [1 3]", got)
	}
	if got := seqs(peekParkedAll(t, s)); fmt.Sprint(got) != "[2 4]" {
		t.Fatalf("parked area holds %v, want [2 4]", got)
	}
	if st := s.Stats(); st.Batches != 2 || st.Samples != 8 || st.OldestT != t0 {
		t.Fatalf("Stats counts parked batches as backlog: %+v", st)
	}
	requireParked(t, s, old1, old2)
	// The FIFO drained: parked data stays.
	if err := s.Delete(s.LastSeq()); err != nil {
		t.Fatal(err)
	}
	checkInvariants(t, s)
	requireParked(t, s, old1, old2)

	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s = openT(t, path, testOptions())
	requireParked(t, s, old1, old2)
	if s.Stats().Batches != 0 || s.LastSeq() != 4 {
		t.Fatalf("after reopen: %+v, LastSeq %d", s.Stats(), s.LastSeq())
	}
	mustPark(t, s, old1)
	if s.LastSeq() != 5 {
		t.Fatalf("LastSeq after a Park = %d, want 5", s.LastSeq())
	}
}

// TestPeekParkedAfterMinTAndDelete: PeekParked pages by key, skips records
// too old for a cutoff, returns whole records up to maxSamples (at least
// one), and DeleteParked removes records and keeps MinT and MaxT exact.
func TestPeekParkedAfterMinTAndDelete(t *testing.T) {
	s := openT(t, filepath.Join(t.TempDir(), "ep.bbolt"), testOptions())
	var bs []sample.Batch
	for i, ago := range []int64{50, 10, 40, 20, 30} { // minutes before t0
		b := batchtest.Small(i, 4, t0-ago*60_000)
		bs = append(bs, b)
		mustPark(t, s, b)
	}
	cases := []struct {
		after      uint64
		maxSamples int
		minT       int64
		want       string
	}{
		{0, math.MaxInt, math.MinInt64, "[1 2 3 4 5]"},
		{0, 9, math.MinInt64, "[1 2]"},
		{0, 1, math.MinInt64, "[1]"}, // at least one record
		{2, 8, math.MinInt64, "[3 4]"},
		{0, math.MaxInt, t0 - 35*60_000, "[2 4 5]"},
		{2, 4, t0 - 35*60_000, "[4]"},
		{5, math.MaxInt, math.MinInt64, "[]"},
	}
	for _, c := range cases {
		recs, err := s.PeekParked(c.after, c.maxSamples, c.minT)
		if err != nil {
			t.Fatal(err)
		}
		if got := fmt.Sprint(seqs(recs)); got != c.want {
			t.Errorf("PeekParked(%d, %d, %d) = %s, want %s", c.after, c.maxSamples, c.minT, got, c.want)
		}
	}
	// The oldest (1) and the newest (2) go: the bounds move.
	if err := s.DeleteParked([]uint64{1, 2, 99, 2}); err != nil {
		t.Fatal(err)
	}
	checkInvariants(t, s)
	requireParked(t, s, bs[2], bs[3], bs[4])
	if err := s.DeleteParked([]uint64{3, 4, 5}); err != nil {
		t.Fatal(err)
	}
	checkInvariants(t, s)
	requireParked(t, s)
	if p := s.Parked(); p.MinT != 0 || p.MaxT != 0 {
		t.Fatalf("empty parked area: %+v", p)
	}
}

// TestParkedGoesFirstUnderMaxBytes: parked bytes count against MaxBytes;
// when it forces a choice the oldest parked records are dropped first,
// reported as parked, and the FIFO's only once nothing is parked. A Park
// that cannot fit beside the FIFO drops its own batch, counted.
func TestParkedGoesFirstUnderMaxBytes(t *testing.T) {
	b := func(id int) sample.Batch { return batchtest.Small(id, 10, t0+int64(id)*1000) }
	size := recordSize(b(1))
	opts := testOptions()
	opts.MaxBytes = 4 * size
	s := openT(t, filepath.Join(t.TempDir(), "ep.bbolt"), opts)
	mustPark(t, s, b(1))
	mustPark(t, s, b(2))
	mustAppend(t, s, b(3))
	mustAppend(t, s, b(4))
	if room, known := s.room(); !known || room != 0 {
		t.Fatalf("Room = %d, %v; want 0: parked bytes count", room, known)
	}
	d := mustAppend(t, s, b(5))
	if len(d) != 1 || !d[0].Parked || d[0].Reason != DropBufferFull || d[0].Batches != 1 || d[0].Samples != 10 ||
		spanSamples(d[0].Spans) != 10 {
		t.Fatalf("Append over MaxBytes dropped %+v, want the oldest parked batch", d)
	}
	requireParked(t, s, b(2))
	// Parking drops older parked data, never the FIFO.
	d = mustPark(t, s, b(6))
	if len(d) != 1 || !d[0].Parked || d[0].Batches != 1 {
		t.Fatalf("Park over MaxBytes dropped %+v, want the older parked batch", d)
	}
	requireParked(t, s, b(6))
	// With the FIFO full, a new parked batch is what goes.
	mustAppend(t, s, b(7))
	requireParked(t, s) // b(7) made b(6) go
	d = mustPark(t, s, b(8))
	if len(d) != 1 || !d[0].Parked || d[0].Batches != 1 || d[0].Samples != 10 {
		t.Fatalf("Park beside a full FIFO dropped %+v, want its own batch", d)
	}
	requireParked(t, s)
	if got := seqs(peekAll(t, s)); fmt.Sprint(got) != "[3 4 5 7]" {
		t.Fatalf("FIFO holds %v, want [3 4 5 7]", got)
	}
	// Nothing parked: the FIFO's oldest go, as before parking existed.
	d = mustAppend(t, s, b(9))
	if len(d) != 1 || d[0].Parked || d[0].Batches == 0 {
		t.Fatalf("Append with nothing parked dropped %+v, want FIFO batches", d)
	}
	// A batch larger than MaxBytes on its own is dropped at once.
	big := batchtest.Small(10, 100, t0)
	d = mustPark(t, s, big)
	if len(d) != 1 || !d[0].Parked || d[0].Samples != 100 {
		t.Fatalf("Park of a batch over MaxBytes dropped %+v", d)
	}
}

// TestParkedIgnoresMaxAge: MaxAge drops FIFO records, never parked ones,
// whether by Expire or by an Append.
func TestParkedIgnoresMaxAge(t *testing.T) {
	now := time.UnixMilli(t0)
	opts := testOptions()
	opts.MaxAge = time.Minute
	opts.Now = func() time.Time { return now }
	s := openT(t, filepath.Join(t.TempDir(), "ep.bbolt"), opts)
	old := batchtest.Small(1, 5, t0-time.Hour.Milliseconds())
	if d := mustPark(t, s, old); len(d) != 0 {
		t.Fatalf("Park of an old batch dropped %+v", d)
	}
	mustAppend(t, s, batchtest.Small(2, 5, t0))
	now = now.Add(time.Hour)
	if d, err := s.Expire(); err != nil || d.Batches != 1 {
		t.Fatalf("Expire = %+v, %v; want the FIFO batch", d, err)
	}
	mustAppend(t, s, batchtest.Small(3, 5, now.UnixMilli()))
	checkInvariants(t, s)
	requireParked(t, s, old)
}

// TestParkedSurvivesCompactionAndRename: a compaction of the drained FIFO
// (Compact, Close) and a defragmenting rebuild both copy the parked
// records, and a rename keeps them.
func TestParkedSurvivesCompactionAndRename(t *testing.T) {
	for _, how := range []string{"Compact", "Close", "defragment"} {
		t.Run(how, func(t *testing.T) {
			dir := t.TempDir()
			path := filepath.Join(dir, "ep.bbolt")
			s := openT(t, path, testOptions())
			s.compactAt, s.slack = 64<<10, 8<<10
			s.sealAt = 1 << 62 // batch records, to grow the file
			parked := []sample.Batch{batchtest.Redis(t0-7_200_000, 1), batchtest.Redis(t0-7_100_000, 2)}
			mustPark(t, s, parked[0])
			for i := range 100 {
				mustAppend(t, s, batchtest.Redis(t0+int64(i)*1000, i))
			}
			mustPark(t, s, parked[1])
			big := s.Stats().FileBytes
			switch how {
			case "Compact", "Close":
				if err := s.Delete(s.LastSeq()); err != nil {
					t.Fatal(err)
				}
				if how == "Close" {
					if err := s.Close(); err != nil {
						t.Fatal(err)
					}
					s = openT(t, path, testOptions())
				} else if err := s.Compact(); err != nil {
					t.Fatal(err)
				}
				if n := fileSize(path); n >= big/2 {
					t.Fatalf("file of %d bytes after %s, was %d: not compacted", n, how, big)
				}
			case "defragment":
				if err := s.Delete(90); err != nil { // leave a backlog
					t.Fatal(err)
				}
				if err := s.defragment(); err != nil || s.defrags != 1 {
					t.Fatalf("defragment: %v, %d rebuilds", err, s.defrags)
				}
				if got := len(peekAll(t, s)); got != 11 { // 91..101
					t.Fatalf("%d FIFO records after the rebuild, want 11", got)
				}
			}
			checkInvariants(t, s)
			requireParked(t, s, parked...)
			if err := s.Rename(filepath.Join(dir, "renamed.bbolt")); err != nil {
				t.Fatal(err)
			}
			if err := s.Close(); err != nil {
				t.Fatal(err)
			}
			s = openT(t, filepath.Join(dir, "renamed.bbolt"), testOptions())
			requireParked(t, s, parked...)
		})
	}
}

// TestParkOnNoSpaceChangesNothing: a Park refused for room (the free-space
// guard, then a full disk) returns ErrNoSpace and leaves file and counts
// as they were.
func TestParkOnNoSpaceChangesNothing(t *testing.T) {
	opts := testOptions()
	opts.MinFreeBytes = 1 << 20
	s := openT(t, filepath.Join(t.TempDir(), "ep.bbolt"), opts)
	var free int64 = 1 << 30
	s.freeSpace = func(string) (int64, bool, error) { return free, true, nil }
	kept := batchtest.Small(1, 5, t0)
	mustPark(t, s, kept)
	b := batchtest.Small(2, 5, t0)
	free = opts.MinFreeBytes + recordSize(b) - 1
	before := dump(t, s)
	if _, err := s.Park(b); !errors.Is(err, ErrNoSpace) {
		t.Fatalf("Park with %d bytes free = %v, want ErrNoSpace", free, err)
	}
	if after := dump(t, s); after != before {
		t.Fatalf("a refused Park changed the store:\n%s\n%s", before, after)
	}
	requireParked(t, s, kept)
	// DeleteParked works on a full disk: it is how room comes back.
	free = 0
	if err := s.DeleteParked([]uint64{1}); err != nil {
		t.Fatal(err)
	}
	checkInvariants(t, s)
}

// killParkEnv names the store the kill -9 park child parks to (see init).
const killParkEnv = "REDWIRE_TEST_KILL9_PARK"

// init turns the test binary into the process TestParkKill9 kills when
// killParkEnv is set: it parks and appends in turn until killed, and
// exits when its stdin closes.
func init() {
	path := os.Getenv(killParkEnv)
	if path == "" {
		return
	}
	go func() {
		var buf [1]byte
		_, _ = os.Stdin.Read(buf[:])
		os.Exit(0)
	}()
	opts := testOptions()
	opts.NoSync = false
	s, _, err := OpenStore(path, opts)
	if err != nil {
		fmt.Fprintln(os.Stderr, "kill -9 park child:", err)
		os.Exit(2)
	}
	for {
		seq := s.LastSeq() + 1
		var err error
		if seq%3 == 0 {
			_, err = s.Append(killBatch(seq))
		} else {
			_, err = s.Park(killBatch(seq))
		}
		if err != nil {
			fmt.Fprintln(os.Stderr, "kill -9 park child:", err)
			os.Exit(2)
		}
		fmt.Printf("appended %d\n", s.LastSeq())
	}
}

// TestParkKill9: a process killed while it parks leaves a file that opens
// cleanly, whose parked records are every one reported and nothing
// half-written, counted as the file says.
func TestParkKill9(t *testing.T) {
	if testing.Short() {
		t.Skip("spawns processes")
	}
	path := filepath.Join(t.TempDir(), "ep.bbolt")
	t.Setenv(killParkEnv, path)
	var reported uint64
	for round := range 3 {
		reported = killChild(t, path, reported+uint64(10+round*7))
		s := openT(t, path, testOptions()) // checks counts and index against the file
		parked, fifo := peekParkedAll(t, s), peekAll(t, s)
		var want uint64
		for seq := uint64(1); seq <= s.LastSeq(); seq++ {
			r := &parked
			if seq%3 == 0 {
				r = &fifo
			}
			if len(*r) == 0 || (*r)[0].Seq != seq {
				if seq <= reported {
					t.Fatalf("round %d: record %d, reported, is missing", round, seq)
				}
				t.Fatalf("round %d: record %d missing before LastSeq %d", round, seq, s.LastSeq())
			}
			batchtest.RequireEqual(t, killBatch(seq), (*r)[0].Batch)
			*r = (*r)[1:]
			want++
		}
		if len(parked)+len(fifo) != 0 || want < reported {
			t.Fatalf("round %d: %d records left over, %d found, %d reported", round, len(parked)+len(fifo), want, reported)
		}
		if p := s.Parked(); p.Batches != int64(want-want/3) {
			t.Fatalf("round %d: Parked %+v after %d records", round, p, want)
		}
		reported = s.LastSeq()
		if err := s.Close(); err != nil {
			t.Fatal(err)
		}
	}
}

// TestParkedQuarantine: a parked record whose payload is damaged is
// quarantined by PeekParked and the parked area recounted; one whose
// header is damaged makes the file corrupt, as a FIFO record's does.
func TestParkedQuarantine(t *testing.T) {
	path := filepath.Join(t.TempDir(), "ep.bbolt")
	s := openT(t, path, testOptions())
	bs := []sample.Batch{batchtest.Small(1, 5, t0), batchtest.Small(2, 5, t0+1000), batchtest.Small(3, 5, t0+2000)}
	for _, b := range bs {
		mustPark(t, s, b)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	damageParked(t, path, 2, func(v []byte) []byte { v[len(v)-3] ^= 0x40; return v })
	s = openT(t, path, testOptions())
	if p := s.Parked(); p.Batches != 3 {
		t.Fatalf("a payload flip must not fail the open scan: %+v", p)
	}
	requireParked(t, s, bs[0], bs[2]) // PeekParked quarantines 2 on the way
	if s.Quarantined() != 1 {
		t.Fatalf("Quarantined = %d, want 1", s.Quarantined())
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	damageParked(t, path, 3, func(v []byte) []byte { return v[:3] }) // no whole header
	s, info, err := OpenStore(path, testOptions())
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if info.MovedAside == "" || s.Parked() != (ParkedStats{}) {
		t.Fatalf("a parked record's bad header: %+v, %+v; want the file moved aside", info, s.Parked())
	}
}

// damageParked changes the parked record under key in place, as the disk
// would.
func damageParked(t *testing.T, path string, key uint64, damage func([]byte) []byte) {
	t.Helper()
	db, err := bolt.Open(path, 0o600, &bolt.Options{NoFreelistSync: true, FreelistType: bolt.FreelistMapType})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	err = db.Update(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketParked)
		return b.Put(seqKey(key), damage(bytes.Clone(b.Get(seqKey(key)))))
	})
	if err != nil {
		t.Fatal(err)
	}
}

// TestBufferParkIsNoBacklog: parked data never leaves by Next, and the
// buffer's Park, PeekParked and DeleteParked reach the store's.
func TestBufferParkIsNoBacklog(t *testing.T) {
	s := openT(t, filepath.Join(t.TempDir(), "ep.bbolt"), testOptions())
	b := New(s, Options{Capacity: 100, MaxBatch: 10, Deadline: time.Hour})
	old := batchtest.Small(1, 5, t0-3_600_000)
	if d, err := b.Park(old); err != nil || len(d) != 0 {
		t.Fatalf("Park = %+v, %v", d, err)
	}
	if st := b.Stats(); st.Store.Batches != 0 || st.Store.Parked.Batches != 1 || b.Parked().Samples != 5 {
		t.Fatalf("Stats after Park: %+v", st)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	if l, err := b.Next(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Next leased %+v, %v; parked data is no backlog", l, err)
	}
	recs, err := b.PeekParked(0, 100, math.MinInt64)
	if err != nil || len(recs) != 1 {
		t.Fatalf("PeekParked = %v, %v", recs, err)
	}
	batchtest.RequireEqual(t, old, recs[0].Batch)
	if err := b.DeleteParked([]uint64{recs[0].Seq}); err != nil {
		t.Fatal(err)
	}
	if p := b.Parked(); p != (ParkedStats{}) {
		t.Fatalf("Parked after DeleteParked: %+v", p)
	}
}
