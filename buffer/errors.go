package buffer

import "errors"

// The errors callers tell apart, with errors.Is.
var (
	// ErrClosed is returned by Next once the buffer is drained or closed
	// and nothing is left.
	ErrClosed = errors.New("buffer closed")
	// ErrLocked is returned by OpenStore when another process holds the
	// buffer file: most likely a second redwire on the same buffer
	// directory.
	ErrLocked = errors.New("buffer file is locked by another process")
	// ErrNoSpace is returned when the filesystem is full or below
	// StoreOptions.MinFreeBytes. Nothing was written; the store is
	// unchanged.
	ErrNoSpace = errors.New("no space left for the buffer")
)
