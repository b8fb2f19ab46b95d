package agent

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"maps"
	"os"
	"sync"
	"time"
)

// lastScrapesFile names, in buffer.path, the file that says when each target was last
// scraped. The copy in the crash journal's directory (tmpfs) is written
// every interval, so after a crash of the process the next run knows to
// within an interval when each target stopped being scraped. The copy in
// buffer.path is written every lastScrapesDiskEvery and at a clean stop:
// it is what a host that lost its tmpfs (a reboot) has, and a power cut
// therefore overstates an agent_down range by at most that much.
const (
	lastScrapesFile      = "last-scrapes.json"
	lastScrapesDiskEvery = 10 * time.Minute
)

// lastScrapes tracks the last scrape of every target, for agent_down
// ranges: the previous run's (read at start) and this run's.
type lastScrapes struct {
	mu   sync.Mutex
	prev map[string]int64 // ms; a target leaves it at its first scrape
	now  map[string]int64 // ms
	// tmp and disk are the file's two copies: tmp written every
	// interval, disk now and then; "" for none.
	tmp, disk string
	diskAt    time.Time // last written to disk
}

// lastScrapesData is the file's content.
type lastScrapesData struct {
	Targets map[string]int64 `json:"targets"` // last scrape, Unix ms
}

// openLastScrapes reads what earlier runs left in the files tmp and disk, the
// newest time of each target winning. A file that does not read is
// reported and ignored: it costs an agent_down range, never data.
func openLastScrapes(tmp, disk string) (*lastScrapes, error) {
	ls := &lastScrapes{prev: map[string]int64{}, now: map[string]int64{}, tmp: tmp, disk: disk, diskAt: time.Now()}
	var errs []error
	for _, path := range []string{tmp, disk} {
		if path == "" {
			continue
		}
		raw, err := os.ReadFile(path)
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		var d lastScrapesData
		if err == nil {
			err = json.Unmarshal(raw, &d)
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", path, err))
			continue
		}
		for t, ms := range d.Targets {
			ls.prev[t] = max(ls.prev[t], ms)
		}
	}
	return ls, errors.Join(errs...)
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
	return prev, ok
}

// save writes the file to tmp, and to disk if it is due or final (a clean
// stop). Targets of the previous run not scraped yet in this one keep
// their time, so a second crash before their first scrape still knows it.
func (ls *lastScrapes) save(final bool) error {
	if ls == nil {
		return nil
	}
	ls.mu.Lock()
	d := lastScrapesData{Targets: maps.Clone(ls.prev)}
	maps.Copy(d.Targets, ls.now)
	toDisk := ls.disk != "" && (final || time.Since(ls.diskAt) >= lastScrapesDiskEvery)
	if toDisk {
		ls.diskAt = time.Now()
	}
	ls.mu.Unlock()
	raw, err := json.Marshal(d)
	if err != nil {
		return err
	}
	var errs []error
	if ls.tmp != "" {
		errs = append(errs, writeFileAtomic(ls.tmp, raw, false))
	}
	if toDisk {
		errs = append(errs, writeFileAtomic(ls.disk, raw, true))
	}
	return errors.Join(errs...)
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
