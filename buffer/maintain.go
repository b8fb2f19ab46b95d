package buffer

import "path/filepath"

// Maintenance the agent runs on a buffer besides moving samples. Each is
// the store's, which locks itself: none touches memory, so none waits for
// (or holds up) a scrape's Append or the sender's Next.

// Expire drops the stored records that the store's MaxAge no longer
// allows, and says what it dropped (reason too_old). The agent calls it
// periodically, so that old data goes even while nothing is appended.
func (b *Buffer) Expire() (Dropped, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	d, err := b.store.Expire()
	if ds := b.settle([]Dropped{d}); len(ds) > 0 {
		return ds[0], err
	}
	return Dropped{Reason: d.Reason}, err
}

// Compact gives disk space back once a backlog has drained: it replaces
// an empty store's file that grew large by a fresh one. A store that is
// not empty is left alone. See Store.Compact.
func (b *Buffer) Compact() error { return b.store.Compact() }

// Rename moves the buffer's file to path, in the same directory, without
// closing it, so that an endpoint whose file name changes (its URL did,
// and it has no name) keeps its backlog across the change and a restart.
// An existing file at path is refused. See Store.Rename.
func (b *Buffer) Rename(path string) error { return b.store.Rename(path) }

// Quarantined is the number of stored records set aside as unreadable
// since the buffer was opened.
func (b *Buffer) Quarantined() int64 { return b.store.Quarantined() }

// Room is how many more record bytes the store can take before it drops
// (buffer.max_bytes, parked records included) or the disk refuses them
// (buffer.min_free_bytes), whichever comes first; known is false if
// neither bounds it.
func (b *Buffer) Room() (room int64, known bool) { return b.store.room() }

func (s *Store) room() (room int64, known bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.opts.MaxBytes > 0 {
		room, known = s.opts.MaxBytes-s.counts.bytes-s.counts.parked.bytes, true
	}
	if free, ok, _ := s.freeSpace(filepath.Dir(s.path)); ok {
		if disk := free - max(0, s.opts.MinFreeBytes); !known || disk < room {
			room, known = disk, true
		}
	}
	return max(0, room), known
}
