package buffer

// Reading a buffer file without changing it, even while an agent runs on
// it: what ReadStore (read.go) stands on.

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/fnv"
	"io"
	"os"
	"time"

	bolt "go.etcd.io/bbolt"
	bolterrors "go.etcd.io/bbolt/errors"
)

// defaultReadLockTimeout is how long a reader waits for the shared lock
// before it falls back to a snapshot.
const defaultReadLockTimeout = 200 * time.Millisecond

// snapshotAttempts bounds the copies tried while the agent keeps writing.
const snapshotAttempts = 5

// viewStore runs fn in a read transaction on the store file at path: under
// bbolt's shared lock if it can be had within opts.LockTimeout, else on a
// consistent copy (a running agent holds an exclusive lock for as long as
// it runs), and then snapshot is true. The file is checked as OpenStore
// checks it before fn walks it, and is never modified. Buckets may be
// missing in fn's tx.
func viewStore(path string, opts ReadOptions, fn func(*bolt.Tx) error) (snapshot bool, err error) {
	if opts.LockTimeout <= 0 {
		opts.LockTimeout = defaultReadLockTimeout
	}
	if _, err := os.Stat(path); err != nil {
		return false, err
	}
	err = viewFile(path, opts.LockTimeout, fn)
	if !errors.Is(err, bolterrors.ErrTimeout) {
		return false, err
	}
	snap, err := snapshotFile(path, opts.TempDir)
	if err != nil {
		return true, err
	}
	defer os.Remove(snap)
	return true, viewFile(snap, opts.LockTimeout, fn)
}

// viewFile opens path read-only (shared lock), validates it and runs fn.
func viewFile(path string, timeout time.Duration, fn func(*bolt.Tx) error) error {
	var (
		db   *bolt.DB
		file *os.File
	)
	err := protect(func() error {
		var err error
		db, err = bolt.Open(path, 0o600, &bolt.Options{
			ReadOnly: true, Timeout: timeout,
			NoFreelistSync: true, FreelistType: bolt.FreelistMapType,
			OpenFile: func(name string, flag int, perm os.FileMode) (*os.File, error) {
				f, err := os.OpenFile(name, flag, perm)
				file = f
				return f, err
			},
		})
		return err
	})
	if err != nil {
		var pe *panicError
		if errors.As(err, &pe) && file != nil {
			_ = file.Close()
		}
		return err
	}
	defer func() { _ = protect(db.Close) }()
	raw, err := os.Open(path)
	if err != nil {
		return err
	}
	defer raw.Close()
	return protect(func() error {
		return db.View(func(tx *bolt.Tx) error {
			// bbolt trusts every page number and length it reads; prove
			// them sound first, as OpenStore does.
			if err := checkBoltFile(raw, fileSize(path), db.Info().PageSize, uint64(tx.ID())); err != nil {
				return fmt.Errorf("not a readable buffer file: %w", err)
			}
			return fn(tx)
		})
	})
}

// snapshotFile copies the store file at path, which a running agent may be
// writing, into a new file in dir and returns its name.
//
// Why the copy is consistent: bbolt never overwrites a page reachable from
// the current meta page (transaction T). Transaction T+1 writes only pages
// free at T; the pages T+1 frees become reusable by T+2, whose writes
// begin only after T+1's meta page is written. The copy reads the meta
// pages first (offset 0) and the tree after; if, once the copy is done,
// the file's meta still names the transaction the copy's meta names, no
// T+1 meta was written before the last read, so no page of T's tree was
// overwritten while it was copied. Otherwise the copy is retried.
func snapshotFile(path, dir string) (string, error) {
	if dir == "" {
		dir = os.TempDir()
	}
	for range snapshotAttempts {
		snap, same, err := copyOnce(path, dir)
		if err != nil || same {
			return snap, err
		}
		_ = os.Remove(snap)
	}
	return "", fmt.Errorf("the running agent committed during each of %d copies of %s; retry, or stop the agent", snapshotAttempts, path)
}

func copyOnce(path, dir string) (snap string, same bool, err error) {
	src, err := os.Open(path)
	if err != nil {
		return "", false, err
	}
	defer src.Close()
	dst, err := os.CreateTemp(dir, "redwire-snapshot-*"+storeFileExt)
	if err != nil {
		return "", false, fmt.Errorf("snapshot of a running agent's buffer: %w", err)
	}
	snap = dst.Name()
	_, err = io.Copy(dst, src)
	if cerr := dst.Close(); err == nil {
		err = cerr
	}
	var before, after uint64
	if err == nil {
		before, err = metaTxid(snap)
	}
	if err == nil {
		after, err = metaTxid(path)
	}
	if err != nil {
		_ = os.Remove(snap)
		return "", false, fmt.Errorf("snapshot of %s into %s: %w", path, dir, err)
	}
	return snap, before == after, nil
}

// metaTxid returns the transaction id of the meta page bbolt would pick:
// the valid one with the higher id.
func metaTxid(path string) (uint64, error) {
	f, err := os.Open(path)
	if err != nil {
		return 0, err
	}
	defer f.Close()
	ne := binary.NativeEndian
	read := func(off int64) (txid uint64, pageSize int64, ok bool) {
		buf := make([]byte, boltPageHeader+64)
		if _, err := f.ReadAt(buf, off); err != nil {
			return 0, 0, false
		}
		m := buf[boltPageHeader:]
		h := fnv.New64a()
		h.Write(m[:56])
		if ne.Uint32(m) != boltMagic || ne.Uint32(m[4:]) != boltVersion || h.Sum64() != ne.Uint64(m[56:]) {
			return 0, 0, false
		}
		return ne.Uint64(m[48:]), int64(ne.Uint32(m[8:])), true
	}
	tx0, ps, ok0 := read(0)
	sizes := []int64{ps}
	if !ok0 {
		sizes = []int64{int64(os.Getpagesize()), 4096, 16384, 65536}
	}
	for _, ps := range sizes {
		if tx1, _, ok1 := read(ps); ok1 {
			if !ok0 || tx1 > tx0 {
				return tx1, nil
			}
			return tx0, nil
		}
	}
	if ok0 {
		return tx0, nil
	}
	return 0, errors.New("no valid bbolt meta page")
}
