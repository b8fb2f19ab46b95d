//go:build linux

package agent

// The two stacks BenchmarkPeerSteadyState compares: starting their
// processes, reading their CPU and memory, and asking the receiver what
// each delivered.

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/redwire/redwire/internal/harness"
)

// benchStack is one side of the comparison: the processes whose cost is
// measured, and the value of the stack label on everything they deliver.
type benchStack struct {
	name string
	// procs are the stack's processes, always in the same order.
	procs func() []benchProc
	// progress are selectors, with %q for the stack label's value, of
	// series every target (or the agent itself) sends with every scrape:
	// once the newest sample of each is past a time, so is everything
	// sent before it.
	progress []string
	// spilled is redwire's own metric of batches on disk; "" for the peer.
	spilled string
	web     string // redwire's listen address; "" for the peer
}

// fetchProfile saves redwire's /debug/pprof/<what> to path.
func (st *benchStack) fetchProfile(what, path string) error {
	resp, err := http.Get("http://" + st.web + "/debug/pprof/" + what)
	if err != nil {
		return fmt.Errorf("profile %s: %w", what, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("profile %s: %s", what, resp.Status)
	}
	data, err := io.ReadAll(resp.Body)
	if err != nil {
		return fmt.Errorf("profile %s: %w", what, err)
	}
	return os.WriteFile(path, data, 0o644)
}

// benchProc is one process of a stack.
type benchProc struct {
	name string
	pid  int // 0 once it has exited
}

// usage reads what each of the stack's processes has used so far, in
// procs order; a process that has exited fails the benchmark.
func (st *benchStack) usage(tb testing.TB) []harness.ProcUsage {
	tb.Helper()
	var us []harness.ProcUsage
	for _, p := range st.procs() {
		u, err := harness.ReadProcUsage(p.pid)
		if err != nil {
			tb.Fatalf("%s: %s: %v", st.name, p.name, err)
		}
		us = append(us, u)
	}
	return us
}

// upTargets counts the stack's targets whose newest redis_up at t (zero:
// now) is 1.
func (st *benchStack) upTargets(tb testing.TB, prom *harness.Prometheus, t time.Time) int {
	tb.Helper()
	v, err := prom.Query(context.Background(), fmt.Sprintf(`count(redis_up{stack=%q} %s == 1)`, st.name, at(t)))
	if err != nil {
		tb.Fatal(err)
	}
	if len(v) == 0 {
		return 0
	}
	return int(v[0].Value)
}

// waitDeliveredPast waits until the receiver holds the stack's samples
// taken a few intervals after t, so that every sample taken up to t has
// arrived: each stack sends in order per queue, and vmagent's few queues
// are at most a flush apart.
func (st *benchStack) waitDeliveredPast(tb testing.TB, prom *harness.Prometheus, t time.Time) {
	tb.Helper()
	past := t.Add(3 * peerInterval)
	harness.WaitFor(tb, 60*time.Second, st.name+" delivering past the window", func() (bool, error) {
		for _, p := range st.progress {
			sel := fmt.Sprintf(p, st.name)
			v, err := prom.Query(context.Background(), fmt.Sprintf(`min(timestamp(%s))`, sel))
			if err != nil {
				return false, err
			}
			if len(v) == 0 {
				return false, fmt.Errorf("no %s", sel)
			}
			if oldest := time.UnixMilli(int64(v[0].Value * 1e3)); oldest.Before(past) {
				return false, fmt.Errorf("newest %s of some series at %v, want %v", sel, oldest.Format(time.TimeOnly), past.Format(time.TimeOnly))
			}
		}
		return true, nil
	})
}

// spilledBatches is the most batches redwire held on disk in (t0, t1].
func (st *benchStack) spilledBatches(tb testing.TB, prom *harness.Prometheus, t0, t1 time.Time) float64 {
	tb.Helper()
	v, err := prom.Query(context.Background(), fmt.Sprintf(`max(max_over_time(%s{stack=%q}%s))`, st.spilled, st.name, window(t0, t1)))
	if err != nil {
		tb.Fatal(err)
	}
	if len(v) == 0 {
		tb.Fatalf("%s: no %s in the window", st.name, st.spilled)
	}
	return v[0].Value
}

// at is the PromQL @ modifier for t; "" for the zero time (now).
func at(t time.Time) string {
	if t.IsZero() {
		return ""
	}
	return fmt.Sprintf("@ %d.%03d", t.Unix(), t.Nanosecond()/1e6)
}

// window is the range selector covering exactly (t0, t1]: Prometheus 2.x
// ranges include both ends, so the range starts a millisecond after t0.
func window(t0, t1 time.Time) string {
	return fmt.Sprintf("[%dms] %s", t1.Sub(t0).Milliseconds()-1, at(t1))
}

// familySamples counts the samples of the stack taken in (t0, t1], by
// family. One count per family: count_over_time drops the metric name,
// and series of different families with the same labels would collide
// ("vector cannot contain metrics with the same labelset").
// last_over_time keeps the name, so it lists the families.
func familySamples(tb testing.TB, prom *harness.Prometheus, stack string, t0, t1 time.Time) map[string]float64 {
	tb.Helper()
	ctx := context.Background()
	names, err := prom.Query(ctx, fmt.Sprintf(`group by (__name__) (last_over_time({stack=%q}%s))`, stack, window(t0, t1)))
	if err != nil {
		tb.Fatal(err)
	}
	counts := make(map[string]float64, len(names))
	for _, n := range names {
		family := n.Labels["__name__"]
		if family == "" {
			tb.Fatalf("%s: a family without a name in %v", stack, n.Labels)
		}
		v, err := prom.Query(ctx, fmt.Sprintf(`sum(count_over_time({__name__=%q,stack=%q}%s))`, family, stack, window(t0, t1)))
		if err != nil {
			tb.Fatal(err)
		}
		if len(v) != 1 {
			tb.Fatalf("%s: counting %s: %d results", stack, family, len(v))
		}
		counts[family] = v[0].Value
	}
	return counts
}

// seriesCount is how many series of the stack have a sample in (t0, t1].
func seriesCount(tb testing.TB, prom *harness.Prometheus, stack string, t0, t1 time.Time) int {
	tb.Helper()
	v, err := prom.Query(context.Background(), fmt.Sprintf(`count(last_over_time({stack=%q}%s))`, stack, window(t0, t1)))
	if err != nil {
		tb.Fatal(err)
	}
	if len(v) != 1 {
		tb.Fatalf("%s: counting series: %d results", stack, len(v))
	}
	return int(v[0].Value)
}

// startRedwireBinary runs the release binary with every server as a target,
// at shipped defaults but for the interval and the stack label.
func startRedwireBinary(tb testing.TB, bin, writeURL string, rs []*harness.Redis, pprof bool) *benchStack {
	tb.Helper()
	dir := tb.TempDir()
	web := fmt.Sprintf("127.0.0.1:%d", harness.FreePort(tb))
	args := []string{
		"--remote-write.url=" + writeURL,
		"--scrape.interval=" + peerInterval.String(),
		"--global.external_labels=stack=redwire",
		"--buffer.path=" + filepath.Join(dir, "buffer"),
		"--web.listen-address=" + web,
	}
	if pprof {
		args = append(args, "--web.enable-pprof")
	}
	for _, r := range rs {
		args = append(args, "--redis.addr="+r.URL())
	}
	p := startBenchProcess(tb, bin, filepath.Join(dir, "redwire.log"), args)
	return &benchStack{
		name:  "redwire",
		web:   web,
		procs: func() []benchProc { return []benchProc{{"redwire", p.pid()}} },
		// Redis samples and the self-metrics travel in the same queue.
		progress: []string{`redis_up{stack=%q}`, `process_cpu_seconds_total{job="redwire",stack=%q}`},
		spilled:  "redwire_buffer_batches",
	}
}

// startPeerStack runs the exporter(s) and vmagent scraping them.
func startPeerStack(tb testing.TB, s peerSettings, writeURL string, rs []*harness.Redis) *benchStack {
	tb.Helper()
	var exporters []*harness.RedisExporter
	cfg := harness.VMAgentConfig{
		WriteURL: writeURL,
		Interval: peerInterval,
		Labels:   map[string]string{"stack": "peer"},
	}
	if s.multiExporter {
		e := harness.StartRedisExporter(tb, "")
		exporters = append(exporters, e)
		cfg.MultiTargetExporter = e.Addr()
		for _, r := range rs {
			cfg.Targets = append(cfg.Targets, r.URL())
		}
	} else {
		for _, r := range rs {
			e := harness.StartRedisExporter(tb, r.URL())
			exporters = append(exporters, e)
			cfg.Targets = append(cfg.Targets, e.Addr())
		}
	}
	vm := harness.StartVMAgent(tb, cfg)
	return &benchStack{
		name: "peer",
		procs: func() []benchProc {
			procs := []benchProc{{"vmagent", vm.PID()}}
			for _, e := range exporters {
				procs = append(procs, benchProc{"redis_exporter " + e.Addr(), e.PID()})
			}
			return procs
		},
		// up is vmagent's own, one per scrape of every job.
		progress: []string{`redis_up{stack=%q}`, `up{stack=%q}`},
	}
}

// benchProcess is a binary run by a benchmark as its own process, its
// output in a file.
type benchProcess struct {
	cmd     *exec.Cmd
	logPath string
	done    chan struct{} // closed once the process has been reaped
}

func startBenchProcess(tb testing.TB, bin, logPath string, args []string) *benchProcess {
	tb.Helper()
	f, err := os.Create(logPath)
	if err != nil {
		tb.Fatal(err)
	}
	// The child holds its own copy of the descriptor.
	defer f.Close()
	p := &benchProcess{cmd: exec.Command(bin, args...), logPath: logPath, done: make(chan struct{})}
	p.cmd.Stdout, p.cmd.Stderr = f, f
	// Killed with the benchmark binary, whatever ends it.
	p.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	started := make(chan error, 1)
	go func() {
		// The parent-death signal follows the forking thread; keep it
		// alive under the child (see harness child.run).
		runtime.LockOSThread()
		defer runtime.UnlockOSThread()
		if err := p.cmd.Start(); err != nil {
			started <- err
			return
		}
		started <- nil
		p.cmd.Wait()
		close(p.done)
	}()
	if err := <-started; err != nil {
		tb.Fatalf("start %s: %v", bin, err)
	}
	tb.Cleanup(func() {
		_ = p.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-p.done:
		case <-time.After(30 * time.Second):
			_ = p.cmd.Process.Kill()
			<-p.done
		}
		if tb.Failed() {
			out, _ := os.ReadFile(logPath)
			lines := strings.Split(strings.TrimSpace(string(out)), "\n")
			tb.Logf("%s output, last lines:\n%s", bin, strings.Join(lines[max(0, len(lines)-40):], "\n"))
		}
	})
	return p
}

// pid is the process id while it runs, 0 once it has exited.
func (p *benchProcess) pid() int {
	select {
	case <-p.done:
		return 0
	default:
		return p.cmd.Process.Pid
	}
}
