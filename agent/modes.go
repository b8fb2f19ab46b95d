package agent

import "sync"

// modes is the agent-wide view of which endpoints are down. Scrape loops
// read it to slow down (degraded sampling) while any endpoint is down, so a
// long outage costs a quarter of the disk; endpoints write it.
type modes struct {
	mu      sync.Mutex
	down    map[string]bool
	changed chan struct{} // closed and replaced on every change
}

func newModes() *modes {
	return &modes{down: make(map[string]bool), changed: make(chan struct{})}
}

// set records whether endpoint is down; it reports whether that changed.
func (m *modes) set(endpoint string, down bool) bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.down[endpoint] == down {
		return false
	}
	if down {
		m.down[endpoint] = true
	} else {
		delete(m.down, endpoint)
	}
	close(m.changed)
	m.changed = make(chan struct{})
	return true
}

// degraded reports whether any endpoint is down, and a channel closed at
// the next change.
func (m *modes) degraded() (bool, <-chan struct{}) {
	m.mu.Lock()
	defer m.mu.Unlock()
	return len(m.down) > 0, m.changed
}

// isDown reports whether the named endpoint is down.
func (m *modes) isDown(endpoint string) bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.down[endpoint]
}
