package buffer

import (
	"fmt"
	"os"
	"syscall"
)

// PrepareDir creates the buffer directory (0700) if it is missing and
// checks one that exists. Buffered samples carry everything Redis said
// about itself (host names, versions, key counts), so the directory must
// not be readable by others; and a directory owned by another user is
// most likely another agent's or a mistake in buffer.path, so the agent
// refuses to start there rather than mix or steal backlogs. It returns a
// warning (empty if none) for a directory that others may read.
func PrepareDir(dir string) (warning string, err error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return "", err
	}
	fi, err := os.Stat(dir)
	if err != nil {
		return "", err
	}
	if !fi.IsDir() {
		return "", fmt.Errorf("%s is not a directory", dir)
	}
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		if uid := os.Getuid(); int(st.Uid) != uid {
			return "", fmt.Errorf("%s is owned by uid %d, not by this agent's uid %d: refusing to use another user's buffer", dir, st.Uid, uid)
		}
	}
	if fi.Mode().Perm()&0o077 != 0 {
		return fmt.Sprintf("%s has mode %s: others can read buffered samples; chmod 700 it", dir, fi.Mode().Perm()), nil
	}
	return "", nil
}
