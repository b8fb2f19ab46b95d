package buffer

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/alecthomas/units"
	"github.com/prometheus/common/model"
)

// Defaults of the buffer block; documented in configs/redwire.example.yml.
const (
	DefaultPath     = "./data"
	DefaultMaxBytes = units.Base2Bytes(1 << 30)
	DefaultMaxAge   = model.Duration(7 * 24 * time.Hour)
)

// The buffer modes, and the crash journal.
const (
	// ModeSpill keeps samples in memory and writes them to disk only when
	// the receiver is down or slow. With the crash journal (the default),
	// a crash of the process loses nothing; a power cut at most what
	// memory held: about batch_send_deadline of scrapes while the
	// receiver answers.
	ModeSpill = "spill"
	// ModeAlways commits every batch to disk before it is sent.
	ModeAlways = "always"

	// CrashJournalAuto and CrashJournalOff are the values of
	// buffer.crash_journal besides a directory.
	CrashJournalAuto = "auto"
	CrashJournalOff  = "off"
)

// Config is the `buffer:` block of the agent's configuration: where the
// endpoints' stores live and what they may keep.
type Config struct {
	// Path is the directory that holds the buffer's files.
	Path string `yaml:"path,omitempty"`
	// MaxBytes caps the disk buffer of each endpoint; over it old data is
	// thinned by age down to ThinFloor, and what does not fit even then
	// is dropped, oldest first, and counted (reason="buffer_full").
	MaxBytes units.Base2Bytes `yaml:"max_bytes,omitempty"`
	// MaxAge drops buffered data older than this (reason="too_old").
	MaxAge model.Duration `yaml:"max_age,omitempty"`
	// MinFreeBytes is the free space a write to the buffer must leave on
	// its filesystem, for the rest of the host (logs, Redis itself): a
	// write that would leave less is refused as a full disk. Unset means
	// DefaultMinFreeBytes; 0 keeps nothing back.
	MinFreeBytes *units.Base2Bytes `yaml:"min_free_bytes,omitempty"`
	// ThinFloor is the coarsest resolution that thinning (thin.go) keeps
	// of old data before max_bytes drops any: one scrape per target
	// every ThinFloor. Unset means DefaultThinFloor; 0 turns thinning
	// off (max_bytes then drops the oldest data at once).
	ThinFloor *model.Duration `yaml:"thin_floor,omitempty"`
	// Mode is "spill" (default) or "always".
	Mode string `yaml:"mode,omitempty"`
	// CrashJournal is where spill mode keeps a journal of what memory
	// holds, so that a crash of the process loses none of it: a directory
	// on tmpfs (page cache outlives the process and nothing reaches
	// flash), "auto" (the default: the first of $RUNTIME_DIRECTORY,
	// $XDG_RUNTIME_DIR/redwire, /dev/shm/redwire that can be used) or
	// "off".
	CrashJournal string `yaml:"crash_journal,omitempty"`
}

// DefaultMinFreeBytes is buffer.min_free_bytes when it is not set.
const DefaultMinFreeBytes = defaultMinFreeBytes

// StoreMinFree is MinFreeBytes as StoreOptions takes it: 0 for the
// default, negative for none.
func (c *Config) StoreMinFree() int64 {
	switch {
	case c.MinFreeBytes == nil:
		return 0
	case *c.MinFreeBytes == 0:
		return -1
	}
	return int64(*c.MinFreeBytes)
}

// DefaultThinFloor is buffer.thin_floor when it is not set.
const DefaultThinFloor = model.Duration(defaultThinFloor)

// StoreThinFloor is ThinFloor as StoreOptions takes it: 0 for the
// default, negative for no thinning.
func (c *Config) StoreThinFloor() time.Duration {
	switch {
	case c.ThinFloor == nil:
		return 0
	case *c.ThinFloor == 0:
		return -1
	}
	return time.Duration(*c.ThinFloor)
}

// CrashJournalDir is the directory of the crash journals, "" if there is
// none: journal off, mode always, or no usable tmpfs for "auto" (err
// says why, naming the setting).
func (c *Config) CrashJournalDir() (string, error) {
	switch {
	case c.Mode == ModeAlways || c.CrashJournal == CrashJournalOff:
		return "", nil
	case c.CrashJournal != CrashJournalAuto:
		return c.CrashJournal, nil
	}
	var candidates []string
	if d := os.Getenv("RUNTIME_DIRECTORY"); d != "" { // systemd's RuntimeDirectory=
		candidates = append(candidates, d)
	}
	if d := os.Getenv("XDG_RUNTIME_DIR"); d != "" {
		candidates = append(candidates, filepath.Join(d, "redwire"))
	}
	candidates = append(candidates, "/dev/shm/redwire")
	for _, d := range candidates {
		if err := os.MkdirAll(d, 0o700); err == nil {
			return d, nil
		}
	}
	return "", fmt.Errorf("buffer.crash_journal: no usable tmpfs directory among %v: set it to one, or to %q", candidates, CrashJournalOff)
}

// SetDefaults fills unset fields.
func (c *Config) SetDefaults() {
	if c.Path == "" {
		c.Path = DefaultPath
	}
	if c.MaxBytes == 0 {
		c.MaxBytes = DefaultMaxBytes
	}
	if c.MaxAge == 0 {
		c.MaxAge = DefaultMaxAge
	}
	if c.Mode == "" {
		c.Mode = ModeSpill
	}
	if c.CrashJournal == "" {
		c.CrashJournal = CrashJournalAuto
	}
}

// Validate names the field that is wrong.
func (c *Config) Validate() error {
	switch {
	case c.Path == "":
		return errors.New("path: must not be empty")
	case c.MaxBytes < 0:
		return errors.New("max_bytes: must not be negative")
	case c.MaxAge < 0:
		return errors.New("max_age: must not be negative")
	case c.ThinFloor != nil && *c.ThinFloor < 0:
		return errors.New("thin_floor: must not be negative")
	case c.Mode != ModeSpill && c.Mode != ModeAlways:
		return fmt.Errorf("mode: %q is not %q or %q", c.Mode, ModeSpill, ModeAlways)
	case c.CrashJournal != CrashJournalAuto && c.CrashJournal != CrashJournalOff && !filepath.IsAbs(c.CrashJournal):
		return fmt.Errorf("crash_journal: %q is not %q, %q or an absolute directory", c.CrashJournal, CrashJournalAuto, CrashJournalOff)
	}
	return nil
}
