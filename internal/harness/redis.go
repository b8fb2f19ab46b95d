package harness

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"net"
	"net/url"
	"os"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// Redis is a redis-server run for one test: no persistence, bound to
// loopback, stopped and removed with the test.
type Redis struct {
	srv    *server
	cfg    redisConfig
	client *redis.Client
}

// redisConfig is what RedisOptions set.
type redisConfig struct {
	password string
	args     []string
	sentinel []string // extra sentinel.conf lines (StartSentinel only)
}

// RedisOption adjusts how StartRedis runs redis-server.
type RedisOption func(*redisConfig)

// WithPassword makes the server require pw (requirepass); URL and Client
// carry it.
func WithPassword(pw string) RedisOption {
	return func(c *redisConfig) { c.password = pw }
}

// WithArgs appends redis-server command-line arguments, e.g. "--replicaof",
// "127.0.0.1", "6380". They come last, so they override the harness's own;
// overriding --port, --bind or --daemonize breaks the readiness probe.
func WithArgs(args ...string) RedisOption {
	return func(c *redisConfig) { c.args = append(c.args, args...) }
}

// StartRedis starts redis-server on a free loopback port with an empty
// dataset and returns once it answers PING.
func StartRedis(t testing.TB, opts ...RedisOption) *Redis {
	t.Helper()
	return startRedis(t, FreePort(t), opts...)
}

// startRedis is StartRedis on a chosen first port, so tests can provoke a
// port clash.
func startRedis(t testing.TB, port int, opts ...RedisOption) *Redis {
	t.Helper()
	r := &Redis{srv: newServer(t, "redis-server", "redis-server")}
	for _, o := range opts {
		o(&r.cfg)
	}
	r.srv.args = r.args
	r.srv.probe = r.probe
	r.srv.start(port)
	r.client = redis.NewClient(r.options())
	t.Cleanup(func() { r.client.Close() })
	return r
}

// args keeps redis-server in the foreground (its output is captured) and
// without persistence: tests state the data they need, and a restart
// starts from an empty dataset.
func (r *Redis) args(port int) []string {
	args := []string{
		"--port", strconv.Itoa(port),
		"--bind", "127.0.0.1",
		"--dir", r.srv.dir,
		"--save", "",
		"--appendonly", "no",
		"--daemonize", "no",
	}
	if r.cfg.password != "" {
		args = append(args, "--requirepass", r.cfg.password)
	}
	return append(args, r.cfg.args...)
}

// options configures go-redis for this server.
func (r *Redis) options() *redis.Options {
	return &redis.Options{Addr: r.Addr(), Password: r.cfg.password}
}

// probe is ready when PING succeeds and INFO names our child's pid.
func (r *Redis) probe(ctx context.Context, port, pid int) error {
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	// A plain dial first: go-redis logs every failed dial to stderr, and
	// nothing listening yet is the normal case here, not news.
	var d net.Dialer
	conn, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return err
	}
	conn.Close()
	opt := r.options()
	opt.Addr = addr
	// One connection, one dial, no retries, and ctx bounds every read: the
	// caller does the retrying, against its own deadline.
	opt.MaxRetries = -1
	opt.DialerRetries = 1
	opt.PoolSize = 1
	opt.ContextTimeoutEnabled = true
	// go-redis turns ctx's deadline into socket deadlines but does not
	// watch for cancellation; closing the connection does, so a child that
	// exits ends a probe stuck on a port owner that accepts and never
	// answers.
	opt.Dialer = func(dctx context.Context, network, addr string) (net.Conn, error) {
		conn, err := d.DialContext(dctx, network, addr)
		if err == nil {
			context.AfterFunc(ctx, func() { conn.Close() })
		}
		return conn, err
	}
	c := redis.NewClient(opt)
	defer c.Close()
	if err := c.Ping(ctx).Err(); err != nil {
		return fmt.Errorf("PING %s: %w", addr, err)
	}
	info, err := c.Info(ctx, "server").Result()
	if err != nil {
		return fmt.Errorf("INFO server on %s: %w", addr, err)
	}
	got, err := infoField(info, "process_id")
	if err != nil {
		return fmt.Errorf("INFO server on %s: %w", addr, err)
	}
	if got != strconv.Itoa(pid) {
		return fmt.Errorf("%s is served by redis-server pid %s, not ours (pid %d)", addr, got, pid)
	}
	return nil
}

// infoField returns the value of one "key:value" line of an INFO reply.
func infoField(info, key string) (string, error) {
	sc := bufio.NewScanner(strings.NewReader(info))
	for sc.Scan() {
		if v, ok := strings.CutPrefix(strings.TrimSpace(sc.Text()), key+":"); ok {
			return v, nil
		}
	}
	return "", fmt.Errorf("no %q field in INFO reply", key)
}

// Addr is the server's "127.0.0.1:PORT"; it survives restarts.
func (r *Redis) Addr() string { return r.srv.hostPort() }

// URL is the server's redis:// URL, with the password if there is one.
func (r *Redis) URL() string {
	u := url.URL{Scheme: "redis", Host: r.Addr()}
	if r.cfg.password != "" {
		u.User = url.UserPassword("", r.cfg.password)
	}
	return u.String()
}

// Client is a go-redis client for the server, closed when the test ends.
// It reconnects by itself after Stop and Start; but once enough dials have
// failed while the server was down, go-redis redials only once a second,
// so read through it with WaitFor right after a Start.
func (r *Redis) Client() *redis.Client { return r.client }

// Dir is the server's working directory (--dir); its output is in
// redis-server.log there.
func (r *Redis) Dir() string { return r.srv.dir }

// Stop shuts the server down with SIGTERM and waits for it to exit. It is a
// no-op when the server is not running.
func (r *Redis) Stop() {
	r.srv.t.Helper()
	r.srv.stop(syscall.SIGTERM)
}

// Kill ends the server with SIGKILL, as a crash would, and waits for it.
func (r *Redis) Kill() {
	r.srv.t.Helper()
	r.srv.stop(syscall.SIGKILL)
}

// Freeze stops the server with SIGSTOP: it keeps its connections and the
// kernel still accepts new ones, but nothing is answered until Thaw, as a
// Redis stuck in a long command, for as long as the test wants. Stop, Kill
// and the teardown work on a frozen server.
func (r *Redis) Freeze() {
	r.srv.t.Helper()
	pid := r.srv.pid()
	if pid == 0 {
		r.srv.t.Fatalf("freeze %s: not running", r.srv.name)
	}
	if err := syscall.Kill(pid, syscall.SIGSTOP); err != nil {
		r.srv.t.Fatalf("freeze %s: %v", r.srv.name, err)
	}
	// A signal arrives when the kernel next schedules the process:
	// frozen means seen stopped.
	WaitFor(r.srv.t, time.Minute, r.srv.name+" stopped by SIGSTOP", func() (bool, error) {
		st, err := procState(pid)
		return st == "T", fmt.Errorf("process state %q, %v", st, err)
	})
}

// procState is the state letter of process pid: R, S, T (stopped), ...
func procState(pid int) (string, error) {
	stat, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return "", err
	}
	// "pid (comm) state ...": comm may hold spaces and parentheses, so
	// cut at the last ')'.
	i := bytes.LastIndexByte(stat, ')')
	if i < 0 || i+2 >= len(stat) {
		return "", fmt.Errorf("unreadable /proc/%d/stat: %q", pid, stat)
	}
	return string(stat[i+2]), nil
}

// Thaw resumes a server Freeze stopped (SIGCONT); a no-op on one running
// or gone.
func (r *Redis) Thaw() {
	if pid := r.srv.pid(); pid != 0 {
		_ = syscall.Kill(pid, syscall.SIGCONT)
	}
}

// Start runs the server again on the same port and dir after Stop or Kill
// and waits until it answers; the dataset starts empty (no persistence).
// It is a no-op while the server is running.
func (r *Redis) Start() {
	r.srv.t.Helper()
	r.srv.restart()
}
