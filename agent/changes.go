package agent

import (
	"sync"
	"time"
)

// The agent's recent state changes, for the person who looks at it: the
// status page and /api/v1/status list them, so that someone arriving
// after an outage sees when an endpoint went down, came back and
// finished its replay without reading the logs. The sender reports every
// move of its delivery state (delivery.go) here; the list is bounded, so
// a flapping receiver costs a fixed amount of memory.

// maxChanges is how many changes are kept: an outage is three (down,
// replay, normal), so the last sixteen or so, and a list a phone still
// scrolls through.
const maxChanges = 50

// stateChange is one move of an endpoint's delivery state.
type stateChange struct {
	At       time.Time `json:"at"`
	Endpoint string    `json:"endpoint"`
	// From and To are the mode (normal, degraded, replay), with
	// ", paused" while the receiver refuses our credentials or URL.
	From string `json:"from"`
	To   string `json:"to"`
	// Error is the receiver's answer that caused the move, if one did.
	Error string `json:"error,omitempty"`
}

// changeLog holds the last maxChanges state changes. The zero value is
// empty and ready; a nil *changeLog records nothing (the senders that
// tests build alone).
type changeLog struct {
	mu    sync.Mutex
	ring  [maxChanges]stateChange
	next  int // where the next change goes
	count int // how many the ring holds; at most maxChanges
}

// add records ch, forgetting the oldest change if the ring is full.
func (c *changeLog) add(ch stateChange) {
	if c == nil {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.ring[c.next] = ch
	c.next = (c.next + 1) % maxChanges
	c.count = min(c.count+1, maxChanges)
}

// recent is a copy of the changes held, newest first.
func (c *changeLog) recent() []stateChange {
	out := []stateChange{}
	if c == nil {
		return out
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	for i := 1; i <= c.count; i++ {
		out = append(out, c.ring[(c.next-i+maxChanges)%maxChanges])
	}
	return out
}

// shown is how the status page names a delivery state.
func (d delivery) shown() string {
	if d.paused {
		return d.mode.String() + ", paused"
	}
	return d.mode.String()
}

// report publishes the sender's state for the status page and records
// in the change log how it moved from before, if it did. err is the
// answer behind the move, if any. Only the sender's goroutine calls it.
func (s *sender) report(before delivery, err error) {
	after := s.state
	s.published.Store(&after)
	if before.mode == after.mode && before.paused == after.paused {
		return
	}
	ch := stateChange{At: time.Now().UTC(), Endpoint: s.name, From: before.shown(), To: after.shown()}
	if err != nil {
		ch.Error = err.Error()
	}
	s.changes.add(ch)
}

// shownState is the sender's delivery state as last published: the
// zero state (normal) before its goroutine has published any.
func (s *sender) shownState() delivery {
	if p := s.published.Load(); p != nil {
		return *p
	}
	return delivery{}
}
