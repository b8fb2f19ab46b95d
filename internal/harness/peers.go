package harness

import (
	"bufio"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/common/model"
	"go.yaml.in/yaml/v3"
)

// The peers are what redwire replaces: prometheus-redis-exporter turning
// Redis into a /metrics page, and vmagent scraping it and pushing with
// remote write. Benchmarks run them beside redwire, on the same Redis
// servers and receiver, to compare what each stack costs; PID and
// ReadProcUsage are for that.

// RedisExporter is a prometheus-redis-exporter run for one test.
type RedisExporter struct {
	srv *server
	api *apiClient
}

// StartRedisExporter starts prometheus-redis-exporter on a free loopback
// port and returns once it serves /metrics.
//
// With a redisURL ("redis://host:port") it exports that one server on
// /metrics, the common deployment of one exporter beside each Redis. With
// "" it runs in multi-target mode: /metrics holds only the exporter's own
// metrics and GET /scrape?target=redis://host:port exports any server.
// args are more exporter flags, appended last.
func StartRedisExporter(t testing.TB, redisURL string, args ...string) *RedisExporter {
	t.Helper()
	e := &RedisExporter{
		srv: newServer(t, "prometheus-redis-exporter", "prometheus-redis-exporter"),
		api: newAPIClient("", nil),
	}
	t.Cleanup(e.api.http.CloseIdleConnections)
	e.srv.args = func(port int) []string {
		return append([]string{
			// Set even when empty: the default is redis://localhost:6379,
			// which multi-target mode must not scrape on /metrics.
			"-redis.addr=" + redisURL,
			"-web.listen-address=127.0.0.1:" + strconv.Itoa(port),
		}, args...)
	}
	e.srv.probe = e.probe
	e.srv.start(FreePort(t))
	e.api.base = e.URL()
	return e
}

// probe is ready when /metrics answers with the exporter's build info and
// the listening socket belongs to our child. The page alone proves
// nothing: the exporter answers 200 with its index page on any path.
func (e *RedisExporter) probe(ctx context.Context, port, pid int) error {
	base := fmt.Sprintf("http://127.0.0.1:%d", port)
	body, err := e.api.fetch(ctx, base+"/metrics")
	if err != nil {
		return err
	}
	if !strings.Contains(string(body), "redis_exporter_build_info") {
		return fmt.Errorf("%s/metrics is not a redis_exporter's page", base)
	}
	return listensOn(pid, port)
}

// Addr is the exporter's "127.0.0.1:PORT", what a scraper targets.
func (e *RedisExporter) Addr() string { return e.srv.hostPort() }

// URL is the exporter's base URL, "http://127.0.0.1:PORT".
func (e *RedisExporter) URL() string { return "http://" + e.srv.hostPort() }

// Dir is the exporter's temp dir, holding prometheus-redis-exporter.log.
func (e *RedisExporter) Dir() string { return e.srv.dir }

// PID is the exporter's process id; 0 once it has exited.
func (e *RedisExporter) PID() int { return e.srv.pid() }

// VMAgentConfig is what StartVMAgent runs: one scrape job named "redis"
// and one remote-write URL.
type VMAgentConfig struct {
	// WriteURL is the remote-write endpoint (-remoteWrite.url); required.
	WriteURL string
	// Targets are scraped every Interval. Without MultiTargetExporter
	// they are the host:port of exporters, scraped at /metrics; with it,
	// they are Redis URLs (redis://host:port) scraped through it.
	Targets []string
	// MultiTargetExporter is the host:port of a redis_exporter in
	// multi-target mode (StartRedisExporter with ""). vmagent then asks
	// it for each target at /scrape?target=<target>, with instance=<target>,
	// and scrapes its own /metrics as job "redis_exporter", as the
	// exporter's README configures it.
	MultiTargetExporter string
	// Interval is the scrape interval; zero leaves vmagent's default, 1m.
	Interval time.Duration
	// Labels are added to every sample sent (-remoteWrite.label).
	Labels map[string]string
	// Args are more vmagent flags, appended last.
	Args []string
}

// VMAgent is a vmagent run for one test.
type VMAgent struct {
	srv *server
	api *apiClient
}

// StartVMAgent starts vmagent on a free loopback port with a scrape
// config generated from cfg and its remote-write queue in its temp dir,
// and returns once /health answers 200. It is not waited for to have
// scraped or sent anything: poll the receiver for that.
func StartVMAgent(t testing.TB, cfg VMAgentConfig) *VMAgent {
	t.Helper()
	if cfg.WriteURL == "" {
		t.Fatalf("StartVMAgent: VMAgentConfig.WriteURL is empty")
	}
	v := &VMAgent{srv: newServer(t, "vmagent", "victoria-metrics"), api: newAPIClient("", nil)}
	t.Cleanup(v.api.http.CloseIdleConnections)
	scrape, err := vmagentScrapeConfig(cfg)
	if err != nil {
		t.Fatalf("StartVMAgent: %v", err)
	}
	config := filepath.Join(v.srv.dir, "scrape.yml")
	if err := os.WriteFile(config, scrape, 0o644); err != nil {
		t.Fatalf("write vmagent scrape config: %v", err)
	}
	var labels []string
	for _, k := range slices.Sorted(maps.Keys(cfg.Labels)) {
		labels = append(labels, "-remoteWrite.label="+k+"="+cfg.Labels[k])
	}
	v.srv.args = func(port int) []string {
		args := []string{
			"-httpListenAddr=127.0.0.1:" + strconv.Itoa(port),
			"-promscrape.config=" + config,
			"-remoteWrite.url=" + cfg.WriteURL,
			"-remoteWrite.tmpDataPath=" + filepath.Join(v.srv.dir, "remotewrite"),
		}
		args = append(args, labels...)
		return append(args, cfg.Args...)
	}
	v.srv.probe = v.probe
	v.srv.start(FreePort(t))
	v.api.base = v.URL()
	return v
}

// vmScrapeFile is the part of a Prometheus config that vmagent's
// -promscrape.config reads.
type vmScrapeFile struct {
	Global        vmGlobal         `yaml:"global,omitempty"`
	ScrapeConfigs []vmScrapeConfig `yaml:"scrape_configs"`
}

type vmGlobal struct {
	ScrapeInterval string `yaml:"scrape_interval,omitempty"`
}

type vmScrapeConfig struct {
	JobName        string           `yaml:"job_name"`
	MetricsPath    string           `yaml:"metrics_path,omitempty"`
	StaticConfigs  []vmStaticConfig `yaml:"static_configs"`
	RelabelConfigs []vmRelabel      `yaml:"relabel_configs,omitempty"`
}

type vmStaticConfig struct {
	Targets []string `yaml:"targets"`
}

type vmRelabel struct {
	SourceLabels []string `yaml:"source_labels,omitempty,flow"`
	TargetLabel  string   `yaml:"target_label"`
	Replacement  string   `yaml:"replacement,omitempty"`
}

// vmagentScrapeConfig renders cfg's scrape jobs.
func vmagentScrapeConfig(cfg VMAgentConfig) ([]byte, error) {
	if len(cfg.Targets) == 0 {
		return nil, errors.New("VMAgentConfig.Targets is empty")
	}
	f := vmScrapeFile{}
	if cfg.Interval > 0 {
		f.Global.ScrapeInterval = model.Duration(cfg.Interval).String()
	}
	job := vmScrapeConfig{JobName: "redis", StaticConfigs: []vmStaticConfig{{Targets: cfg.Targets}}}
	if ex := cfg.MultiTargetExporter; ex != "" {
		job.MetricsPath = "/scrape"
		job.RelabelConfigs = []vmRelabel{
			{SourceLabels: []string{"__address__"}, TargetLabel: "__param_target"},
			{SourceLabels: []string{"__param_target"}, TargetLabel: "instance"},
			{TargetLabel: "__address__", Replacement: ex},
		}
		f.ScrapeConfigs = append(f.ScrapeConfigs, job,
			vmScrapeConfig{JobName: "redis_exporter", StaticConfigs: []vmStaticConfig{{Targets: []string{ex}}}})
	} else {
		f.ScrapeConfigs = append(f.ScrapeConfigs, job)
	}
	return yaml.Marshal(f)
}

// probe is ready when /health answers 200 and the listening socket
// belongs to our child.
func (v *VMAgent) probe(ctx context.Context, port, pid int) error {
	if _, err := v.api.fetch(ctx, fmt.Sprintf("http://127.0.0.1:%d/health", port)); err != nil {
		return err
	}
	return listensOn(pid, port)
}

// URL is vmagent's base URL, "http://127.0.0.1:PORT" (/metrics, /targets).
func (v *VMAgent) URL() string { return "http://" + v.srv.hostPort() }

// Dir is vmagent's temp dir: scrape.yml, the remote-write queue
// (remotewrite/) and vmagent.log.
func (v *VMAgent) Dir() string { return v.srv.dir }

// PID is vmagent's process id; 0 once it has exited.
func (v *VMAgent) PID() int { return v.srv.pid() }

// Metric sums vmagent's own /metrics samples matching series, e.g.
// `vm_promscrape_scrapes_failed_total` or
// `vmagent_remotewrite_requests_total{status_code="204"}`; absent series
// read 0.
func (v *VMAgent) Metric(ctx context.Context, series string) (float64, error) {
	return v.api.metric(ctx, series)
}

// pid is the running child's process id, 0 while stopped or once it has
// exited on its own.
func (s *server) pid() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.proc == nil || s.proc.exited() {
		return 0
	}
	return s.proc.cmd.Process.Pid
}

// listensOn returns nil if process pid holds the socket listening on the
// loopback TCP port: an answer on the port proves only that somebody
// listens there, which after a lost bind race is another test's server.
func listensOn(pid, port int) error {
	inodes := map[string]bool{}
	for _, table := range []string{"/proc/net/tcp", "/proc/net/tcp6"} {
		if err := listeningInodes(table, port, inodes); err != nil {
			return err
		}
	}
	if len(inodes) == 0 {
		return fmt.Errorf("nothing listens on port %d", port)
	}
	fdDir := fmt.Sprintf("/proc/%d/fd", pid)
	fds, err := os.ReadDir(fdDir)
	if err != nil {
		return fmt.Errorf("list the sockets of pid %d: %w", pid, err)
	}
	for _, fd := range fds {
		// A descriptor closed since ReadDir has no link; skip it.
		link, err := os.Readlink(filepath.Join(fdDir, fd.Name()))
		if err != nil {
			continue
		}
		if inode, ok := strings.CutPrefix(link, "socket:["); ok && inodes[strings.TrimSuffix(inode, "]")] {
			return nil
		}
	}
	return fmt.Errorf("port %d is listened on, but not by pid %d", port, pid)
}

// listeningInodes adds to inodes the socket inode of every listening
// socket on port in table, a /proc/net/tcp{,6} file: lines of
// "sl local_address rem_address st ... inode ...", addresses as hex
// IP:PORT, state 0A meaning LISTEN.
func listeningInodes(table string, port int, inodes map[string]bool) error {
	f, err := os.Open(table)
	if errors.Is(err, os.ErrNotExist) {
		return nil // a kernel without IPv6
	}
	if err != nil {
		return err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Scan() // the header
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) < 10 || fields[3] != "0A" {
			continue
		}
		_, hexPort, ok := strings.Cut(fields[1], ":")
		if p, err := strconv.ParseUint(hexPort, 16, 16); !ok || err != nil || int(p) != port {
			continue
		}
		inodes[fields[9]] = true
	}
	if err := sc.Err(); err != nil {
		return fmt.Errorf("read %s: %w", table, err)
	}
	return nil
}

// ProcUsage is what the kernel has accounted to one process since it
// started.
type ProcUsage struct {
	// CPU is user plus system time of all its threads (/proc/PID/stat
	// utime + stime), in clock-tick resolution (10ms on Linux).
	CPU time.Duration
	// PeakRSS is the largest resident set size it has had, in bytes
	// (VmHWM in /proc/PID/status).
	PeakRSS int64
	// RSS is its resident set size now, in bytes (VmRSS).
	RSS int64
	// AnonRSS is the part of RSS that is the process's own memory (heap,
	// stacks: RssAnon), not pages of files such as its binary, which the
	// kernel can drop and reread at any time.
	AnonRSS int64
}

// ReadProcUsage reads the CPU time and memory of process pid from /proc;
// Linux only. Use it with the PID of a harness server, or of any child
// the test started.
func ReadProcUsage(pid int) (ProcUsage, error) {
	var u ProcUsage
	if pid <= 0 {
		return u, fmt.Errorf("read usage of pid %d: not a running process", pid)
	}
	ticks, err := clockTicks()
	if err != nil {
		return u, err
	}
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return u, err
	}
	// "pid (comm) state ppid ...": comm may hold spaces and parentheses,
	// so fields are counted from the last ')'. utime and stime are fields
	// 14 and 15 of the line, 12 and 13 after comm.
	i := strings.LastIndexByte(string(stat), ')')
	if i < 0 {
		return u, fmt.Errorf("/proc/%d/stat: unexpected format %q", pid, snippet(stat))
	}
	fields := strings.Fields(string(stat[i+1:]))
	if len(fields) < 13 {
		return u, fmt.Errorf("/proc/%d/stat: unexpected format %q", pid, snippet(stat))
	}
	var cpuTicks uint64
	for _, f := range fields[11:13] {
		n, err := strconv.ParseUint(f, 10, 64)
		if err != nil {
			return u, fmt.Errorf("/proc/%d/stat: utime/stime %q: %w", pid, f, err)
		}
		cpuTicks += n
	}
	u.CPU = time.Duration(cpuTicks) * time.Second / time.Duration(ticks)

	status, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return u, err
	}
	var found int
	for line := range strings.Lines(string(status)) {
		key, val, ok := strings.Cut(line, ":")
		if !ok || (key != "VmHWM" && key != "VmRSS" && key != "RssAnon") {
			continue
		}
		// "  123456 kB"
		kb, err := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(val), " kB"), 10, 64)
		if err != nil {
			return u, fmt.Errorf("/proc/%d/status: %s %q: %w", pid, key, strings.TrimSpace(val), err)
		}
		switch key {
		case "VmHWM":
			u.PeakRSS = kb << 10
		case "VmRSS":
			u.RSS = kb << 10
		default:
			u.AnonRSS = kb << 10
		}
		found++
	}
	if found != 3 {
		// A zombie has no memory lines.
		return u, fmt.Errorf("/proc/%d/status: no VmHWM, VmRSS and RssAnon (has the process exited?)", pid)
	}
	return u, nil
}

// atClkTck is the auxiliary-vector entry holding the kernel's clock-tick
// rate, sysconf(_SC_CLK_TCK) without cgo.
const atClkTck = 17

// clockTicks is the unit of /proc/PID/stat's times, per second, read from
// this process's auxiliary vector: pairs of native words (type, value).
func clockTicks() (uint64, error) {
	auxv, err := os.ReadFile("/proc/self/auxv")
	if err != nil {
		return 0, fmt.Errorf("read clock-tick rate: %w", err)
	}
	word := strconv.IntSize / 8
	read := func(b []byte) uint64 {
		if word == 8 {
			return binary.NativeEndian.Uint64(b)
		}
		return uint64(binary.NativeEndian.Uint32(b))
	}
	for i := 0; i+2*word <= len(auxv); i += 2 * word {
		if read(auxv[i:]) == atClkTck {
			if v := read(auxv[i+word:]); v > 0 {
				return v, nil
			}
		}
	}
	return 0, errors.New("read clock-tick rate: no AT_CLKTCK in /proc/self/auxv")
}
