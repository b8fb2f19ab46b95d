package harness

import (
	"io"
	"os"
	"path/filepath"
	"testing"
)

// StartPrometheusWithBlocks starts a Prometheus as opts say whose TSDB
// also holds the given block directories (as promtool or redwire
// backfill write them): the server is started once, so that it lays out
// its data dir, stopped before it has taken a single sample, given copies
// of the blocks, and started again, so that it opens them with its TSDB
// before /-/ready answers. This is what an operator does who copies
// blocks into a stopped server's data dir.
func StartPrometheusWithBlocks(t testing.TB, opts PrometheusOptions, blocks ...string) *Prometheus {
	t.Helper()
	p := StartPrometheusWith(t, opts)
	p.Stop()
	for _, b := range blocks {
		dst := filepath.Join(p.dataDir(), filepath.Base(b))
		if err := copyTree(b, dst); err != nil {
			t.Fatalf("copy block %s into %s: %v", b, p.dataDir(), err)
		}
	}
	p.Start()
	return p
}

// copyTree copies the directory src to dst, which must not exist: files
// and directories only, as a TSDB block holds.
func copyTree(src, dst string) error {
	return filepath.WalkDir(src, func(path string, e os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(src, path)
		if err != nil {
			return err
		}
		to := filepath.Join(dst, rel)
		if e.IsDir() {
			return os.Mkdir(to, 0o755)
		}
		in, err := os.Open(path)
		if err != nil {
			return err
		}
		defer in.Close()
		out, err := os.OpenFile(to, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
		if err != nil {
			return err
		}
		if _, err := io.Copy(out, in); err != nil {
			out.Close()
			return err
		}
		return out.Close()
	})
}
