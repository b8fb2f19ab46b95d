package harness

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

const (
	// startTimeout bounds one start, port-clash retries included: a server
	// that is not ready by then is broken, not slow.
	startTimeout = 30 * time.Second
	// stopTimeout is the SIGTERM grace period before SIGKILL; Prometheus
	// and VictoriaMetrics flush their storage on SIGTERM.
	stopTimeout = 30 * time.Second
	// probeTimeout bounds one readiness probe so a wedged server cannot eat
	// the whole start budget in a single call.
	probeTimeout = 2 * time.Second
	// probeInterval is short because every test pays it at least once per
	// server start.
	probeInterval = 50 * time.Millisecond
	// maxPortAttempts is how many fresh ports a first start tries before
	// concluding that the failure is not a port race.
	maxPortAttempts = 5
	// tailLines is how much of a server's output a failure message shows.
	tailLines = 40
)

// installHint is the fix for a missing binary; the Makefile's test target
// installs exactly these packages.
const installHint = "run `make test` (it installs redis-server, redis-tools, redis-sentinel, prometheus, victoria-metrics, etcd-server) or apt-get install"

// errExited marks a readiness failure caused by the child dying, the only
// case in which its output can explain a port clash.
var errExited = errors.New("exited before becoming ready")

// probeFunc returns nil once the child with pid serves on port. It must
// check identity, not just that something answers: when the child loses a
// bind race, the port's owner is another test's server, and it would answer
// in the child's place until the child's exit is noticed.
type probeFunc func(ctx context.Context, port, pid int) error

// server runs one external binary for one test. It owns the child process,
// the temp dir holding its data and output, and restarts it on the same
// port, so clients configured with its address reconnect to the same server.
type server struct {
	t       testing.TB
	name    string // binary name, for messages
	bin     string // absolute path of the binary
	dir     string // t.TempDir(); outlives restarts, removed after cleanup
	logPath string // stdout and stderr of every run, appended
	args    func(port int) []string
	probe   probeFunc
	cpus    string // if set, the CPUs it runs on, as taskset -c takes them

	// port is written only before the starter returns the server, and
	// restarts keep it, so reading it needs no lock.
	port int

	mu   sync.Mutex // serialises start, stop and cleanup
	proc *child     // the running child; nil while stopped
}

// child is one run of the binary.
type child struct {
	cmd     *exec.Cmd
	cmdline string
	offset  int64         // where this run's output starts in the log file
	done    chan struct{} // closed once the process has been reaped
	err     error         // cmd.Wait's result; read only after done is closed
}

// lookBinary resolves name in PATH or fails the test: the harness never
// skips, so a green run always means the real server was exercised.
func lookBinary(t testing.TB, name, pkg string) string {
	t.Helper()
	bin, err := exec.LookPath(name)
	if err != nil {
		t.Fatalf("%s not found in PATH: %s %s", name, installHint, pkg)
	}
	return bin
}

// newServer prepares, but does not start, a server for name. The caller
// sets args and probe (they usually need dir) and then calls start.
func newServer(t testing.TB, name, pkg string) *server {
	t.Helper()
	return newServerAt(t, name, lookBinary(t, name, pkg))
}

// newServerAt is newServer for the binary at bin, found by the caller
// (cachedBinary finds those that make deps builds).
func newServerAt(t testing.TB, name, bin string) *server {
	t.Helper()
	dir := t.TempDir()
	s := &server{t: t, name: name, bin: bin, dir: dir, logPath: filepath.Join(dir, name+".log")}
	// Registered after TempDir, so it runs before the dir is removed.
	t.Cleanup(s.cleanup)
	return s
}

// hostPort is the server's loopback address.
func (s *server) hostPort() string {
	return net.JoinHostPort("127.0.0.1", strconv.Itoa(s.port))
}

// start runs the first child on port, moving to a fresh port when that one
// turns out to be taken.
func (s *server) start(port int) {
	s.t.Helper()
	s.mu.Lock()
	defer s.mu.Unlock()
	s.port = port
	s.launch(false)
}

// restart runs a new child on the same port and dir; a no-op while a child
// is running. A child that exited on its own (a test sent SHUTDOWN) counts
// as stopped.
func (s *server) restart() {
	s.t.Helper()
	s.mu.Lock()
	defer s.mu.Unlock()
	if c := s.proc; c != nil {
		if !c.exited() {
			return
		}
		s.t.Logf("%s had exited on its own (%v); starting it again", s.name, c.err)
		s.proc = nil
	}
	s.launch(true)
}

// launch starts children until one is ready. A child that exits reporting
// a port clash is retried: on a fresh port for a first start, on the same
// port (after a short pause) for a restart, whose clients expect that port.
// The caller holds s.mu.
func (s *server) launch(samePort bool) {
	s.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), startTimeout)
	defer cancel()
	for attempt := 1; ; attempt++ {
		c, err := s.spawn()
		if err != nil {
			s.t.Fatalf("start %s: %v", s.name, err)
		}
		err = s.waitReady(ctx, c)
		if err == nil {
			s.proc = c
			return
		}
		c.end(syscall.SIGKILL, stopTimeout)
		out := s.output(c.offset)
		if errors.Is(err, errExited) && portClash(out) && ctx.Err() == nil {
			if !samePort && attempt < maxPortAttempts {
				s.port = FreePort(s.t)
				continue
			}
			if samePort && pause(ctx, probeInterval) {
				continue
			}
		}
		s.t.Fatalf("%s did not become ready on %s (attempt %d): %v\ncommand: %s\n--- last lines of %s ---\n%s",
			s.name, s.hostPort(), attempt, err, c.cmdline, s.logPath, tail(out))
	}
}

// spawn starts one child with its output appended to the log file.
func (s *server) spawn() (*child, error) {
	bin, args := s.bin, s.args(s.port)
	if s.cpus != "" {
		// taskset execs the server in place: same pid, affinity set
		// before any of its threads exist.
		bin, args = "taskset", append([]string{"-c", s.cpus, s.bin}, args...)
	}
	f, err := os.OpenFile(s.logPath, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o644)
	if err != nil {
		return nil, fmt.Errorf("open output file: %w", err)
	}
	// The child holds its own copy of the descriptor; ours is only needed
	// until it has started.
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("stat output file: %w", err)
	}
	c := &child{
		cmdline: commandLine(bin, args),
		offset:  fi.Size(),
		done:    make(chan struct{}),
	}
	if _, err := fmt.Fprintf(f, "=== harness: %s\n", c.cmdline); err != nil {
		return nil, fmt.Errorf("write output file: %w", err)
	}
	// An *os.File as Stdout/Stderr is handed to the child directly: no
	// copying goroutines, and Wait does not depend on pipes closing.
	c.cmd = exec.Command(bin, args...)
	c.cmd.Dir = s.dir
	c.cmd.Stdout = f
	c.cmd.Stderr = f
	c.cmd.SysProcAttr = sysProcAttr()
	started := make(chan error, 1)
	go c.run(started)
	if err := <-started; err != nil {
		return nil, fmt.Errorf("exec %s: %w", c.cmdline, err)
	}
	return c, nil
}

// run starts the process and reaps it. It is the owner of the child: it
// returns only once the process is gone, and done tells everyone else.
func (c *child) run(started chan<- error) {
	// The kernel's parent-death signal (see sysProcAttr) follows the thread
	// that forked, not the process. Holding this goroutine on its thread
	// until the child is reaped keeps the runtime from retiring that thread
	// (it does so when a goroutine exits while locked) under a live child.
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	if err := c.cmd.Start(); err != nil {
		started <- err
		return
	}
	started <- nil
	c.err = c.cmd.Wait()
	close(c.done)
}

// exited reports whether the process is gone.
func (c *child) exited() bool {
	select {
	case <-c.done:
		return true
	default:
		return false
	}
}

// end sends sig unless the process is already gone and waits up to grace
// for it to exit, then kills it. It reports whether sig alone was enough.
func (c *child) end(sig syscall.Signal, grace time.Duration) bool {
	if c.exited() {
		return true
	}
	// An error here means the process has just exited; done will say so.
	// A stopped process (Redis.Freeze) takes the signal only once
	// continued: SIGCONT is harmless to a running one.
	_ = c.cmd.Process.Signal(sig)
	_ = c.cmd.Process.Signal(syscall.SIGCONT)
	timer := time.NewTimer(grace)
	defer timer.Stop()
	select {
	case <-c.done:
		return true
	case <-timer.C:
	}
	_ = c.cmd.Process.Kill()
	<-c.done // SIGKILL cannot be ignored; the reaper closes done promptly.
	return false
}

// waitReady probes until the child is ready, it exits, or ctx ends.
func (s *server) waitReady(ctx context.Context, c *child) error {
	tick := time.NewTicker(probeInterval)
	defer tick.Stop()
	for {
		err := s.probeOnce(ctx, c)
		// Checked after the probe too: a probe that succeeded against
		// another server cannot count once our child is known to be dead.
		if c.exited() {
			return fmt.Errorf("%w: %v", errExited, c.err)
		}
		if err == nil {
			return nil
		}
		select {
		case <-c.done:
			return fmt.Errorf("%w: %v", errExited, c.err)
		case <-ctx.Done():
			return fmt.Errorf("not ready after %v: %w", startTimeout, err)
		case <-tick.C:
		}
	}
}

// probeOnce runs one probe, cut short if the child exits meanwhile: when
// the child lost a bind race, whatever owns the port may accept the probe's
// connection and never answer it.
func (s *server) probeOnce(ctx context.Context, c *child) error {
	ctx, cancel := context.WithTimeout(ctx, probeTimeout)
	defer cancel()
	go func() {
		select {
		case <-c.done:
			cancel()
		case <-ctx.Done():
		}
	}()
	return s.probe(ctx, s.port, c.cmd.Process.Pid)
}

// stop takes the running child out of s and ends it with sig (SIGKILL
// after stopTimeout); a no-op while stopped.
func (s *server) stop(sig syscall.Signal) {
	s.t.Helper()
	s.mu.Lock()
	defer s.mu.Unlock()
	c := s.proc
	if c == nil {
		return
	}
	s.proc = nil
	if c.exited() {
		s.t.Logf("%s had already exited on its own: %v\n--- last lines of %s ---\n%s",
			s.name, c.err, s.logPath, tail(s.output(c.offset)))
		return
	}
	if !c.end(sig, stopTimeout) {
		s.t.Errorf("%s ignored %v for %v and was killed\n--- last lines of %s ---\n%s",
			s.name, sig, stopTimeout, s.logPath, tail(s.output(c.offset)))
	}
}

// cleanup kills the child (the temp dir is about to be removed, so there
// is nothing to shut down gracefully for) and shows the output when the
// test failed, since the file goes with the dir.
func (s *server) cleanup() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if c := s.proc; c != nil {
		s.proc = nil
		if c.exited() {
			s.t.Logf("%s exited on its own during the test: %v", s.name, c.err)
		}
		c.end(syscall.SIGKILL, stopTimeout)
	}
	if s.t.Failed() {
		s.t.Logf("%s on %s, last lines of %s:\n%s", s.name, s.hostPort(), s.logPath, tail(s.output(0)))
	}
}

// output returns the log file from offset on.
func (s *server) output(offset int64) string {
	data, err := os.ReadFile(s.logPath)
	if err != nil {
		return fmt.Sprintf("(cannot read output: %v)", err)
	}
	if offset > int64(len(data)) {
		offset = 0
	}
	return string(data[offset:])
}

// commandLine renders a command for messages so that it can be pasted
// into a shell: empty and spaced arguments (--save "") are quoted.
func commandLine(bin string, args []string) string {
	parts := []string{bin}
	for _, a := range args {
		if a == "" || strings.ContainsAny(a, " \t\"'$\\") {
			a = strconv.Quote(a)
		}
		parts = append(parts, a)
	}
	return strings.Join(parts, " ")
}

// tail returns the last tailLines lines of out.
func tail(out string) string {
	lines := strings.Split(strings.TrimRight(out, "\n"), "\n")
	if len(lines) > tailLines {
		lines = append([]string{"..."}, lines[len(lines)-tailLines:]...)
	}
	return strings.Join(lines, "\n")
}

// pause waits d unless ctx ends first; it reports whether d elapsed. It is
// a retry backoff, not synchronisation: the caller re-checks afterwards.
func pause(ctx context.Context, d time.Duration) bool {
	timer := time.NewTimer(d)
	defer timer.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-timer.C:
		return true
	}
}
