package buffer

import (
	"bytes"
	"encoding/json"
	"fmt"
	"time"

	bolt "go.etcd.io/bbolt"
)

// Gap is a lost range: samples of one target, taken or due between From
// and To, that no receiver will get, and why (a Drop constant, or
// GapAgentDown). The agent keeps the newest of them in each endpoint's
// buffer file, so that a restart, and `redwire buffer inspect`, still
// show which hours of which target are missing.
type Gap struct {
	Target string    `json:"target"`
	From   time.Time `json:"from"`
	To     time.Time `json:"to"`
	// Samples lost; 0 for GapAgentDown, whose scrapes were never taken,
	// and for GapThinned, which lost none.
	Samples int64  `json:"samples"`
	Reason  string `json:"reason"`
	// KeptEverySeconds, for GapThinned, is how often the target was
	// scraped in the range instead of every scrape interval.
	KeptEverySeconds float64 `json:"kept_every_seconds,omitempty"`
}

// GapAgentDown is the reason of a gap between the last scrape of a target
// before the agent stopped or crashed and the first after it started.
const GapAgentDown = "agent_down"

// GapThinned is the reason of a range in which degraded mode scraped a
// target less often (degraded.interval) or kept fewer families
// (degraded.metrics) to stretch the disk: no sample taken was lost, but
// fewer were taken. It is listed with the lost ranges, never counted
// with them.
const GapThinned = "thinned"

// keyGaps holds the gaps in the meta bucket, as JSON: a short list that
// changes only when something is lost.
var keyGaps = []byte("gaps")

// Gaps returns the gaps last saved in the file.
func (b *Buffer) Gaps() ([]Gap, error) { return b.store.gaps() }

// SaveGaps replaces the gaps saved in the file. It writes to disk: the
// agent calls it when the list changed, not on every change.
func (b *Buffer) SaveGaps(gs []Gap) error { return b.store.saveGaps(gs) }

func (s *Store) gaps() ([]Gap, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.db == nil {
		return nil, s.errClosed()
	}
	var gs []Gap
	err := protect(func() error {
		return s.db.View(func(tx *bolt.Tx) (err error) {
			gs, err = gapsIn(tx)
			return err
		})
	})
	if err != nil {
		return nil, fmt.Errorf("buffer store %s: %w", s.path, err)
	}
	return gs, nil
}

func (s *Store) saveGaps(gs []Gap) error {
	v, err := json.Marshal(gs)
	if err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.db == nil {
		return s.errClosed()
	}
	return s.update(func(tx *bolt.Tx) error { return tx.Bucket(bucketMeta).Put(keyGaps, v) })
}

// gapsIn reads the gaps of the file tx reads; none if it has none yet.
func gapsIn(tx *bolt.Tx) ([]Gap, error) {
	meta := tx.Bucket(bucketMeta)
	if meta == nil {
		return nil, nil
	}
	v := meta.Get(keyGaps)
	if v == nil {
		return nil, nil
	}
	var gs []Gap
	if err := json.Unmarshal(v, &gs); err != nil {
		return nil, fmt.Errorf("meta gaps: %w", err)
	}
	return gs, nil
}

// copyGaps carries the gaps into a compacted file.
func copyGaps(old, fresh *bolt.Tx) error {
	if v := old.Bucket(bucketMeta).Get(keyGaps); v != nil {
		return fresh.Bucket(bucketMeta).Put(keyGaps, bytes.Clone(v))
	}
	return nil
}
