package buffer

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"io/fs"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync/atomic"

	"github.com/prometheus/prometheus/model/labels"
	bolt "go.etcd.io/bbolt"

	"github.com/redwire/redwire/internal/codec"
	"github.com/redwire/redwire/sample"
)

// A crash journal keeps what the memory tier holds in a file on tmpfs
// (/dev/shm or $XDG_RUNTIME_DIR): page cache outlives the process, so a
// kill -9, a panic or an OOM kill loses none of the samples taken but not
// yet sent, and no byte of it is written to flash while the receiver
// answers. A power cut or a kernel crash loses the memory tier, as
// without a journal: at most queue_config.capacity samples, and while
// the receiver answers about batch_send_deadline of scrapes.
//
// The memory tier is a sequence: samples are pushed at its end, and leave
// from its front (sent, spilled to the store) or, when the disk is full,
// from just behind the batch in flight. The journal is a log of those
// operations; replaying it rebuilds the sequence as it stood at the last
// complete entry. Each entry is
//
//	[0]     kind: 'P' push, 'F' front left, 'D' dropped from the middle
//	[1:5]   length n of the body, uint32 little-endian
//	[5:5+n] body, then the crc32c (Castagnoli) of the body
//
// A 'P' body is the samples, each label set written once per file and
// then referred to by number (journalSeries in journal_series.go gives
// the layout): a scrape's entry is mostly numbers, about 11 bytes a
// sample instead of 130. A label set is written as the label library
// holds it in memory (journalLabels), so writing one is a copy. An 'F' body is the count, a 'D' body offset and
// count, as uint64s. All numbers are little-endian.
//
// While it numbers label sets, the file is emptied (and its series
// table with it) when memory is empty and the file has grown past
// journalRewrite, not every time memory empties: a batch leaves every
// batch_send_deadline, and a table emptied that often would define every
// set again each time. Kept past that, at one Redis at 1 s the file
// reaches journalRewrite after about 20 minutes. A file that does not
// number them is emptied whenever memory is.
//
// An entry cut short by the crash, or damaged, ends the replay: it was
// the last one written. A change here needs the journal file's name to
// change, so an older journal is never misread; journals of the previous
// formats (journalLegacy) are still read, once, at the next start.
type journal struct {
	path string
	f    *os.File
	buf  []byte
	size int64 // bytes written to f
	live int   // samples the memory tier holds, as the journal knows it
	// inFile counts the samples the file's entries push: live of them
	// are still held, the rest is dead weight a rewrite drops.
	inFile int
	// series numbers the label sets the file's entries define, if
	// numbering (see nextFile); Append reads numbering without the lock.
	series    journalSeries
	numbering atomic.Bool
	// plainBytes counts the bytes written without numbering since
	// numbering last stopped.
	plainBytes int64
	err        error // the first write error; the journal is off from then on
	// legacy are journals of previous formats replayed at open, removed
	// once what they held is safe (stored, or in this journal).
	legacy []string
}

const (
	journalPush  = 'P'
	journalFront = 'F'
	journalDrop  = 'D'
	// journalRewrite is the size past which a journal is emptied once
	// memory is, or rewritten with only what memory holds once half of
	// what it pushes is gone, so it stays small while memory never quite
	// empties (many targets scraping all the time).
	journalRewrite = 4 << 20
	// journalMaxEntry bounds one entry's body on replay: a damaged length
	// must not make the replay allocate gigabytes.
	journalMaxEntry = codec.MaxDecodedBatch
)

// journalExt ends the name of a crash journal file.
const journalExt = ".journal-v3"

// journalLegacy are the previous formats, oldest first, each with the
// decoder of its 'P' bodies: v1 wrote every label set out per sample, v2
// numbered them but wrote a set as its label count and labels.
var journalLegacy = []struct {
	ext    string
	decode func(*journalSeries, []byte) ([]sample.Sample, bool)
}{
	{".journal-v1", func(_ *journalSeries, body []byte) ([]sample.Sample, bool) { return decodeJournalV1(body) }},
	{".journal-v2", func(t *journalSeries, body []byte) ([]sample.Sample, bool) {
		return t.decodePushWith(body, (*journalReader).countedLabels)
	}},
}

// journalPath is the crash journal of the store file f under dir. Its name
// carries a hash of f's absolute path, so that agents with different
// buffer directories never share a journal in the one tmpfs directory.
func journalPath(dir string, f StoreFile) string {
	abs, err := filepath.Abs(f.Path)
	if err != nil {
		abs = f.Path
	}
	base := filepath.Base(f.Path)
	return filepath.Join(dir, fmt.Sprintf("%s-%08x%s", base, crc32.Checksum([]byte(abs), crc32.IEEETable), journalExt))
}

// openJournal opens the journal at path and returns the samples it says
// the memory tier held when the last process stopped, oldest first. The
// caller stores them before anything else and then calls reset.
func openJournal(path string) (*journal, []sample.Sample, error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, nil, fmt.Errorf("crash journal: %w", err)
	}
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, nil, fmt.Errorf("crash journal: %w", err)
	}
	// A journal of a previous format holds older samples than this one
	// (the process that wrote it ran before any that wrote this one).
	var (
		held   []sample.Sample
		legacy []string
	)
	for _, l := range journalLegacy {
		lpath := strings.TrimSuffix(path, journalExt) + l.ext
		lf, err := os.Open(lpath)
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err != nil {
			f.Close()
			return nil, nil, fmt.Errorf("crash journal: %w", err)
		}
		var series journalSeries
		older, err := replayJournal(lf, func(body []byte) ([]sample.Sample, bool) { return l.decode(&series, body) })
		lf.Close()
		if err != nil {
			f.Close()
			return nil, nil, fmt.Errorf("crash journal %s: %w", lpath, err)
		}
		held = append(held, older...)
		legacy = append(legacy, lpath)
	}
	var series journalSeries
	newer, err := replayJournal(f, series.decodePush)
	if err != nil {
		f.Close()
		return nil, nil, fmt.Errorf("crash journal %s: %w", path, err)
	}
	held = append(held, newer...)
	// The file's series table is not rebuilt: the caller stores what it
	// held and resets it.
	j := &journal{path: path, f: f, live: len(held), inFile: len(held), legacy: legacy}
	j.numbering.Store(true)
	if j.size, err = f.Seek(0, io.SeekEnd); err != nil {
		f.Close()
		return nil, nil, fmt.Errorf("crash journal %s: %w", path, err)
	}
	return j, held, nil
}

// replayJournal rebuilds the memory tier from the journal's entries,
// decoding 'P' bodies with decodePush.
func replayJournal(r io.Reader, decodePush func([]byte) ([]sample.Sample, bool)) ([]sample.Sample, error) {
	var (
		held []sample.Sample
		head [5]byte
	)
	for {
		if _, err := io.ReadFull(r, head[:]); err != nil {
			return held, nil // the end, or an entry cut short by the crash
		}
		n := binary.LittleEndian.Uint32(head[1:])
		if n < 4 || n > journalMaxEntry {
			return held, nil
		}
		entry := make([]byte, n)
		if _, err := io.ReadFull(r, entry); err != nil {
			return held, nil
		}
		body := entry[:n-4]
		if crc32.Checksum(body, castagnoli) != binary.LittleEndian.Uint32(entry[n-4:]) {
			return held, nil
		}
		switch head[0] {
		case journalPush:
			s, ok := decodePush(body)
			if !ok {
				return held, nil
			}
			held = append(held, s...)
		case journalFront, journalDrop:
			vals, ok := journalNumbers(body)
			if !ok {
				return held, nil
			}
			if head[0] == journalFront && len(vals) == 1 && vals[0] <= uint64(len(held)) {
				held = held[vals[0]:]
				continue
			}
			if head[0] == journalDrop && len(vals) == 2 && vals[0]+vals[1] <= uint64(len(held)) {
				held = slices.Delete(held, int(vals[0]), int(vals[0]+vals[1]))
				continue
			}
			return nil, fmt.Errorf("entry %c %v does not fit the %d samples held", head[0], vals, len(held))
		default:
			return held, nil
		}
	}
}

// journalNumbers decodes the body of an 'F' or 'D' entry.
func journalNumbers(body []byte) ([]uint64, bool) {
	if len(body)%8 != 0 {
		return nil, false
	}
	vals := make([]uint64, len(body)/8)
	for i := range vals {
		vals[i] = binary.LittleEndian.Uint64(body[8*i:])
	}
	return vals, true
}

// decodeJournalV1 decodes the body of a 'P' entry of the previous format
// (journalExtV1): a uvarint count, then per sample a uvarint label count,
// each label's name and value as uvarint length and bytes, and the
// timestamp and value bits as uint64s.
func decodeJournalV1(body []byte) ([]sample.Sample, bool) {
	r := journalReader{b: body}
	n := r.uvarint()
	if n > uint64(len(body)) {
		return nil, false
	}
	out := make([]sample.Sample, 0, n)
	var b labels.ScratchBuilder
	for range n {
		ls, ok := r.countedLabels(&b)
		if !ok {
			return nil, false
		}
		t, v := r.uint64(), r.uint64()
		if r.bad {
			return nil, false
		}
		out = append(out, sample.Sample{Labels: ls, T: int64(t), V: math.Float64frombits(v)})
	}
	return out, !r.bad && len(r.b) == 0
}

// journalReader reads a 'P' body; bad is set once it runs short.
type journalReader struct {
	b   []byte
	bad bool
}

func (r *journalReader) uvarint() uint64 {
	v, n := binary.Uvarint(r.b)
	if n <= 0 {
		r.bad, r.b = true, nil
		return 0
	}
	r.b = r.b[n:]
	return v
}

func (r *journalReader) bytes() []byte {
	n := r.uvarint()
	if n > uint64(len(r.b)) {
		r.bad, r.b = true, nil
		return nil
	}
	out := r.b[:n]
	r.b = r.b[n:]
	return out
}

func (r *journalReader) uint64() uint64 {
	if len(r.b) < 8 {
		r.bad, r.b = true, nil
		return 0
	}
	v := binary.LittleEndian.Uint64(r.b)
	r.b = r.b[8:]
	return v
}

// push records samples s pushed at the end of the memory tier; hashes
// are their label sets' (journalHashes), nil if Append found the journal
// not numbering.
func (j *journal) push(s []sample.Sample, hashes []uint64) {
	if len(s) == 0 {
		return
	}
	switch {
	case !j.numbering.Load():
		hashes = nil
	case hashes == nil: // numbering since Append looked
		hashes = journalHashes(nil, s)
	}
	j.buf = sealEntry(j.series.appendPush(append(j.buf[:0], journalPush, 0, 0, 0, 0), s, hashes))
	j.write(j.buf)
	j.live += len(s)
	j.inFile += len(s)
	if hashes != nil && j.size > journalRewrite/4 && j.series.hits < j.series.defs {
		// A quarter into the file, fewer samples found their set again
		// than defined one: stop numbering now rather than at the next
		// file (nextFile), so that trying again costs little.
		j.numbering.Store(false)
	}
}

// front records that the oldest n samples left the memory tier: taken by
// the receiver, committed to the store, or counted as dropped.
func (j *journal) front(n int) {
	if n > 0 {
		j.numbers(journalFront, uint64(n))
		j.live -= n
	}
}

// drop records that n samples at offset off of the memory tier left it.
func (j *journal) drop(off, n int) {
	if n > 0 {
		j.numbers(journalDrop, uint64(off), uint64(n))
		j.live -= n
	}
}

func (j *journal) numbers(kind byte, vals ...uint64) {
	if j.err != nil {
		return
	}
	j.buf = append(j.buf[:0], kind, 0, 0, 0, 0)
	for _, v := range vals {
		j.buf = binary.LittleEndian.AppendUint64(j.buf, v)
	}
	j.buf = sealEntry(j.buf)
	j.write(j.buf)
}

// sealEntry adds its length and checksum to the entry e.
func sealEntry(e []byte) []byte {
	e = binary.LittleEndian.AppendUint32(e, crc32.Checksum(e[5:], castagnoli))
	binary.LittleEndian.PutUint32(e[1:], uint32(len(e)-5))
	return e
}

// write appends a sealed entry to the file.
func (j *journal) write(e []byte) {
	if j.err != nil {
		return
	}
	if _, err := j.f.Write(e); err != nil {
		j.err = err
		return
	}
	j.size += int64(len(e))
}

// compact keeps the journal small: once it has grown past
// journalRewrite, emptied if memory is empty, and rewritten with only
// what memory holds (held, oldest first) if half of what it pushes is
// gone. It is called with the buffer's lock held.
func (j *journal) compact(held func() []sample.Sample) {
	switch {
	case j.err != nil:
	case j.live == 0 && j.size > 0 && (j.size > journalRewrite || !j.numbering.Load()):
		// Not numbering, nothing is lost by emptying it at once, and a
		// small file stays in the CPU's cache.
		j.reset()
	case j.size > journalRewrite && 2*j.live < j.inFile:
		// At least half of what the file pushes is gone: a rewrite costs
		// at most what was appended since the last one, however much
		// memory holds (many targets, a receiver that keeps up slowly).
		j.rewrite(held())
	}
}

// reset empties the journal.
func (j *journal) reset() {
	if j.err != nil {
		return
	}
	if err := j.f.Truncate(0); err != nil {
		j.err = err
		return
	}
	if _, err := j.f.Seek(0, io.SeekStart); err != nil {
		j.err = err
		return
	}
	j.nextFile(j.size)
	j.size, j.live, j.inFile = 0, 0, 0
}

// nextFile starts the series table of a new file, the last one (of size
// bytes) emptied or rewritten. It numbers label sets only if the last
// file that did found them again: at one Redis at 1 s a file sees each
// set hundreds of times, but at 2000 Redis at 10 s no set comes back
// before the file is emptied (its 600,000 sets would need 80 MB of it),
// and numbering is then only a cost, more than writing the sets out.
// After 16 journalRewrite of files not numbered, the next numbers again,
// to notice a change.
func (j *journal) nextFile(size int64) {
	if j.numbering.Load() {
		j.numbering.Store(j.series.hits >= j.series.defs)
	} else if j.plainBytes += size; j.plainBytes >= 16*journalRewrite {
		j.numbering.Store(true)
		j.plainBytes = 0
	}
	j.series.reset()
}

// rewrite replaces the journal with one push of held. A crash part way
// leaves either the old file or the new one whole: the new one is written
// beside it and renamed over it.
func (j *journal) rewrite(held []sample.Sample) {
	tmp := j.path + ".tmp"
	f, err := os.OpenFile(tmp, os.O_RDWR|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		j.err = err
		return
	}
	oldF := j.f
	j.nextFile(j.size)
	j.f, j.size, j.live, j.inFile = f, 0, 0, 0
	j.push(held, nil)
	if j.err == nil {
		j.err = os.Rename(tmp, j.path)
	}
	if j.err != nil {
		f.Close()
		os.Remove(tmp)
		return
	}
	oldF.Close()
}

// dropLegacy removes the journals of previous formats that openJournal
// replayed, once what they held is safe.
func (j *journal) dropLegacy() {
	if j.err != nil {
		return
	}
	j.legacy = slices.DeleteFunc(j.legacy, func(path string) bool {
		err := os.Remove(path)
		return err == nil || errors.Is(err, fs.ErrNotExist)
	})
}

// close closes the journal and removes its file if memory holds nothing,
// as after a clean stop; otherwise the file stays for the next start.
func (j *journal) close() error {
	err := j.f.Close()
	if j.live == 0 && j.err == nil {
		err = errors.Join(err, os.Remove(j.path))
	}
	return err
}

// The Buffer's side of the journal.

func (b *Buffer) openJournal() {
	j, held, err := openJournal(journalPath(b.opts.JournalDir, StoreFile{Path: b.store.path}))
	if err != nil {
		b.journalErr = err
		return
	}
	b.journal, b.recovered = j, len(held)
	if n, err := b.store.storedPrefix(held); err == nil && n > 0 {
		held = held[n:] // committed by a spill the journal had not noted
	}
	for len(held) > 0 {
		n := min(len(held), max(b.opts.MaxBatch, 1))
		dropped, err := b.store.Append(sample.Batch{Samples: held[:n]})
		b.recoveryDrops = append(b.recoveryDrops, dropped...)
		if err != nil {
			// The disk cannot take them now: memory keeps them, and the
			// journal keeps them as memory's.
			b.mem.push(held)
			j.rewrite(held)
			j.dropLegacy()
			return
		}
		held = held[n:]
	}
	j.reset()
	j.dropLegacy()
}

// Journal reports the crash journal: how many samples it gave back at
// New (taken by a process that stopped before sending them), and why
// there is none or why it stopped (nil while it works or if none was
// asked for).
func (b *Buffer) Journal() (recovered int, err error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.journal != nil && b.journal.err != nil {
		return b.recovered, fmt.Errorf("crash journal %s: %w", b.journal.path, b.journal.err)
	}
	return b.recovered, b.journalErr
}

// RecoveryDrops returns, once, what the store dropped to make room (or
// for age) while New stored what the journal gave back: the journal's
// samples are the newest, so storing them under max_bytes may push out
// the oldest of the backlog, and the caller counts that as any drop.
func (b *Buffer) RecoveryDrops() []Dropped {
	b.mu.Lock()
	defer b.mu.Unlock()
	ds := b.recoveryDrops
	b.recoveryDrops = nil
	return ds
}

// journaled reports whether memory's samples are safe in a working
// journal; mu must be held.
func (b *Buffer) journaled() bool { return b.journal != nil && b.journal.err == nil }

// held returns what memory holds, oldest first: the batch in flight, then
// the queue; mu must be held.
func (b *Buffer) held() []sample.Sample {
	var s []sample.Sample
	if b.inflight != nil {
		s = append(s, b.inflight.Batch.Samples...)
	}
	return append(s, b.mem.peek(b.mem.len())...)
}

// journalFront records that the oldest n samples of memory left it; mu
// must be held.
func (b *Buffer) journalFront(n int) {
	if b.journal != nil {
		b.journal.front(n)
		b.journal.compact(b.held)
	}
}

// storedPrefix is how many of the first samples of held the store's
// newest records already hold, as their last samples in the same order.
// A spill commits memory to the store and then notes in the journal that
// memory let it go: a crash between the two leaves the samples in both,
// and storing them again would send them twice, the second time older
// than what the receiver already holds, which it refuses.
func (s *Store) storedPrefix(held []sample.Sample) (int, error) {
	if len(held) == 0 {
		return 0, nil
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	var tail []sample.Sample // the store's newest samples, oldest first
	err := protect(func() error {
		return s.db.View(func(tx *bolt.Tx) error {
			var dec codec.BatchDecoder
			c := tx.Bucket(bucketRecords).Cursor()
			for k, v := c.Last(); k != nil && len(tail) < len(held); k, v = c.Prev() {
				recs, err := decodeRecords(&dec, binary.BigEndian.Uint64(k), v, s.counts.consumed)
				if err != nil {
					return nil // an unreadable record ends the search: store it all again
				}
				var rec []sample.Sample
				for _, r := range recs {
					rec = append(rec, r.Batch.Samples...)
				}
				tail = append(rec, tail...)
			}
			return nil
		})
	})
	if err != nil {
		return 0, err
	}
	for p := range tail {
		if k := len(tail) - p; k <= len(held) && sameSamples(tail[p:], held[:k]) {
			return k, nil
		}
	}
	return 0, nil
}

// sameSamples reports whether a and b are the same samples in the same
// order: series, time and value bits.
func sameSamples(a, b []sample.Sample) bool {
	for i := range a {
		if a[i].T != b[i].T || math.Float64bits(a[i].V) != math.Float64bits(b[i].V) || !labels.Equal(a[i].Labels, b[i].Labels) {
			return false
		}
	}
	return true
}
