package remotewrite

import (
	"context"
	"math"
	"math/bits"
	"slices"

	"github.com/redwire/redwire/sample"
)

// Isolation: a receiver that rolls a request back at its first bad sample
// (RolledBack) has stored nothing of it, so the policy splits the request
// to find the samples it refuses and delivers the rest, rather than answer
// the whole part refused. The rules, and why:
//
//   - A refused part that spans several timestamps is split by time, the
//     older half (T ≤ the median T) sent first: a receiver takes a
//     series' samples in time order only. A part of one timestamp is
//     split by series.
//   - A part of one timestamp refused for being past the receiver's
//     cutoff (pastCutoff) is older than it whole, and so is everything at
//     or before that timestamp: the rest of the Deliver answers those
//     refused without sending them.
//   - A part refused past the cutoff over several timestamps is probed
//     (once per Deliver) with one sample at its newest timestamp: refused, the whole
//     part is older than the cutoff (a backlog hours behind costs two
//     requests per batch); taken, the rest is isolated. The probe's series
//     is the one with the fewest samples in the part, and its older
//     samples go last: the receiver now holds a newer one of theirs.
//   - The work is bounded: isolation makes at most isolationBudget(n)
//     requests beyond the refused one, and as many again for each refused
//     group it finds, up to maxIsolationGroups groups. A part still
//     unresolved then is answered refused with the refusal it was in.
//
// Verdicts are collected per sample and answered in the batch's order,
// in runs of the same verdict, once the isolation is over, so the
// Handler's parts stay the batch's next samples.

// maxIsolationGroups bounds how many refused groups one isolation pays
// requests to find: a batch whose every series is refused is not sent
// sample by sample.
const maxIsolationGroups = 8

// isolationBudget is the requests one refused group of a request of n
// samples may cost: a binary search's two requests per level, and a few
// more for a probe and a group that straddles a split.
func isolationBudget(n int) int {
	return 2*bits.Len(uint(n)) + 4
}

// isolation is the state of isolating one refused request. It outlives
// a failed try: the Deliver's next try resumes it (tries.iso), so that
// what the receiver took meanwhile, past the answered prefix, is not
// sent again to be refused as out of order.
type isolation struct {
	b        *sample.Batch
	verdicts []error // per sample of b: nil while undecided or taken
	decided  []bool
	answered int    // b's first samples already told to the Handler
	stack    []work // the parts left, the next one last
	budget   int
	grants   int // refused groups found that added to the budget
	sentMeta bool
}

// work is a part of b yet to be resolved: idx in batch order, refused
// with err (nil: not sent yet; then parent is the refusal it came from).
type work struct {
	idx         []int
	err, parent error
}

// isolate finds which of b's samples the receiver refuses, given that it
// refused them all together with err (nil: b is yet to be sent, because
// some of it is past a cutoff already found), or resumes the isolation a
// failed try left in st. It answers h for b in batch order and returns
// how many of b's first samples were answered for; on a failed try (err
// not nil) the rest is for Deliver to retry, and the isolation goes on
// then.
func (p Policy) isolate(ctx context.Context, s Sender, enc *Encoder, b *sample.Batch, err error, h Handler, st *tries) (int, error) {
	st.split = true // what follows is no retry of the whole batch
	iso := st.iso
	st.iso = nil
	if iso == nil || iso.b.Len()-iso.answered != b.Len() {
		all := make([]int, b.Len())
		for i := range all {
			all[i] = i
		}
		own := *b // b is the caller's, and changes with its tries
		iso = &isolation{
			b:        &own,
			verdicts: make([]error, b.Len()),
			decided:  make([]bool, b.Len()),
			stack:    []work{{idx: all, err: err, parent: err}},
			budget:   isolationBudget(b.Len()),
		}
	}
	var failed error
	for len(iso.stack) > 0 && failed == nil {
		w := iso.stack[len(iso.stack)-1]
		iso.stack = iso.stack[:len(iso.stack)-1]
		var more []work
		more, failed = p.resolve(ctx, s, enc, h, st, iso, w)
		// more is in sending order; the stack pops its last first.
		for i := len(more) - 1; i >= 0; i-- {
			iso.stack = append(iso.stack, more[i])
		}
	}
	n := iso.answer(h)
	if failed != nil {
		st.iso = iso
	}
	return n, failed
}

// resolve sends or splits one part, and returns the parts it leaves, in
// the order they are to be sent.
func (p Policy) resolve(ctx context.Context, s Sender, enc *Encoder, h Handler, st *tries, iso *isolation, w work) ([]work, error) {
	// What is past a cutoff found meanwhile is refused unsent.
	if st.cutoffErr != nil {
		kept := w.idx[:0:0]
		for _, i := range w.idx {
			if iso.b.Samples[i].T <= st.cutoff {
				iso.refuse(i, st.cutoffErr)
			} else {
				kept = append(kept, i)
			}
		}
		if len(kept) < len(w.idx) {
			w.idx, w.err = kept, nil // the refusal may have been theirs alone
		}
	}
	if len(w.idx) == 0 {
		return nil, nil
	}
	if w.err == nil {
		if iso.budget <= 0 {
			iso.refuseAll(w.idx, w.parent)
			return nil, nil
		}
		iso.budget--
		err := p.sendPart(ctx, s, enc, h, iso, w.idx)
		switch {
		case err == nil:
			for _, i := range w.idx {
				iso.decided[i] = true
			}
			return nil, nil
		case ClassOf(err) == TooLarge && len(w.idx) > 1:
			older, newer := iso.split(w.idx)
			return []work{{idx: older, parent: w.parent}, {idx: newer, parent: w.parent}}, nil
		case ClassOf(err) == TooLarge:
			err = &Error{StatusCode: 413, Class: Reject, Body: "a single sample is too large"}
		case ClassOf(err) != Reject:
			return []work{w}, err // sent again when the isolation resumes
		}
		w.err = err
	}
	return p.refused(ctx, s, enc, h, st, iso, w)
}

// refused splits a part the receiver refused with w.err, or answers it.
func (p Policy) refused(ctx context.Context, s Sender, enc *Encoder, h Handler, st *tries, iso *isolation, w work) ([]work, error) {
	cutoff := pastCutoff(w.err)
	oldest, newest := iso.span(w.idx)
	switch {
	case len(w.idx) == 1, cutoff && oldest == newest:
		// Past the cutoff at one timestamp: so is all of it.
		iso.found(w.idx, w.err)
		if cutoff {
			st.pastCutoff(newest, w.err)
		}
		return nil, nil
	case !RolledBack(w.err), iso.budget <= 0:
		iso.refuseAll(w.idx, w.err)
		return nil, nil
	}
	rest := w.idx
	var last []int // the probe's series, older than what the probe left
	if cutoff && !st.probed {
		st.probed = true
		probe, series := iso.probe(w.idx, newest)
		iso.budget--
		err := p.sendPart(ctx, s, enc, h, iso, []int{probe})
		switch {
		case err == nil:
			iso.decided[probe] = true
		case pastCutoff(err):
			// Its newest sample is past the cutoff: all of it is.
			iso.found(w.idx, err)
			st.pastCutoff(newest, err)
			return nil, nil
		case ClassOf(err) == Reject:
			iso.found([]int{probe}, err)
		default:
			st.probed = false // no answer: the next try probes again
			return []work{w}, err
		}
		rest, last = nil, nil
		for _, i := range w.idx {
			switch {
			case i == probe:
			case iso.b.Samples[i].Labels.Hash() == series:
				last = append(last, i)
			default:
				rest = append(rest, i)
			}
		}
	}
	// rest was refused with the rest of w, and still holds what earned it.
	var more []work
	if len(rest) > 1 {
		older, newer := iso.split(rest)
		more = append(more, work{idx: older, parent: w.err}, work{idx: newer, parent: w.err})
	} else if len(rest) == 1 {
		more = append(more, work{idx: rest, parent: w.err})
	}
	if len(last) > 0 {
		more = append(more, work{idx: last, parent: w.err})
	}
	return more, nil
}

// sendPart sends the samples idx of the batch as one request; the first
// request of the isolation carries the batch's metadata.
func (p Policy) sendPart(ctx context.Context, s Sender, enc *Encoder, h Handler, iso *isolation, idx []int) error {
	part := sample.Batch{Samples: make([]sample.Sample, len(idx))}
	for j, i := range idx {
		part.Samples[j] = iso.b.Samples[i]
	}
	if !iso.sentMeta {
		part.Metadata, iso.sentMeta = iso.b.Metadata, true
	}
	_, err := p.post(ctx, s, enc, &part, nil, h)
	return err
}

// span is the oldest and newest timestamp of idx.
func (iso *isolation) span(idx []int) (oldest, newest int64) {
	oldest, newest = math.MaxInt64, math.MinInt64
	for _, i := range idx {
		t := iso.b.Samples[i].T
		oldest, newest = min(oldest, t), max(newest, t)
	}
	return oldest, newest
}

// split halves idx: by time if it spans several timestamps (T ≤ the
// median T, then the rest), else by series (the first half of its
// series, then the rest), else by position. Each half keeps batch order.
func (iso *isolation) split(idx []int) (older, newer []int) {
	ts := make([]int64, len(idx))
	for j, i := range idx {
		ts[j] = iso.b.Samples[i].T
	}
	slices.Sort(ts)
	if ts[0] != ts[len(ts)-1] {
		pivot := ts[(len(ts)-1)/2]
		if pivot == ts[len(ts)-1] {
			// Most samples at the newest timestamp: the older half is
			// everything before it.
			j, _ := slices.BinarySearch(ts, pivot)
			pivot = ts[j-1]
		}
		for _, i := range idx {
			if iso.b.Samples[i].T <= pivot {
				older = append(older, i)
			} else {
				newer = append(newer, i)
			}
		}
		return older, newer
	}
	var series []uint64
	seen := map[uint64]bool{}
	for _, i := range idx {
		if h := iso.b.Samples[i].Labels.Hash(); !seen[h] {
			seen[h] = true
			series = append(series, h)
		}
	}
	if len(series) == 1 {
		return idx[:len(idx)/2], idx[len(idx)/2:]
	}
	first := map[uint64]bool{}
	for _, h := range series[:len(series)/2] {
		first[h] = true
	}
	for _, i := range idx {
		if first[iso.b.Samples[i].Labels.Hash()] {
			older = append(older, i)
		} else {
			newer = append(newer, i)
		}
	}
	return older, newer
}

// probe picks a sample of idx at newest, of the series with the fewest
// samples in idx: the fewer older samples of its series, the fewer the
// receiver refuses as out of order once it took the probe.
func (iso *isolation) probe(idx []int, newest int64) (probe int, series uint64) {
	count := map[uint64]int{}
	for _, i := range idx {
		count[iso.b.Samples[i].Labels.Hash()]++
	}
	probe = -1
	for _, i := range idx {
		if iso.b.Samples[i].T != newest {
			continue
		}
		h := iso.b.Samples[i].Labels.Hash()
		if probe < 0 || count[h] < count[series] {
			probe, series = i, h
		}
	}
	return probe, series
}

func (iso *isolation) refuse(i int, err error) {
	iso.verdicts[i], iso.decided[i] = err, true
}

func (iso *isolation) refuseAll(idx []int, err error) {
	for _, i := range idx {
		iso.refuse(i, err)
	}
}

// found refuses a group the isolation resolved, and lets it look for the
// next group.
func (iso *isolation) found(idx []int, err error) {
	iso.refuseAll(idx, err)
	if iso.grants < maxIsolationGroups-1 {
		iso.grants++
		iso.budget += isolationBudget(len(iso.verdicts))
	}
}

// answer tells h the verdicts of b's samples from the first not yet
// told up to the first undecided one, in runs of one verdict, and
// returns how many it told. The first run of b carries its metadata.
func (iso *isolation) answer(h Handler) int {
	from := iso.answered
	n := from
	for n < len(iso.decided) && iso.decided[n] {
		n++
	}
	for start := from; start < n; {
		end := start + 1
		for end < n && iso.verdicts[end] == iso.verdicts[start] {
			end++
		}
		part := sample.Batch{Samples: iso.b.Samples[start:end]}
		if start == 0 {
			part.Metadata = iso.b.Metadata
		}
		h.Answered(&part, iso.verdicts[start])
		start = end
	}
	iso.answered = n
	return n - from
}
