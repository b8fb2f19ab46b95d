package main

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/redwire/redwire/internal/harness"
)

// containerUID is the distroless "nonroot" user the Dockerfile runs as.
const containerUID = 65532

// TestContainerConditions runs the static binary as the Dockerfile does,
// without Docker (none here): as uid 65532, with a read-only root
// filesystem and one writable directory, the /data volume. It must scrape
// a real Redis, spill every batch to the buffer, deliver to a real
// Prometheus and stop cleanly, writing nowhere else.
func TestContainerConditions(t *testing.T) {
	// Without root or the tools the container promise is unverified, so
	// the test fails rather than skips: make test runs as root (as CI
	// does) and make deps installs the tools.
	if os.Geteuid() != 0 {
		t.Fatal("needs root: drops to uid 65532 and remounts / read-only in a private mount namespace")
	}
	for _, tool := range []string{"unshare", "setpriv", "mount"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Fatalf("%s not installed (Debian packages util-linux and mount; make deps installs them)", tool)
		}
	}
	r := harness.StartRedis(t)
	prom := harness.StartPrometheus(t)

	// A root the container user can enter, outside t.TempDir (0700, root's).
	root, err := os.MkdirTemp("", "redwire-container-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(root) })
	if err := os.Chmod(root, 0o755); err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(root, "redwire")
	build := exec.Command("go", "build", "-trimpath", "-o", bin, ".")
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	data := filepath.Join(root, "data")
	if err := os.Mkdir(data, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.Chown(data, containerUID, containerUID); err != nil {
		t.Fatal(err)
	}

	listen := fmt.Sprintf("127.0.0.1:%d", harness.FreePort(t))
	// The volume stays writable as its own mount; then / turns read-only.
	script := fmt.Sprintf(`set -e
mount --bind %[1]s %[1]s
mount -o remount,bind,ro /
if touch /redwire-write-probe 2>/dev/null; then echo "root is writable" >&2; exit 97; fi
cd %[1]s
exec setpriv --reuid=%[2]d --regid=%[2]d --clear-groups --inh-caps=-all --bounding-set=-all \
  env -i HOME=/nonexistent %[3]s --buffer.path=%[1]s --buffer.mode=always --web.listen-address=%[4]s \
  --redis.addr=%[5]s --remote-write.url=%[6]s --scrape.interval=1s --log.level=debug`,
		data, containerUID, bin, listen, r.URL(), prom.WriteURL())
	cmd := exec.Command("unshare", "--mount", "--propagation", "private", "sh", "-c", script)
	var log harness.LogBuffer
	cmd.Stdout, cmd.Stderr = &log, &log
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	stopped := false
	defer func() {
		if !stopped {
			cmd.Process.Kill()
			<-exited
		}
		if t.Failed() {
			t.Logf("redwire output:\n%s", log.String())
		}
	}()

	harness.WaitFor(t, time.Minute, "samples from the confined agent in Prometheus", func() (bool, error) {
		select {
		case err := <-exited:
			stopped = true
			t.Fatalf("redwire exited: %v", err)
		default:
		}
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		v, err := prom.Query(ctx, fmt.Sprintf(`count_over_time(redis_up{instance=%q}[5m]) >= 3`, r.Addr()))
		return err == nil && len(v) == 1, err
	})
	cmd.Process.Signal(syscall.SIGTERM)
	stopped = true
	if err := <-exited; err != nil {
		t.Errorf("redwire did not stop cleanly: %v", err)
	}

	// The buffer file is the container user's, private, and the only
	// thing written.
	entries, err := os.ReadDir(data)
	if err != nil {
		t.Fatal(err)
	}
	if len(entries) == 0 {
		t.Fatal("nothing in the data volume: buffer.mode always did not write the buffer")
	}
	for _, e := range entries {
		fi, err := e.Info()
		if err != nil {
			t.Fatal(err)
		}
		st := fi.Sys().(*syscall.Stat_t)
		if st.Uid != containerUID || fi.Mode().Perm()&0o077 != 0 {
			t.Errorf("%s: uid %d, mode %v; want uid %d and no access for others", e.Name(), st.Uid, fi.Mode(), containerUID)
		}
	}
	for _, bad := range []string{"read-only file system", "permission denied", "level=ERROR"} {
		if strings.Contains(strings.ToLower(log.String()), strings.ToLower(bad)) {
			t.Errorf("redwire log mentions %q", bad)
		}
	}
}
