package buffer

import (
	"encoding/binary"
	"math"
	"slices"

	"github.com/prometheus/prometheus/model/labels"

	"github.com/redwire/redwire/sample"
)

// journalSeries is the series table of one journal file: the label sets
// its 'P' entries have defined, numbered in the order they were defined.
// A target sends the same ~300 label sets every scrape, so a scrape's
// entry is mostly numbers: each set is written once per file, not once
// per sample. The table lives as long as the file's content: reset and
// rewrite empty both.
//
// A 'P' body is a uvarint sample count, then per sample
//
//	uvarint  0, and the label set follows, not numbered (a file that does
//	         not number sets, see journal.nextFile); or 1 + its series
//	         number; if that is the table's length, the label set follows
//	         and takes that number. A label set is its byte length as a
//	         uint32, then that many bytes: each label's name and value as size and
//	         bytes, sorted by name; a size is one byte if below 255, else
//	         255 and three bytes little-endian (labelSize)
//	varint   timestamp minus the previous sample's in the entry (the
//	         first: minus 0), zigzag
//	uint64   value bits, little-endian
//
// so an entry never refers to a set defined by a later one, and a set is
// defined where it is first used.
type journalSeries struct {
	// refs finds a set's number by its hash; sets[ref] is compared to
	// tell a hash collision, which costs one more definition.
	refs map[uint64]uint32
	sets []labels.Labels
	// hits counts the samples that referred to a set defined before,
	// defs those that defined one: whether numbering pays.
	hits, defs int
}

// reset empties the table, as its file is emptied.
func (t *journalSeries) reset() {
	clear(t.refs)
	clear(t.sets) // drop the references: the sets' memory is the cache's to free
	t.sets = t.sets[:0]
	t.hits, t.defs = 0, 0
}

// journalHashes appends the hashes of the label sets of s, which
// appendPush needs; they are computed before the buffer's lock is taken.
func journalHashes(dst []uint64, s []sample.Sample) []uint64 {
	for i := range s {
		dst = append(dst, s[i].Labels.Hash())
	}
	return dst
}

// appendPush appends the 'P' body of s, whose label sets hash to hashes
// (journalHashes), defining in t the sets it does not know yet. Without
// hashes it writes every set out, not numbered.
func (t *journalSeries) appendPush(dst []byte, s []sample.Sample, hashes []uint64) []byte {
	if t.refs == nil {
		t.refs = make(map[uint64]uint32)
	}
	dst = binary.AppendUvarint(dst, uint64(len(s)))
	var prevT int64
	for i := range s {
		ls := s[i].Labels
		if hashes == nil {
			dst = t.appendLabels(append(dst, 0), ls)
		} else if ref, ok := t.refs[hashes[i]]; ok && labels.Equal(t.sets[ref], ls) {
			dst = binary.AppendUvarint(dst, 1+uint64(ref))
			t.hits++
		} else {
			ref = uint32(len(t.sets))
			if !ok {
				t.refs[hashes[i]] = ref
			} // else a collision: the first set keeps the hash
			t.sets = append(t.sets, ls)
			dst = t.appendLabels(binary.AppendUvarint(dst, 1+uint64(ref)), ls)
			t.defs++
		}
		dst = binary.AppendVarint(dst, s[i].T-prevT)
		prevT = s[i].T
		dst = binary.LittleEndian.AppendUint64(dst, math.Float64bits(s[i].V))
	}
	return dst
}

// appendLabels appends ls as a journal label set: its byte length, then
// its labels. Where the label library keeps a set in memory in that very
// layout (its default, stringlabels), the set is copied as it is: at 2000
// targets no set comes back within a journal file, and walking every
// label of every sample was most of the journal's cost.
func (t *journalSeries) appendLabels(dst []byte, ls labels.Labels) []byte {
	at := len(dst)
	dst = append(dst, 0, 0, 0, 0) // the length, known once the set is written
	if journalLabelsAsInMemory {
		// Bytes writes into the room dst has, or else allocates.
		dst = slices.Grow(dst, 512)
		set := ls.Bytes(dst[len(dst):])
		if len(set) <= cap(dst)-len(dst) {
			dst = dst[:len(dst)+len(set)]
		} else {
			dst = append(dst, set...)
		}
	} else {
		dst = appendLabelPairs(dst, ls)
	}
	binary.LittleEndian.PutUint32(dst[at:], uint32(len(dst)-at-4))
	return dst
}

// appendLabelPairs appends each label of ls as size and bytes of its
// name, then of its value.
func appendLabelPairs(dst []byte, ls labels.Labels) []byte {
	ls.Range(func(l labels.Label) {
		dst = append(appendLabelSize(dst, len(l.Name)), l.Name...)
		dst = append(appendLabelSize(dst, len(l.Value)), l.Value...)
	})
	return dst
}

// appendLabelSize appends a label name's or value's size: one byte below
// 255, else 255 and three bytes little-endian (no label is 16 MiB long).
func appendLabelSize(dst []byte, n int) []byte {
	if n < 255 {
		return append(dst, byte(n))
	}
	return append(dst, 255, byte(n), byte(n>>8), byte(n>>16))
}

// journalLabelsAsInMemory says whether labels.Labels.Bytes gives a set in
// the journal's layout, as the stringlabels build of the label library
// (Prometheus' default) does today; under other build tags, or if the
// library changes its layout, sets are written label by label and the
// journal's format stays what this file says. Computed once: a fact of
// the build, not state.
var journalLabelsAsInMemory = func() bool {
	ls := labels.FromStrings("a", "b", "instance", string(make([]byte, 300)), "z", "")
	return string(ls.Bytes(nil)) == string(appendLabelPairs(nil, ls))
}()

// decodePush decodes a 'P' body, defining in t the sets it defines. A
// body that is short, refers to a set not defined yet or has bytes left
// over is not ok.
func (t *journalSeries) decodePush(body []byte) ([]sample.Sample, bool) {
	return t.decodePushWith(body, (*journalReader).labels)
}

// decodePushWith is decodePush with the label sets read by readLabels:
// the layout of the current format, or the previous one's.
func (t *journalSeries) decodePushWith(body []byte, readLabels func(*journalReader, *labels.ScratchBuilder) (labels.Labels, bool)) ([]sample.Sample, bool) {
	r := journalReader{b: body}
	n := r.uvarint()
	if n > uint64(len(body)) {
		return nil, false
	}
	out := make([]sample.Sample, 0, n)
	var (
		b     labels.ScratchBuilder
		prevT int64
	)
	for range n {
		var ls labels.Labels
		switch x := r.uvarint(); {
		case x == 0 || x-1 == uint64(len(t.sets)):
			var ok bool
			if ls, ok = readLabels(&r, &b); !ok {
				return nil, false
			}
			if x > 0 {
				t.sets = append(t.sets, ls)
			}
		case x-1 < uint64(len(t.sets)):
			ls = t.sets[x-1]
		default:
			return nil, false
		}
		prevT += r.varint()
		v := r.uint64()
		if r.bad {
			return nil, false
		}
		out = append(out, sample.Sample{Labels: ls, T: prevT, V: math.Float64frombits(v)})
	}
	return out, !r.bad && len(r.b) == 0
}

// labels reads a label set as appendLabels wrote it.
func (r *journalReader) labels(b *labels.ScratchBuilder) (labels.Labels, bool) {
	if len(r.b) < 4 {
		r.bad, r.b = true, nil
		return labels.EmptyLabels(), false
	}
	n := binary.LittleEndian.Uint32(r.b)
	if uint64(n) > uint64(len(r.b)-4) {
		r.bad, r.b = true, nil
		return labels.EmptyLabels(), false
	}
	set := journalReader{b: r.b[4 : 4+n]}
	r.b = r.b[4+n:]
	b.Reset()
	for len(set.b) > 0 && !set.bad {
		name := set.labelString()
		b.Add(string(name), string(set.labelString()))
	}
	return b.Labels(), !set.bad
}

// labelString reads a label name or value as appendLabelPairs wrote it.
func (r *journalReader) labelString() []byte {
	if len(r.b) == 0 {
		r.bad = true
		return nil
	}
	n, skip := int(r.b[0]), 1
	if n == 255 {
		if len(r.b) < 4 {
			r.bad, r.b = true, nil
			return nil
		}
		n, skip = int(r.b[1])|int(r.b[2])<<8|int(r.b[3])<<16, 4
	}
	if n > len(r.b)-skip {
		r.bad, r.b = true, nil
		return nil
	}
	out := r.b[skip : skip+n]
	r.b = r.b[skip+n:]
	return out
}

// countedLabels reads a label set as the previous formats wrote it: a
// uvarint label count, then each label's name and value as uvarint
// length and bytes.
func (r *journalReader) countedLabels(b *labels.ScratchBuilder) (labels.Labels, bool) {
	nl := r.uvarint()
	if nl > uint64(len(r.b)) {
		return labels.EmptyLabels(), false
	}
	b.Reset()
	for range nl {
		name := r.bytes()
		b.Add(string(name), string(r.bytes()))
	}
	return b.Labels(), !r.bad
}

func (r *journalReader) varint() int64 {
	v, n := binary.Varint(r.b)
	if n <= 0 {
		r.bad, r.b = true, nil
		return 0
	}
	r.b = r.b[n:]
	return v
}
