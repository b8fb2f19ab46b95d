package buffer

import (
	"errors"
	"fmt"
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

// The buffer modes.
const (
	// ModeSpill keeps samples in memory and writes them to disk only when
	// the receiver is down or slow. A crash in normal operation loses at
	// most the batches taken in the last batch_send_deadline.
	ModeSpill = "spill"
	// ModeAlways commits every batch to disk before it is sent.
	ModeAlways = "always"
)

// Config is the `buffer:` block of the agent's configuration: where the
// endpoints' stores live and what they may keep.
type Config struct {
	// Path is the directory that holds the buffer's files.
	Path string `yaml:"path,omitempty"`
	// MaxBytes caps the disk buffer of each endpoint; over it the oldest
	// data is dropped and counted (reason="buffer_full").
	MaxBytes units.Base2Bytes `yaml:"max_bytes,omitempty"`
	// MaxAge drops buffered data older than this (reason="too_old").
	MaxAge model.Duration `yaml:"max_age,omitempty"`
	// Mode is "spill" (default) or "always".
	Mode string `yaml:"mode,omitempty"`
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
	case c.Mode != ModeSpill && c.Mode != ModeAlways:
		return fmt.Errorf("mode: %q is not %q or %q", c.Mode, ModeSpill, ModeAlways)
	}
	return nil
}
