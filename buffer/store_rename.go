package buffer

import (
	"fmt"
	"os"
	"path/filepath"
)

// Rename moves the open store's file to path (same directory) and
// fsyncs the directory, so a restart finds the backlog under its new
// name. The open file, its lock and everything in it stay as they are.
// It lets an endpoint whose file name comes from its URL keep its
// backlog when the URL changes. An existing file at path is refused.
func (s *Store) Rename(path string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if filepath.Dir(path) != filepath.Dir(s.path) {
		return fmt.Errorf("buffer store %s: rename to %s: not the same directory", s.path, path)
	}
	if _, err := os.Stat(path); err == nil {
		return fmt.Errorf("buffer store %s: rename to %s: a file is already there", s.path, path)
	}
	if err := os.Rename(s.path, path); err != nil {
		return fmt.Errorf("buffer store %s: %w", s.path, err)
	}
	syncDir(filepath.Dir(path))
	s.path = path
	return nil
}
