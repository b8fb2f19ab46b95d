package buffer

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io/fs"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/prometheus/model/labels"

	"github.com/redwire/redwire/sample"
)

// journalRig is a buffer with a crash journal whose process can "crash":
// the store and the journal are closed as a kill -9 leaves them, without
// the spill of a clean Close.
type journalRig struct {
	t          *testing.T
	path, jdir string
	opts       Options
	b          *Buffer
	next       int64 // timestamp of the next sample appended: samples are told apart by it
	// plain makes the journal write label sets out, not numbered, as
	// it does once numbering does not pay (journal.nextFile).
	plain bool
}

func newJournalRig(t *testing.T, opts Options) *journalRig {
	dir := t.TempDir()
	opts.JournalDir = filepath.Join(dir, "shm")
	r := &journalRig{t: t, path: filepath.Join(dir, "ep.bbolt"), jdir: opts.JournalDir, opts: opts}
	r.open()
	t.Cleanup(func() {
		if r.b != nil {
			r.b.Close()
		}
	})
	return r
}

func (r *journalRig) open() {
	r.t.Helper()
	store, _, err := OpenStore(r.path, StoreOptions{NoSync: true})
	if err != nil {
		r.t.Fatal(err)
	}
	r.b = New(store, r.opts)
	if _, err := r.b.Journal(); err != nil {
		r.t.Fatal(err)
	}
	r.b.journal.numbering.Store(!r.plain)
}

// crash leaves store and journal as a killed process would.
func (r *journalRig) crash() {
	r.t.Helper()
	r.b.mu.Lock()
	r.b.journal.f.Close()
	r.b.mu.Unlock()
	if err := r.b.store.Close(); err != nil {
		r.t.Fatal(err)
	}
	r.b = nil
}

// append queues n samples and returns their timestamps.
func (r *journalRig) append(n int) []int64 {
	r.t.Helper()
	var b sample.Batch
	var ts []int64
	for range n {
		r.next++
		b.Samples = append(b.Samples, rigSample(r.next))
		ts = append(ts, r.next)
	}
	if _, err := r.b.Append(b); err != nil {
		r.t.Fatal(err)
	}
	return ts
}

// rigSample is the sample the rig appends at t: its label set is one of
// a dozen, so that entries both define series and refer to them, and
// its labels and value follow from t, so that a sample given back wrong
// is told from the right one.
func rigSample(t int64) sample.Sample {
	n := int64(len(rigLabels))
	return sample.Sample{Labels: rigLabels[(t%n+n)%n], T: t, V: float64(t) / 4}
}

// rigLabels are shared by the samples that carry them, as a target's
// label cache shares them.
var rigLabels = func() []labels.Labels {
	ls := make([]labels.Labels, 12)
	for i := range ls {
		ls[i] = labels.FromStrings("__name__", "x", "instance", "redis-"+strconv.Itoa(i))
	}
	return ls
}()

// stored is every sample timestamp in the store, oldest first; each
// sample must be the one rigSample made.
func (r *journalRig) stored() []int64 {
	r.t.Helper()
	recs, err := r.b.store.Peek(1 << 30)
	if err != nil {
		r.t.Fatal(err)
	}
	var ts []int64
	for _, rec := range recs {
		for _, s := range rec.Batch.Samples {
			if want := rigSample(s.T); !labels.Equal(s.Labels, want.Labels) || s.V != want.V {
				r.t.Fatalf("stored sample %v %d %v, want %v %v", s.Labels, s.T, s.V, want.Labels, want.V)
			}
			ts = append(ts, s.T)
		}
	}
	return ts
}

// checkInvariant: the journal counts what memory holds.
func (r *journalRig) checkInvariant() {
	r.t.Helper()
	r.b.mu.Lock()
	defer r.b.mu.Unlock()
	if held := len(r.b.held()); r.b.journal.live != held {
		r.t.Fatalf("journal counts %d samples, memory holds %d", r.b.journal.live, held)
	}
}

// TestJournalRecoversWhatMemoryHeld: a crash with samples in memory, a
// batch of them in flight and partly taken by the receiver, loses none
// of those not taken; the next start commits them to the store, in
// order, and a clean stop leaves no journal behind.
func TestJournalRecoversWhatMemoryHeld(t *testing.T) {
	r := newJournalRig(t, Options{Capacity: 1000, MaxBatch: 8, Deadline: time.Hour})
	all := slices.Concat(r.append(5), r.append(5), r.append(5))
	l, err := r.b.Next(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if l.FromStore() || l.Batch.Len() != 8 {
		t.Fatalf("lease of %d samples from the store %v; want 8 from memory", l.Batch.Len(), l.FromStore())
	}
	r.b.Taken(l, 3) // the receiver took the first 3 of a split batch
	r.checkInvariant()
	r.crash()

	r.open()
	if got, want := r.stored(), all[3:]; !slices.Equal(got, want) {
		t.Fatalf("store after the restart holds %v, want the %d samples not taken %v", got, len(want), want)
	}
	if n, _ := r.b.Journal(); n != len(all)-3 {
		t.Errorf("Journal reports %d samples given back, want %d", n, len(all)-3)
	}
	r.checkInvariant()
	// A second crash right away gives nothing back twice.
	r.crash()
	r.open()
	if got := r.stored(); !slices.Equal(got, all[3:]) {
		t.Fatalf("store after a second restart holds %v, want %v once", got, all[3:])
	}

	// A clean stop of an agent whose memory emptied removes the journal.
	r.b.Close()
	r.b = nil
	if left, _ := filepath.Glob(filepath.Join(r.jdir, "*")); len(left) != 0 {
		t.Errorf("journal files left after a clean stop: %v", left)
	}
}

// TestJournalStaysSmall: while memory never quite empties, the journal
// is rewritten with only what memory holds, and a crash then gives back
// exactly that; once memory is empty the journal holds nothing, and is
// emptied once past journalRewrite.
func TestJournalStaysSmall(t *testing.T) {
	r := newJournalRig(t, Options{Capacity: 100000, MaxBatch: 500, Deadline: time.Hour})
	ctx := context.Background()
	var want []int64 // what memory holds
	rewrites := 0
	for range 1000 {
		want = append(want, r.append(600)...)
		l, err := r.b.Next(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if err := r.b.Ack(l); err != nil {
			t.Fatal(err)
		}
		want = want[l.Batch.Len():]
		if r.b.journal.inFile == r.b.journal.live {
			rewrites++
		}
		if size := r.b.journal.size; size > 2*journalRewrite {
			t.Fatalf("journal of %d bytes while memory holds %d samples", size, len(r.b.held()))
		}
	}
	if rewrites == 0 {
		t.Fatal("the journal was never rewritten: the test does not reach journalRewrite")
	}
	r.checkInvariant()
	r.crash()
	r.open()
	if got := r.stored(); !slices.Equal(got, want) {
		t.Fatalf("store after a crash holds %d samples, want the %d memory held", len(got), len(want))
	}
	// Memory empties: the journal holds none of what it pushed.
	r.append(600)
	for r.b.mem.len() > 0 {
		l, err := r.b.Next(ctx)
		if err != nil {
			t.Fatal(err)
		}
		r.b.Ack(l)
	}
	f, err := os.Open(r.b.journal.path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var series journalSeries
	if held, err := replayJournal(f, series.decodePush); err != nil || len(held) != 0 {
		t.Fatalf("journal with memory empty gives back %d samples (%v), want none", len(held), err)
	}
	if size := r.b.journal.size; size > journalRewrite {
		t.Fatalf("journal of %d bytes with memory empty, want it emptied past %d", size, journalRewrite)
	}
}

// TestJournalRandomCrashes runs random appends, leases, partial takes,
// acks and spills, crashing at random: after every
// restart the store holds exactly the samples neither taken nor dropped,
// in the order they were appended.
func TestJournalRandomCrashes(t *testing.T) {
	for seed := range uint64(20) {
		rng := rand.New(rand.NewPCG(seed, 7))
		r := newJournalRig(t, Options{Capacity: 40, MaxBatch: 16, Deadline: time.Hour})
		if seed%3 == 2 { // label sets written out, not numbered
			r.plain = true
			r.b.journal.numbering.Store(false)
		}
		var want []int64 // samples not yet taken or dropped, oldest first
		var l *Lease
		// A part of a stored lease that the receiver took leaves the
		// store only with the lease's ack (Buffer.Taken): until then a
		// restart sends it again. takenStored counts it.
		takenStored := 0
		ctx := context.Background()
		for step := range 300 {
			switch op := rng.IntN(10); {
			case op < 4:
				want = append(want, r.append(1+rng.IntN(12))...)
			case op < 6 && l == nil:
				if r.b.mem.len() == 0 && r.b.store.Stats().Batches == 0 {
					continue
				}
				r.b.Drain() // hand out partial batches at once
				var err error
				if l, err = r.b.Next(ctx); err != nil {
					t.Fatalf("seed %d step %d: Next: %v", seed, step, err)
				}
				r.b.mu.Lock()
				r.b.draining = false
				r.b.mu.Unlock()
			case op == 6 && l != nil && l.Batch.Len() > 1:
				n := 1 + rng.IntN(l.Batch.Len()-1)
				if l.FromStore() {
					takenStored += n
				} else {
					want = removeTaken(t, want, l.Batch.Samples[:n])
				}
				r.b.Taken(l, n)
			case op == 7 && l != nil:
				want = removeTaken(t, want[takenStored:], l.Batch.Samples)
				takenStored = 0
				if err := r.b.Ack(l); err != nil {
					t.Fatal(err)
				}
				l = nil
			case op == 8:
				if _, err := r.b.Spill(); err != nil {
					t.Fatal(err)
				}
				r.b.Resume()
			case op == 9:
				r.crash()
				r.open()
				l, takenStored = nil, 0
				// Everything not taken is in the store now, in order.
				if got := r.stored(); !slices.Equal(got, want) {
					t.Fatalf("seed %d step %d: store after a crash holds %v, want %v", seed, step, got, want)
				}
			}
			r.checkInvariant()
		}
		r.b.Close()
		r.b = nil
	}
}

// removeTaken removes the taken samples from want; they must be its
// oldest ones, or the buffer did not hand out the oldest first.
func removeTaken(t *testing.T, want []int64, taken []sample.Sample) []int64 {
	t.Helper()
	for i, s := range taken {
		if i >= len(want) || want[i] != s.T {
			t.Fatalf("taken sample %d has timestamp %d; the oldest held are %v", i, s.T, want[:min(len(want), 5)])
		}
	}
	return want[len(taken):]
}

// TestJournalReadsThePreviousFormats: journals left by processes that
// wrote the previous formats (v1: labels written out per sample; v2:
// sets numbered, each defined as its label count and labels) are given
// back at the next start, oldest format first, before what a journal of
// the current format holds, and removed then.
func TestJournalReadsThePreviousFormats(t *testing.T) {
	r := newJournalRig(t, Options{Capacity: 1000, MaxBatch: 8, Deadline: time.Hour})
	v2 := slices.Concat(r.append(5), r.append(3))
	r.crash()
	// The older process: pushed 1..6, of which the first 2 were sent.
	var v1 []byte
	var old []sample.Sample
	for ts := int64(-6); ts < 0; ts++ {
		old = append(old, rigSample(ts))
	}
	v1 = append(v1, sealEntry(appendJournalV1([]byte{journalPush, 0, 0, 0, 0}, old[:4]))...)
	v1 = append(v1, sealEntry(appendJournalV1([]byte{journalPush, 0, 0, 0, 0}, old[4:]))...)
	v1 = append(v1, sealEntry(binary.LittleEndian.AppendUint64([]byte{journalFront, 0, 0, 0, 0}, 2))...)
	base := strings.TrimSuffix(journalPath(r.jdir, StoreFile{Path: r.path}), journalExt)
	if err := os.WriteFile(base+".journal-v1", v1, 0o600); err != nil {
		t.Fatal(err)
	}
	// A later older process wrote v2 (label sets numbered, each written
	// as its label count and labels): pushed 7..9, then one was dropped
	// from the middle.
	var mid []sample.Sample
	for ts := int64(-12); ts < -9; ts++ {
		mid = append(mid, rigSample(ts))
	}
	var (
		v2file []byte
		w      journalV2
	)
	v2file = append(v2file, sealEntry(w.push([]byte{journalPush, 0, 0, 0, 0}, mid))...)
	v2file = append(v2file, sealEntry(w.push([]byte{journalPush, 0, 0, 0, 0}, mid[2:]))...) // its set referred to by number
	v2file = append(v2file, sealEntry(binary.LittleEndian.AppendUint64(binary.LittleEndian.AppendUint64([]byte{journalDrop, 0, 0, 0, 0}, 1), 1))...)
	if err := os.WriteFile(base+".journal-v2", v2file, 0o600); err != nil {
		t.Fatal(err)
	}
	r.open()
	if got, want := r.stored(), slices.Concat([]int64{-4, -3, -2, -1}, []int64{-12, -10, -10}, v2); !slices.Equal(got, want) {
		t.Fatalf("store after the restart holds %v, want %v", got, want)
	}
	for _, ext := range []string{".journal-v1", ".journal-v2"} {
		if _, err := os.Stat(base + ext); !errors.Is(err, fs.ErrNotExist) {
			t.Fatalf("the %s journal is still there once its samples are stored: %v", ext, err)
		}
	}
}

// journalV2 writes 'P' bodies of format v2: as the current one, but
// each label set defined as its label count and labels.
type journalV2 struct{ refs map[string]uint64 }

func (w *journalV2) push(dst []byte, s []sample.Sample) []byte {
	if w.refs == nil {
		w.refs = make(map[string]uint64)
	}
	dst = binary.AppendUvarint(dst, uint64(len(s)))
	var prevT int64
	for i := range s {
		key := s[i].Labels.String()
		if ref, ok := w.refs[key]; ok {
			dst = binary.AppendUvarint(dst, 1+ref)
		} else {
			w.refs[key] = uint64(len(w.refs))
			dst = appendCountedLabels(binary.AppendUvarint(dst, uint64(len(w.refs))), s[i].Labels)
		}
		dst = binary.AppendVarint(dst, s[i].T-prevT)
		prevT = s[i].T
		dst = binary.LittleEndian.AppendUint64(dst, math.Float64bits(s[i].V))
	}
	return dst
}

// appendCountedLabels writes a label set as the previous formats did: a
// uvarint label count, then each label's name and value as uvarint
// length and bytes.
func appendCountedLabels(dst []byte, ls labels.Labels) []byte {
	dst = binary.AppendUvarint(dst, uint64(ls.Len()))
	ls.Range(func(l labels.Label) {
		dst = append(binary.AppendUvarint(dst, uint64(len(l.Name))), l.Name...)
		dst = append(binary.AppendUvarint(dst, uint64(len(l.Value))), l.Value...)
	})
	return dst
}

// appendJournalV1 appends a 'P' body of the previous format, as
// decodeJournalV1 reads it.
func appendJournalV1(dst []byte, s []sample.Sample) []byte {
	dst = binary.AppendUvarint(dst, uint64(len(s)))
	for i := range s {
		dst = appendCountedLabels(dst, s[i].Labels)
		dst = binary.LittleEndian.AppendUint64(dst, uint64(s[i].T))
		dst = binary.LittleEndian.AppendUint64(dst, math.Float64bits(s[i].V))
	}
	return dst
}

// TestJournalSeriesTable: a 'P' body defines each label set once, and
// later bodies refer to it; a body that refers to a set no entry defined
// (damaged) does not decode.
func TestJournalSeriesTable(t *testing.T) {
	var enc, dec journalSeries
	s := []sample.Sample{rigSample(1), rigSample(2), rigSample(13), rigSample(-5)}
	first := enc.appendPush(nil, s, journalHashes(nil, s))
	again := enc.appendPush(nil, s, journalHashes(nil, s))
	if len(enc.sets) != 3 || len(again) >= len(first)/2 {
		t.Fatalf("%d sets defined, bodies of %d then %d bytes: want 3 sets, the second body numbers only", len(enc.sets), len(first), len(again))
	}
	for _, body := range [][]byte{first, again} {
		got, ok := dec.decodePush(body)
		if !ok || len(got) != len(s) {
			t.Fatalf("decoded %d samples (ok %v), want %d", len(got), ok, len(s))
		}
		for i := range s {
			if !labels.Equal(got[i].Labels, s[i].Labels) || got[i].T != s[i].T || got[i].V != s[i].V {
				t.Fatalf("sample %d decoded as %v, want %v", i, got[i], s[i])
			}
		}
	}
	var fresh journalSeries
	if _, ok := fresh.decodePush(again); ok {
		t.Fatal("a body referring to sets no entry defined decoded")
	}
	// Not numbered: every set written out, none defined.
	plain := enc.appendPush(nil, s, nil)
	var none journalSeries
	if got, ok := none.decodePush(plain); !ok || len(got) != len(s) || !labels.Equal(got[3].Labels, s[3].Labels) || len(none.sets) != 0 {
		t.Fatalf("a body of sets written out decoded as %v (ok %v), %d sets defined", got, ok, len(none.sets))
	}
}

// TestJournalStopsNumberingWhatDoesNotComeBack: a file in which no label
// set came back (2000 targets at 10 s) makes the next ones write sets
// out, until 16 journalRewrite of them; a file in which they did keeps
// numbering.
func TestJournalStopsNumberingWhatDoesNotComeBack(t *testing.T) {
	j := &journal{}
	j.numbering.Store(true)
	for i := range 3000 {
		s := []sample.Sample{{Labels: labels.FromStrings("__name__", "x", "i", strconv.Itoa(i)), T: 1}}
		j.series.appendPush(nil, s, journalHashes(nil, s))
	}
	j.nextFile(journalRewrite)
	if j.numbering.Load() {
		t.Fatal("still numbering after a file of 3000 sets used once each")
	}
	for range 15 { // files not numbered teach nothing
		j.nextFile(journalRewrite)
	}
	if j.numbering.Load() {
		t.Fatal("numbering again before 16 journalRewrite were written out")
	}
	j.nextFile(journalRewrite)
	if !j.numbering.Load() {
		t.Fatal("not numbering after 16 journalRewrite written out, to notice a change")
	}
	s := []sample.Sample{rigSample(1), rigSample(2)}
	for range 10 {
		j.series.appendPush(nil, s, journalHashes(nil, s))
	}
	j.nextFile(journalRewrite)
	if !j.numbering.Load() {
		t.Fatal("not numbering after a file whose sets came back")
	}
}

// TestJournalStopsNumberingWithinAFile: a quarter into a file whose
// label sets do not come back, the journal writes them out; what it
// wrote either way is given back after a crash.
func TestJournalStopsNumberingWithinAFile(t *testing.T) {
	r := newJournalRig(t, Options{Capacity: 1 << 20, MaxBatch: 1 << 20, Deadline: time.Hour})
	var want []int64
	for i := 0; r.b.journal.numbering.Load(); i++ {
		if i == 400 {
			t.Fatalf("still numbering a journal of %d bytes of sets used once each", r.b.journal.size)
		}
		var b sample.Batch
		for k := range 300 {
			r.next++
			b.Samples = append(b.Samples, sample.Sample{Labels: labels.FromStrings("__name__", "x", "k", strconv.Itoa(i*300+k)), T: r.next})
			want = append(want, r.next)
		}
		if _, err := r.b.Append(b); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := r.b.Append(sample.Batch{Samples: []sample.Sample{{Labels: labels.FromStrings("__name__", "x", "k", "last"), T: r.next + 1}}}); err != nil {
		t.Fatal(err)
	}
	want = append(want, r.next+1)
	r.crash()
	r.open()
	recs, err := r.b.store.Peek(1 << 30)
	if err != nil {
		t.Fatal(err)
	}
	var got []int64
	for _, rec := range recs {
		for _, s := range rec.Batch.Samples {
			got = append(got, s.T)
		}
	}
	if !slices.Equal(got, want) {
		t.Fatalf("store after a crash holds %d samples, want %d", len(got), len(want))
	}
}

// TestJournalCrashMidSpillStoresNothingTwice: a spill commits memory to
// the store, then notes in the journal that memory let it go. A kill -9
// between the two (the journal as it was before the spill, the store
// holding all or part of what was spilled) must not store those samples
// again: sent twice, the second copy is older than what the receiver
// holds, and a receiver refuses it (the 30-minute soak found this).
func TestJournalCrashMidSpillStoresNothingTwice(t *testing.T) {
	for _, committed := range []int{5, 3, 0} { // of the spill's 5 records
		t.Run(strconv.Itoa(committed), func(t *testing.T) {
			r := newJournalRig(t, Options{Capacity: 1000, MaxBatch: 10})
			var want []int64
			for range 5 {
				want = append(want, r.append(10)...)
			}
			before, err := os.ReadFile(r.b.journal.path)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := r.b.Spill(); err != nil {
				t.Fatal(err)
			}
			recs, err := r.b.store.Peek(1 << 30)
			if err != nil || len(recs) != 5 {
				t.Fatalf("the spill stored %d records, %v; want 5", len(recs), err)
			}
			var undo []uint64
			for _, rec := range recs[committed:] {
				undo = append(undo, rec.Seq)
			}
			if err := r.b.store.DeleteRecords(undo); err != nil {
				t.Fatal(err)
			}
			path := r.b.journal.path
			r.crash()
			if err := os.WriteFile(path, before, 0o600); err != nil {
				t.Fatal(err)
			}
			r.open()
			if got := r.stored(); fmt.Sprint(got) != fmt.Sprint(want) {
				t.Fatalf("%d of 5 records committed before the crash: store holds %v, want %v once each", committed, got, want)
			}
		})
	}
}

// TestJournalRecoveryCountsWhatMaxBytesDrops: the journal gives back
// memory's samples at the start, and storing them under max_bytes pushes
// out the oldest of the backlog: that drop is reported (RecoveryDrops,
// once), not silent.
func TestJournalRecoveryCountsWhatMaxBytesDrops(t *testing.T) {
	r := newJournalRig(t, Options{Capacity: 1000, MaxBatch: 8, Deadline: time.Hour})
	r.append(40) // in memory and in the journal
	r.crash()

	// The file already holds a backlog near its cap when the agent
	// starts again with a smaller max_bytes.
	store, _, err := OpenStore(r.path, StoreOptions{NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	for i := range 20 {
		b := sample.Batch{Samples: []sample.Sample{rigSample(int64(-1000 + i))}}
		if _, err := store.Append(b); err != nil {
			t.Fatal(err)
		}
	}
	backlog := store.Stats()
	store.Close()
	// Thinning off: what is measured is a drop, which thinning may spare.
	store, _, err = OpenStore(r.path, StoreOptions{NoSync: true, MaxBytes: backlog.Bytes, ThinFloor: -1})
	if err != nil {
		t.Fatal(err)
	}
	r.b = New(store, r.opts)
	ds := r.b.RecoveryDrops()
	var dropped int
	for _, d := range ds {
		if d.Reason != DropBufferFull {
			t.Errorf("recovery dropped %d samples as %s, want %s", d.Samples, d.Reason, DropBufferFull)
		}
		dropped += d.Samples
	}
	st := r.b.Stats().Store
	if dropped == 0 || int64(dropped)+st.Samples != backlog.Samples+40 {
		t.Fatalf("recovery reported %d dropped, the store holds %d: want the %d of backlog and journal less exactly what was reported",
			dropped, st.Samples, backlog.Samples+40)
	}
	if again := r.b.RecoveryDrops(); len(again) != 0 {
		t.Errorf("RecoveryDrops reported again: %v", again)
	}
}

// TestJournalLabelLayout: a label set goes into the journal in the
// layout journal_series.go gives, whether the label library's own bytes
// are copied (its default build) or the labels are written one by one,
// and reads back equal, long names and values included; this build
// copies.
func TestJournalLabelLayout(t *testing.T) {
	if !journalLabelsAsInMemory {
		t.Error("the label library's bytes are not in the journal's layout in this build: every set is written label by label")
	}
	long := strings.Repeat("v", 70000)
	for _, ls := range []labels.Labels{
		labels.EmptyLabels(),
		labels.FromStrings("__name__", "redis_up", "instance", "a:6379"),
		labels.FromStrings("a", "", "k", strings.Repeat("x", 254), "l", strings.Repeat("y", 255), "m", long),
	} {
		var ts journalSeries
		copied := ts.appendLabels(nil, ls)
		pairs := appendLabelPairs(nil, ls)
		written := append(binary.LittleEndian.AppendUint32(nil, uint32(len(pairs))), pairs...)
		if !bytes.Equal(copied, written) {
			t.Errorf("%.60s: copied % x, written label by label % x", ls, copied[:min(len(copied), 16)], written[:min(len(written), 16)])
		}
		var b labels.ScratchBuilder
		r := journalReader{b: copied}
		got, ok := r.labels(&b)
		if !ok || len(r.b) != 0 || !labels.Equal(got, ls) {
			t.Errorf("%.60s reads back as %.60s (ok %v, %d bytes left)", ls, got, ok, len(r.b))
		}
	}
}
