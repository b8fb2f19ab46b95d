package buffer

// Thinning: over MaxBytes, sealed segments keep fewer scrapes before any
// record is dropped, the oldest the fewest, so that an outage longer than
// the budget arrives whole at a coarser resolution instead of with a
// hole at its start.
//
// Rules, and where they are enforced:
//   - What is kept: whole scrapes. A scrape is the samples of one target
//     (sample.TargetLabel) at one timestamp. At resolution F/2^j (F the
//     floor, StoreOptions.ThinFloor) a target keeps the first scrape of
//     each bucket ⌊T·2^j/F⌋ (thinSegment). Buckets nest, so thinning a
//     segment again keeps a subset of what it kept, a scrape kept at the
//     floor is kept at every finer level, and every bucket of F that held
//     a scrape of a target still holds one.
//   - Also kept, whatever the resolution: each target's last scrape in
//     the segment (series ends, counters' last values), stale markers,
//     and the sample of a cumulative series (_total, _count, _sum,
//     _bucket) just before it decreases, so that increase() over the
//     thinned range is what it was (counters stay exact).
//   - Order: thinning rewrites a segment under its own key with its
//     batches' sequence numbers; it removes samples, never moves them.
//   - Which segment: the one whose resolution is finest for its age
//     (thinPick: age² / resolution, highest first, the oldest on a tie),
//     so resolution coarsens with age and the newest data stays whole.
//     A segment partly acknowledged is left alone, and so is the
//     unsealed tail until nothing else is left to thin, when it is
//     sealed in the same transaction. Batches a lease holds are thinned
//     too (a down endpoint's probe lease may cover much of a small
//     budget), held back as drops are: counted as thinned only if the
//     lease does not deliver them whole.
//   - Nothing thinned twice: a segment's resolution is kept in the
//     bucket "thinned" under its key (value: F ms, j; 16 bytes), written
//     in the transaction that rewrites it, so a restart goes on from
//     there. Thinning is idempotent anyway: a level at or below the
//     recorded one keeps every scrape left.
//   - Only then drops: Store.write drops the oldest records (buffer_full)
//     only once no segment can be thinned further. Parked records keep
//     their policy: dropped first, oldest first, never thinned.
//   - Reported: a Dropped of reason ReasonThinned per resolution, with
//     Spans (per target, the range thinned and the samples it lost) and
//     KeptEvery; the agent counts it as thinned, never as a drop.

import (
	"encoding/binary"
	"math"
	"slices"
	"strings"
	"time"

	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/model/value"
	bolt "go.etcd.io/bbolt"

	"github.com/redwire/redwire/internal/codec"
	"github.com/redwire/redwire/sample"
)

// ReasonThinned is the Reason of a Dropped that reports samples removed
// by thinning: the range is kept at Dropped.KeptEvery, nothing of it is
// lost. The agent counts them in redwire_samples_thinned_total, never in
// redwire_samples_dropped_total.
const ReasonThinned = GapThinned

// defaultThinFloor is StoreOptions.ThinFloor's default: one scrape per
// target every 5 minutes is still a graph.
const defaultThinFloor = 5 * time.Minute

// thinFinest bounds the ladder F/2^j from below: a segment that was
// never thinned ranks as if kept at this resolution.
const thinFinest = time.Second

// bucketThinned holds the resolution of each thinned segment record.
var bucketThinned = []byte("thinned")

// thinLevel is a segment's resolution: one scrape per target kept in
// each bucket ⌊T·2^J/Floor⌋. The zero value is a segment at full
// resolution.
type thinLevel struct {
	Floor int64 // ms
	J     int64
}

func (l thinLevel) every() time.Duration {
	if l.Floor == 0 {
		return 0
	}
	return time.Duration(float64(l.Floor)/math.Exp2(float64(l.J))) * time.Millisecond
}

func (l thinLevel) bucket(t int64) int64 { return floorDiv(t<<l.J, l.Floor) }

func floorDiv(a, b int64) int64 {
	q := a / b
	if (a%b != 0) && ((a < 0) != (b < 0)) {
		q--
	}
	return q
}

func (l thinLevel) encode() []byte {
	v := binary.BigEndian.AppendUint64(nil, uint64(l.Floor))
	return binary.BigEndian.AppendUint64(v, uint64(l.J))
}

// levelOf reads the resolution of the segment under key; zero if it was
// never thinned or the value does not read (it is then thinned again,
// which keeps what it kept).
func levelOf(tx *bolt.Tx, key uint64) thinLevel {
	b := tx.Bucket(bucketThinned)
	if b == nil {
		return thinLevel{}
	}
	v := b.Get(seqKey(key))
	if len(v) != 16 {
		return thinLevel{}
	}
	l := thinLevel{Floor: int64(binary.BigEndian.Uint64(v)), J: int64(binary.BigEndian.Uint64(v[8:]))}
	if l.Floor <= 0 || l.J < 0 || l.J > 40 {
		return thinLevel{}
	}
	return l
}

// forgetLevel deletes the resolution of a segment record that is gone.
func forgetLevel(tx *bolt.Tx, key uint64) error {
	if b := tx.Bucket(bucketThinned); b != nil {
		return b.Delete(seqKey(key))
	}
	return nil
}

// thinFloor is the floor in ms, 0 if thinning is off.
func (s *Store) thinFloor() int64 {
	if s.opts.ThinFloor < 0 {
		return 0
	}
	return max(s.opts.ThinFloor.Milliseconds(), 1)
}

// thinCandidate is a segment record thinStore may rewrite.
type thinCandidate struct {
	key   uint64
	h     codec.Header
	level thinLevel
	score float64
}

// thinStore thins segments, one step at a time, while over says so and
// a segment can still be thinned; what it removed is added to out, one
// Dropped per resolution. It runs inside the write transaction of ht.
func (s *Store) thinStore(ht *headTx, out *[]Dropped, over func() bool) error {
	floor := s.thinFloor()
	if floor == 0 {
		return nil
	}
	finest := thinLevel{Floor: floor}
	for finest.every() > thinFinest && finest.J < 40 {
		finest.J++
	}
	sealed := false
	for over() {
		c, ok := s.thinPick(ht, floor, finest.every())
		if !ok {
			if sealed || ht.counts.tailBatches < 2 {
				return nil
			}
			// Everything sealed is at the floor: the tail goes into a
			// segment now, to be thinned like the rest.
			sealed = true
			if err := s.sealIn(ht); err != nil {
				return err
			}
			continue
		}
		if err := s.thinSegment(ht, c, floor, out); err != nil {
			return err
		}
		if s.thinHook != nil {
			if err := s.thinHook(); err != nil {
				return err
			}
		}
	}
	return nil
}

// coalesce merges the segment under key with the one before it if both
// are thinned to the same level and no lease holds either: a thinned
// segment is small, and each carries its own table of label sets, which
// at the floor outweighs its samples.
func (s *Store) coalesce(ht *headTx, key uint64, out *[]Dropped) error {
	records := ht.tx.Bucket(bucketRecords)
	cur := records.Cursor()
	k, v := cur.Seek(seqKey(key))
	if k == nil || binary.BigEndian.Uint64(k) != key {
		return nil
	}
	pk, pv := cur.Prev()
	if pk == nil {
		return nil
	}
	prev := binary.BigEndian.Uint64(pk)
	l := levelOf(ht.tx, key)
	if prev <= ht.counts.consumed || l.Floor == 0 || levelOf(ht.tx, prev) != l {
		return nil
	}
	ph, err1 := codec.ParseHeader(pv)
	h, err2 := codec.ParseHeader(v)
	if err1 != nil || err2 != nil || !ph.Segment || !h.Segment || ph.Samples+h.Samples > sealMaxSamples ||
		int64(len(pv)+len(v)) > s.opts.MaxBytes/2 {
		return nil
	}
	older, err1 := decodeSegmentRecord(prev, pv)
	newer, err2 := decodeSegmentRecord(key, v)
	if err1 != nil || err2 != nil {
		return nil // Peek quarantines them
	}
	// Each kept its own last scrapes, which inside the one segment are
	// no series' end: at the same level, only the bucket's first stay.
	all := append(older, newer...)
	scrapes, _ := scrapesOf(all)
	var b segmentBuilder
	b.keys = []uint64{prev, key}
	d, err := filterScrapes(ht, &b, all, scrapes, keepAt(scrapes, l), l)
	if err != nil {
		return err
	}
	if err := s.replace(ht, &b); err != nil {
		return err
	}
	addThinned(out, d)
	return ht.tx.Bucket(bucketThinned).Put(seqKey(b.seqs[0]), l.encode())
}

// thinPick returns the segment to thin next: the highest age²/resolution,
// age counted back from the newest sample stored. Squared, so that
// resolution coarsens with the square of age: the old end of a long
// outage goes to the floor well before its newest minutes are touched.
func (s *Store) thinPick(ht *headTx, floor int64, finest time.Duration) (thinCandidate, bool) {
	var (
		best  thinCandidate
		found bool
	)
	cur := ht.tx.Bucket(bucketRecords).Cursor()
	lk, lv := cur.Last()
	if lk == nil {
		return best, false
	}
	last, err := codec.ParseHeader(lv)
	if err != nil {
		return best, false
	}
	newest := last.MaxT
	for k, v := cur.First(); k != nil; k, v = cur.Next() {
		key := binary.BigEndian.Uint64(k)
		if key <= ht.counts.consumed {
			continue // partly acknowledged: about to go anyway
		}
		h, err := codec.ParseHeader(v)
		if err != nil || !h.Segment {
			continue
		}
		l := levelOf(ht.tx, key)
		res := l.every()
		if l.Floor != 0 && res >= time.Duration(floor)*time.Millisecond {
			continue // at the floor
		}
		if res == 0 {
			res = finest
		}
		age := float64(max(newest-h.MaxT, 0))
		score := age * age / float64(res.Milliseconds()+1)
		if !found || score > best.score {
			best, found = thinCandidate{key: key, h: h, level: l, score: score}, true
		}
	}
	return best, found
}

// thinSegment rewrites the segment c at the next resolution that removes
// something (the floor at most), records it, and reports what went.
func (s *Store) thinSegment(ht *headTx, c thinCandidate, floor int64, out *[]Dropped) error {
	records := ht.tx.Bucket(bucketRecords)
	v := records.Get(seqKey(c.key))
	recs, err := decodeSegmentRecord(c.key, v)
	if err != nil {
		// Peek quarantines it; meanwhile it is not thinned again.
		return ht.tx.Bucket(bucketThinned).Put(seqKey(c.key), thinLevel{Floor: floor}.encode())
	}
	scrapes, iv := scrapesOf(recs)
	// The next level: the finest of the ladder at twice the current
	// resolution (or twice the scrape interval) or coarser.
	want := 2 * max(c.level.every(), iv)
	l := thinLevel{Floor: floor}
	for l.J < 40 && (thinLevel{Floor: floor, J: l.J + 1}).every() >= want {
		l.J++
	}
	var keep map[scrapeKey]bool
	for {
		keep = keepAt(scrapes, l)
		if len(keep) < len(scrapes.times) || l.J == 0 {
			break
		}
		l.J-- // removed nothing: coarser
	}
	var b segmentBuilder
	b.keys = []uint64{c.key}
	d, err := filterScrapes(ht, &b, recs, scrapes, keep, l)
	if err != nil {
		return err
	}
	key := c.key
	if d.Samples > 0 { // else already at least this thin: recorded, not rewritten
		if err := s.replace(ht, &b); err != nil {
			return err
		}
		key = b.seqs[0]
		addThinned(out, d)
	}
	if err := ht.tx.Bucket(bucketThinned).Put(seqKey(key), l.encode()); err != nil {
		return err
	}
	return s.coalesce(ht, key, out)
}

// filterScrapes adds to b what recs keep of the scrapes keep at level l
// (and stale markers, and the samples before counter resets), and
// returns what went as a thinned report. Samples of a batch a lease
// holds are also held back for that lease, as drops are (spansOf): the
// lease may still deliver them whole, and then they were sent, not
// thinned (Buffer.settle).
func filterScrapes(ht *headTx, b *segmentBuilder, recs []Record, scrapes segmentScrapes, keep map[scrapeKey]bool, l thinLevel) (Dropped, error) {
	removed := make(map[string]*sample.Span)
	var kept []sample.Sample
	batchesGone := 0
	for _, r := range recs {
		kept = kept[:0]
		for _, smp := range r.Batch.Samples {
			sk := scrapeKey{target: smp.Labels.Get(sample.TargetLabel), t: smp.T}
			sp := removed[sk.target]
			if sp == nil {
				sp = &sample.Span{Target: sk.target, From: smp.T, To: smp.T}
				removed[sk.target] = sp
			}
			sp.From, sp.To = min(sp.From, smp.T), max(sp.To, smp.T)
			if keep[sk] || value.IsStaleNaN(smp.V) || scrapes.resets[sampleRef{r.Seq, smp.Labels.Hash(), smp.T}] {
				kept = append(kept, smp)
				continue
			}
			sp.Samples++
			if held := ht.heldBy(r.Seq, ReasonThinned); held != nil {
				held.Samples++
				held.KeptEvery = l.every()
				held.Spans = sample.AddSpans(held.Spans, []sample.Sample{smp})
			}
		}
		if len(kept) == 0 {
			batchesGone++
			continue
		}
		if err := b.add(Record{Seq: r.Seq, Batch: sample.Batch{Samples: slices.Clone(kept)}}); err != nil {
			return Dropped{}, err
		}
	}
	d := Dropped{Reason: ReasonThinned, KeptEvery: l.every(), Batches: batchesGone}
	for _, sp := range removed {
		if sp.Samples > 0 {
			d.Samples += sp.Samples
			d.Spans = append(d.Spans, *sp)
		}
	}
	slices.SortFunc(d.Spans, func(a, b sample.Span) int { return strings.Compare(a.Target, b.Target) })
	return d, nil
}

// addThinned merges d into the report of its resolution.
func addThinned(out *[]Dropped, d Dropped) {
	if d.Samples == 0 {
		return
	}
	for i := range *out {
		o := &(*out)[i]
		if o.KeptEvery == d.KeptEvery {
			o.Samples += d.Samples
			o.Batches += d.Batches
			o.Spans = append(o.Spans, d.Spans...)
			return
		}
	}
	*out = append(*out, d)
}

// scrapeKey is one scrape: a target at one timestamp.
type scrapeKey struct {
	target string
	t      int64
}

// sampleRef names one sample of a segment.
type sampleRef struct {
	seq  uint64
	hash uint64
	t    int64
}

// segmentScrapes is what thinning needs to know of a segment's samples.
type segmentScrapes struct {
	times  map[scrapeKey]bool
	byTgt  map[string][]int64 // each target's scrape times, ascending
	resets map[sampleRef]bool // the samples before a cumulative series decreases
}

// scrapesOf lists the scrapes of recs and their usual interval (the
// median step between a target's scrapes).
func scrapesOf(recs []Record) (segmentScrapes, time.Duration) {
	sc := segmentScrapes{times: map[scrapeKey]bool{}, byTgt: map[string][]int64{}, resets: map[sampleRef]bool{}}
	type last struct {
		ref sampleRef
		v   float64
	}
	prev := map[uint64]last{}
	for _, r := range recs {
		for _, smp := range r.Batch.Samples {
			k := scrapeKey{target: smp.Labels.Get(sample.TargetLabel), t: smp.T}
			if !sc.times[k] {
				sc.times[k] = true
				sc.byTgt[k.target] = append(sc.byTgt[k.target], smp.T)
			}
			if !cumulative(smp.Labels) || math.IsNaN(smp.V) {
				continue
			}
			h := smp.Labels.Hash()
			ref := sampleRef{r.Seq, h, smp.T}
			if p, ok := prev[h]; ok && smp.V < p.v {
				sc.resets[p.ref] = true
			}
			prev[h] = last{ref, smp.V}
		}
	}
	var steps []int64
	for _, ts := range sc.byTgt {
		slices.Sort(ts)
		for i := 1; i < len(ts); i++ {
			if d := ts[i] - ts[i-1]; d > 0 {
				steps = append(steps, d)
			}
		}
	}
	if len(steps) == 0 {
		return sc, 0
	}
	slices.Sort(steps)
	return sc, time.Duration(steps[len(steps)/2]) * time.Millisecond
}

// keepAt chooses the scrapes kept at level l: each target's first in
// each bucket, and its last.
func keepAt(sc segmentScrapes, l thinLevel) map[scrapeKey]bool {
	keep := make(map[scrapeKey]bool)
	for tgt, ts := range sc.byTgt {
		for i, t := range ts {
			if i == 0 || i == len(ts)-1 || l.bucket(t) != l.bucket(ts[i-1]) {
				keep[scrapeKey{tgt, t}] = true
			}
		}
	}
	return keep
}

// cumulative reports whether a series only grows until it resets: a
// counter, or a histogram's or summary's count, sum or bucket.
func cumulative(ls labels.Labels) bool {
	name := ls.Get(model.MetricNameLabel)
	for _, suffix := range []string{"_total", "_count", "_sum", "_bucket"} {
		if strings.HasSuffix(name, suffix) {
			return true
		}
	}
	return false
}

// trimHead drops the oldest batches of the head record while over says
// so, if it is a segment: past the floor, a coalesced segment holds much
// of the backlog, and dropping it whole would drop far more than the
// room needed. What it drops is counted in d as drop counts it, leased
// batches held back the same way (spansOf).
func (s *Store) trimHead(ht *headTx, d *Dropped, over func() bool) error {
	for over() {
		records := ht.tx.Bucket(bucketRecords)
		k, v := records.Cursor().First()
		if k == nil {
			return nil
		}
		key := binary.BigEndian.Uint64(k)
		h, err := codec.ParseHeader(v)
		if err != nil || !h.Segment || key <= ht.counts.consumed {
			return nil // drop takes it whole, or quarantines it
		}
		recs, err := decodeSegmentRecord(key, v)
		if err != nil || len(recs) < 4 {
			return nil
		}
		// The share of its batches the excess is of its bytes, and a
		// little more: a segment's table does not shrink with them.
		excess := ht.counts.bytes + ht.counts.parked.bytes - s.opts.MaxBytes
		n := int(int64(len(recs))*excess/int64(len(v))) + 1 + len(recs)/32
		if n >= len(recs)-1 {
			return nil
		}
		var b segmentBuilder
		for _, r := range recs[n:] {
			if err := b.add(r); err != nil {
				return err
			}
		}
		for _, r := range recs[:n] {
			if held := ht.heldBy(r.Seq, d.Reason); held != nil {
				held.Samples += r.Batch.Len()
				held.Spans = sample.AddSpans(held.Spans, r.Batch.Samples)
			} else {
				d.Spans = sample.AddSpans(d.Spans, r.Batch.Samples)
			}
			d.Samples += r.Batch.Len()
			d.Batches++
		}
		l := levelOf(ht.tx, key)
		b.keys = []uint64{key}
		if err := s.replace(ht, &b); err != nil {
			return err
		}
		if l.Floor != 0 {
			if err := ht.tx.Bucket(bucketThinned).Put(seqKey(b.seqs[0]), l.encode()); err != nil {
				return err
			}
		}
	}
	return nil
}

// sealIn seals the tail into one segment inside ht's transaction.
func (s *Store) sealIn(ht *headTx) error {
	var b segmentBuilder
	cur := ht.tx.Bucket(bucketRecords).Cursor()
	for k, v := cur.Seek(seqKey(ht.counts.tailSeq)); k != nil; k, v = cur.Next() {
		seq := binary.BigEndian.Uint64(k)
		h, err := codec.ParseHeader(v)
		if err != nil || h.Segment || int64(b.seg.Samples())+h.Samples > sealMaxSamples {
			break
		}
		batch, err := codec.DecodeRecord(&s.dec, v)
		if err != nil || seq <= ht.counts.consumed {
			break
		}
		if err := b.add(Record{Seq: seq, Batch: batch}); err != nil {
			break
		}
		b.keys = append(b.keys, seq)
	}
	if len(b.keys) < 2 {
		return nil
	}
	return s.replace(ht, &b)
}
