package agent

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"maps"
	"os"
	"path/filepath"
	"sync"
	"time"
)

// When each target was last scraped is kept in two places, so that the
// next run can report the time the agent was down (agent_down ranges):
//
//   - on tmpfs, next to the crash journals, a slot file: one record per
//     target, [u16 name length][name][i64 Unix ms, little endian], whose
//     time every scrape overwrites in place with one 8-byte pwrite. A
//     kill -9 cannot tear a write the kernel has taken, so after a crash
//     of the process the time is exact, at the cost of one syscall a
//     scrape and no flash writes.
//   - in buffer.path, lastScrapesFile (JSON), written every
//     lastScrapesDiskEvery and at a clean stop: what a host that lost its
//     tmpfs (a reboot) still has. A power cut therefore starts an
//     agent_down range at most that much early.
const (
	lastScrapesFile      = "last-scrapes.json"
	lastScrapesDiskEvery = 10 * time.Minute
)

// lastScrapes tracks the last scrape of every target: the previous
// run's (read at start) and this run's.
type lastScrapes struct {
	mu   sync.Mutex
	prev map[string]int64 // ms; a target leaves it at its first scrape
	now  map[string]int64 // ms
	// slots is the tmpfs slot file (nil if there is none) and at each
	// target's time in it.
	slots  *os.File
	at     map[string]int64
	end    int64
	disk   string    // "" for none
	diskAt time.Time // last written to disk
}

// lastScrapesData is the disk file's content.
type lastScrapesData struct {
	Targets map[string]int64 `json:"targets"` // last scrape, Unix ms
}

// openLastScrapes reads what earlier runs left in the slot file tmp and
// the disk file, the newest time of each target winning, and starts a
// fresh slot file that holds them. A file that does not read is
// reported and ignored: it costs an agent_down range, never data.
func openLastScrapes(tmp, disk string) (*lastScrapes, error) {
	ls := &lastScrapes{prev: map[string]int64{}, now: map[string]int64{}, at: map[string]int64{}, disk: disk, diskAt: time.Now()}
	var errs []error
	if tmp != "" {
		raw, err := os.ReadFile(tmp)
		if err != nil && !errors.Is(err, fs.ErrNotExist) {
			errs = append(errs, err)
		}
		for t, ms := range parseSlots(raw) {
			ls.prev[t] = max(ls.prev[t], ms)
		}
	}
	if disk != "" {
		raw, err := os.ReadFile(disk)
		var d lastScrapesData
		if err == nil {
			err = json.Unmarshal(raw, &d)
		}
		if err != nil && !errors.Is(err, fs.ErrNotExist) {
			errs = append(errs, fmt.Errorf("%s: %w", disk, err))
		}
		for t, ms := range d.Targets {
			ls.prev[t] = max(ls.prev[t], ms)
		}
	}
	if tmp != "" {
		if err := ls.startSlots(tmp); err != nil {
			errs = append(errs, err)
		}
	}
	return ls, errors.Join(errs...)
}

// parseSlots reads a slot file; a record cut short (a crash while a new
// target's record was appended) ends it.
func parseSlots(raw []byte) map[string]int64 {
	out := map[string]int64{}
	for len(raw) >= 2 {
		n := int(binary.LittleEndian.Uint16(raw))
		if len(raw) < 2+n+8 {
			break
		}
		out[string(raw[2:2+n])] = int64(binary.LittleEndian.Uint64(raw[2+n:]))
		raw = raw[2+n+8:]
	}
	return out
}

// startSlots writes a fresh slot file at path holding the previous run's
// times, so that a second crash before a target's first scrape still
// knows it, and replaces the old one with it.
func (ls *lastScrapes) startSlots(path string) error {
	var buf []byte
	for t, ms := range ls.prev {
		buf = ls.appendSlot(buf, t, ms)
	}
	// The journals' directory; the buffers create it later too.
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return err
	}
	if err := writeFileAtomic(path, buf, false); err != nil {
		return err
	}
	f, err := os.OpenFile(path, os.O_WRONLY, 0o600)
	if err != nil {
		return fmt.Errorf("open %s: %w", path, err)
	}
	ls.slots = f
	return nil
}

// appendSlot appends target's record to buf and notes where its time is.
func (ls *lastScrapes) appendSlot(buf []byte, target string, ms int64) []byte {
	name := target[:min(len(target), 1<<16-1)]
	buf = binary.LittleEndian.AppendUint16(buf, uint16(len(name)))
	buf = append(buf, name...)
	ls.at[target] = ls.end + int64(2+len(name)) // ls.end: where this record starts
	buf = binary.LittleEndian.AppendUint64(buf, uint64(ms))
	ls.end += int64(2 + len(name) + 8)
	return buf
}

// scraped records that target was scraped at t (ms). The first time in
// this run it returns the target's last scrape in the previous run, if
// one is known.
func (ls *lastScrapes) scraped(target string, t int64) (prev int64, ok bool) {
	if ls == nil {
		return 0, false
	}
	ls.mu.Lock()
	defer ls.mu.Unlock()
	if _, seen := ls.now[target]; !seen {
		prev, ok = ls.prev[target]
		delete(ls.prev, target)
	}
	ls.now[target] = t
	if ls.slots != nil {
		ls.writeSlot(target, t)
	}
	return prev, ok
}

// writeSlot puts target's time in the slot file; mu must be held. A
// failed write closes the file: the disk copy still says something.
func (ls *lastScrapes) writeSlot(target string, t int64) {
	var err error
	if off, ok := ls.at[target]; ok {
		_, err = ls.slots.WriteAt(binary.LittleEndian.AppendUint64(nil, uint64(t)), off)
	} else {
		start := ls.end
		_, err = ls.slots.WriteAt(ls.appendSlot(nil, target, t), start)
		// A record cut short by a crash ends the file for parseSlots;
		// it is the newest target's, whose first scrape it was.
	}
	if err != nil {
		_ = ls.slots.Close()
		ls.slots = nil
	}
}

// save writes the disk file if it is due or final (a clean stop).
// Targets of the previous run not scraped yet in this one keep their
// time.
func (ls *lastScrapes) save(final bool) error {
	if ls == nil {
		return nil
	}
	ls.mu.Lock()
	if ls.disk == "" || !(final || time.Since(ls.diskAt) >= lastScrapesDiskEvery) {
		ls.mu.Unlock()
		return nil
	}
	ls.diskAt = time.Now()
	d := lastScrapesData{Targets: maps.Clone(ls.prev)}
	maps.Copy(d.Targets, ls.now)
	if final && ls.slots != nil {
		_ = ls.slots.Close()
		ls.slots = nil
	}
	ls.mu.Unlock()
	raw, err := json.Marshal(d)
	if err != nil {
		return err
	}
	return writeFileAtomic(ls.disk, raw, true)
}

// writeFileAtomic replaces path with data: a crash leaves the old file or
// the new one, never half of one. sync makes the new one survive a power
// cut too.
func writeFileAtomic(path string, data []byte, sync bool) error {
	tmp := path + ".tmp"
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return err
	}
	_, err = f.Write(data)
	if err == nil && sync {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, path)
	}
	if err != nil {
		_ = os.Remove(tmp)
		return fmt.Errorf("write %s: %w", path, err)
	}
	return nil
}
