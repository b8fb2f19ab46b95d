package discovery

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"time"

	"github.com/fsnotify/fsnotify"
	yaml "go.yaml.in/yaml/v2"

	"github.com/redwire/redwire/sources/redis"
)

// fileDebounce lets a writer finish: editors and config management write
// a file in several steps (truncate, write, rename), and a half-written
// file must not replace the good one.
const fileDebounce = 500 * time.Millisecond

// File reads targets from a YAML file (a list of entries as under
// `targets:`) and reads it again when it changes: on an fsnotify event for
// the file, and every refresh interval as a safety net for filesystems
// without inotify (NFS, some container mounts).
//
// A file that cannot be read or does not validate is refused whole and
// logged with the file name and the entry at fault; the targets of the
// last good version keep being scraped, so a typo never stops monitoring.
type File struct {
	path     string
	interval time.Duration
	log      *slog.Logger
}

// NewFile watches path. interval is the re-read safety net.
func NewFile(path string, interval time.Duration, log *slog.Logger) *File {
	return &File{path: path, interval: interval, log: log.With("targets_file", path)}
}

// Source implements Discoverer.
func (f *File) Source() string { return "file:" + f.path }

// ReadTargetsFile reads and validates a targets file. Relative paths in it
// (password_file, TLS files) are relative to the file's directory.
func ReadTargetsFile(path string) ([]redis.TargetConfig, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var targets []redis.TargetConfig
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.SetStrict(true)
	if err := dec.Decode(&targets); err != nil && !errors.Is(err, io.EOF) {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	seen := map[string]int{}
	for i := range targets {
		t := &targets[i]
		t.SetDirectory(filepath.Dir(path))
		if err := t.Validate(); err != nil {
			return nil, fmt.Errorf("%s: [%d]: %w", path, i, err)
		}
		if j, dup := seen[t.Instance()]; dup {
			return nil, fmt.Errorf("%s: [%d]: instance %q is also [%d]: give one a distinct name", path, i, t.Instance(), j)
		}
		seen[t.Instance()] = i
	}
	return targets, nil
}

// Run implements Discoverer.
func (f *File) Run(ctx context.Context, up chan<- Group) {
	var (
		last    []byte // content of the last version sent
		sent    bool
		lastErr string
	)
	read := func() {
		data, err := os.ReadFile(f.path)
		if err == nil && sent && bytes.Equal(data, last) {
			return
		}
		targets, err := ReadTargetsFile(f.path)
		if err != nil {
			if err.Error() != lastErr {
				f.log.Error("targets file refused; still scraping the targets of its last good version", "err", err)
				lastErr = err.Error()
			}
			return
		}
		if lastErr != "" {
			f.log.Info("targets file is valid again")
			lastErr = ""
		}
		last, sent = data, true
		f.log.Info("targets file read", "targets", len(targets))
		select {
		case up <- Group{Source: f.Source(), Targets: targets}:
		case <-ctx.Done():
		}
	}

	// Watch the directory, not the file: a rename over the file (how
	// careful writers replace it) ends a watch on the file itself.
	var events <-chan fsnotify.Event
	if w, err := fsnotify.NewWatcher(); err != nil {
		f.log.Warn("cannot watch targets file; re-reading it every interval only", "interval", f.interval, "err", err)
	} else {
		defer w.Close()
		if err := w.Add(filepath.Dir(f.path)); err != nil {
			f.log.Warn("cannot watch targets file; re-reading it every interval only", "interval", f.interval, "err", err)
		} else {
			events = w.Events
		}
	}

	read()
	tick := time.NewTicker(f.interval)
	defer tick.Stop()
	var debounce <-chan time.Time
	for {
		select {
		case <-ctx.Done():
			return
		case ev := <-events:
			if filepath.Clean(ev.Name) == filepath.Clean(f.path) {
				debounce = time.After(fileDebounce)
			}
		case <-debounce:
			debounce = nil
			read()
		case <-tick.C:
			read()
		}
	}
}
