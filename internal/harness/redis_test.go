package harness

import (
	"context"
	"errors"
	"net"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

func TestRedisStopStartKill(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	r := StartRedis(t)
	c := r.Client()
	if err := c.Set(ctx, "k", "v", 0).Err(); err != nil {
		t.Fatalf("SET: %v", err)
	}
	if got, err := c.Get(ctx, "k").Result(); err != nil || got != "v" {
		t.Fatalf("GET = %q, %v; want v", got, err)
	}

	r.Stop()
	r.Stop() // idempotent
	if conn, err := net.Dial("tcp", r.Addr()); err == nil {
		conn.Close()
		t.Fatal("something still listens on the port after Stop")
	}
	r.Start()
	if err := c.Ping(ctx).Err(); err != nil {
		t.Fatalf("PING after Start on the same client: %v", err)
	}
	// No persistence: a restart starts empty.
	if err := c.Get(ctx, "k").Err(); !errors.Is(err, redis.Nil) {
		t.Errorf("GET after restart: %v, want redis.Nil", err)
	}

	r.Kill()
	r.Start()
	r.Start() // no-op while running
	if err := c.Ping(ctx).Err(); err != nil {
		t.Fatalf("PING after Kill and Start: %v", err)
	}
	if _, err := os.Stat(r.Dir() + "/redis-server.log"); err != nil {
		t.Errorf("output file: %v", err)
	}
}

func TestRedisPassword(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	r := StartRedis(t, WithPassword("s3cr:t@"))
	if err := r.Client().Ping(ctx).Err(); err != nil {
		t.Fatalf("PING with password: %v", err)
	}
	opt, err := redis.ParseURL(r.URL())
	if err != nil {
		t.Fatalf("ParseURL(%q): %v", r.URL(), err)
	}
	if opt.Password != "s3cr:t@" || opt.Addr != r.Addr() {
		t.Errorf("URL %q parses to password %q addr %q", r.URL(), opt.Password, opt.Addr)
	}
	anon := redis.NewClient(&redis.Options{Addr: r.Addr()})
	defer anon.Close()
	if err := anon.Ping(ctx).Err(); err == nil || !strings.Contains(err.Error(), "NOAUTH") {
		t.Errorf("PING without password: %v, want NOAUTH", err)
	}
}

func TestRedisWithArgsReplica(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	// The default diskless-sync delay would hold the first sync for 5s.
	primary := StartRedis(t, WithArgs("--repl-diskless-sync-delay", "0"))
	host, port, _ := net.SplitHostPort(primary.Addr())
	replica := StartRedis(t, WithArgs("--replicaof", host, port))
	if err := primary.Client().Set(ctx, "k", "replicated", 0).Err(); err != nil {
		t.Fatalf("SET on primary: %v", err)
	}
	WaitFor(t, 20*time.Second, "key on replica", func() (bool, error) {
		v, err := replica.Client().Get(ctx, "k").Result()
		return v == "replicated", err
	})
	role, err := replica.Client().Do(ctx, "ROLE").Slice()
	if err != nil || len(role) == 0 || role[0] != "slave" {
		t.Errorf("ROLE on replica = %v, %v", role, err)
	}
}

// TestRedisPortClash starts a second server on a port the first one holds:
// the probe must not mistake the first server for the second, and the
// start must move on to a free port.
func TestRedisPortClash(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	a := StartRedis(t)
	_, aPort, _ := net.SplitHostPort(a.Addr())
	p, _ := strconv.Atoi(aPort)
	b := startRedis(t, p)
	if a.Addr() == b.Addr() {
		t.Fatalf("both servers on %s", a.Addr())
	}
	pidA, _ := infoField(a.Client().Info(ctx, "server").Val(), "process_id")
	pidB, _ := infoField(b.Client().Info(ctx, "server").Val(), "process_id")
	if pidA == "" || pidA == pidB {
		t.Errorf("process ids %q and %q: not two servers", pidA, pidB)
	}
	if out := b.srv.output(0); !portClash(out) {
		t.Errorf("second server's output shows no bind failure:\n%s", tail(out))
	}
}

// TestRedisRestartWaitsForItsPort: a restart must come back on the same
// port, so while something else holds it, Start retries until it is free.
func TestRedisRestartWaitsForItsPort(t *testing.T) {
	t.Parallel()
	r := StartRedis(t)
	r.Stop()
	l, err := net.Listen("tcp", r.Addr())
	if err != nil {
		t.Fatalf("occupy %s: %v", r.Addr(), err)
	}
	// Release the port once Start has run into it twice.
	released := make(chan error, 1)
	go func() {
		defer l.Close()
		deadline := time.Now().Add(20 * time.Second)
		for time.Now().Before(deadline) {
			if strings.Count(strings.ToLower(r.srv.output(0)), "address already in use") >= 2 {
				released <- nil
				return
			}
			time.Sleep(10 * time.Millisecond)
		}
		released <- errors.New("Start never ran into the occupied port")
	}()
	r.Start()
	if err := <-released; err != nil {
		t.Fatal(err)
	}
	if err := r.Client().Ping(context.Background()).Err(); err != nil {
		t.Fatalf("PING after Start: %v", err)
	}
}

// TestRedisStartAfterShutdown: a server that exited on its own (here: the
// test sent SHUTDOWN) counts as stopped, so Start brings it back.
func TestRedisStartAfterShutdown(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	r := StartRedis(t)
	r.srv.mu.Lock()
	c := r.srv.proc
	r.srv.mu.Unlock()

	once := redis.NewClient(&redis.Options{Addr: r.Addr(), MaxRetries: -1})
	defer once.Close()
	_ = once.Shutdown(ctx).Err() // the connection drops: an error is normal
	timer := time.NewTimer(10 * time.Second)
	defer timer.Stop()
	select {
	case <-c.done:
	case <-timer.C:
		t.Fatal("redis-server still running 10s after SHUTDOWN")
	}

	r.Start()
	if err := r.Client().Ping(ctx).Err(); err != nil {
		t.Fatalf("PING after Start: %v", err)
	}
}

// TestRedisStartFailureShowsOutput: a server that cannot start fails the
// test at once (not after the deadline) with its own explanation. "At
// once" is read from the cause, not a clock: the start ended because the
// process exited, not because the deadline came ("not ready after").
func TestRedisStartFailureShowsOutput(t *testing.T) {
	t.Parallel()
	msg := fatalMessage(t, func(tb testing.TB) { StartRedis(tb, WithArgs("--no-such-directive", "1")) })
	for _, want := range []string{"did not become ready", "exited before becoming ready", "no-such-directive"} {
		if !strings.Contains(msg, want) {
			t.Errorf("failure message does not contain %q:\n%s", want, msg)
		}
	}
	if strings.Contains(msg, "not ready after") {
		t.Errorf("the start waited for its deadline:\n%s", msg)
	}
}

// TestRedisFreezeThaw: a frozen server is stopped (process state T); a
// command sent to it is answered once it is thawed. One still frozen
// stops on SIGTERM at once (not killed after the grace period, which
// would fail the test).
func TestRedisFreezeThaw(t *testing.T) {
	t.Parallel()
	r := StartRedis(t)
	r.Freeze()
	if st, err := procState(r.srv.pid()); st != "T" {
		t.Fatalf("frozen redis-server in process state %q (%v), want T (stopped)", st, err)
	}
	// No timeouts: the answer comes when the server is thawed, whenever.
	c := redis.NewClient(&redis.Options{Addr: r.Addr(), MaxRetries: -1, ReadTimeout: -1, WriteTimeout: -1})
	defer c.Close()
	answered := make(chan error, 1)
	go func() { answered <- c.Ping(context.Background()).Err() }()
	r.Thaw()
	bound := time.NewTimer(time.Minute) // only ends a broken run
	defer bound.Stop()
	select {
	case err := <-answered:
		if err != nil {
			t.Fatalf("PING sent to a frozen server, after Thaw: %v", err)
		}
	case <-bound.C:
		t.Fatal("PING sent to a frozen server not answered a minute after Thaw")
	}

	left := StartRedis(t)
	left.Freeze()
	left.Stop()
}
