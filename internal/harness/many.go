package harness

import (
	"errors"
	"fmt"
	"net"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
)

// StartRedisN starts n redis-servers as StartRedis does, several at a
// time: starting a server is mostly waiting for its readiness probe, so
// one after the other 200 of them would spend most of a test's start-up
// waiting. It returns once every one answers PING, or fails the test
// naming every server that did not start.
func StartRedisN(t testing.TB, n int, opts ...RedisOption) []*Redis {
	t.Helper()
	rs := make([]*Redis, n)
	errs := make([]string, n)
	// Bounded so a start is a burst of forks and probes the machine can
	// absorb, not n at once competing with each other's probe deadlines.
	sem := make(chan struct{}, max(4, 4*runtime.NumCPU()))
	gt := &goTB{TB: t}
	var wg sync.WaitGroup
	for i := range rs {
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			rs[i], errs[i] = gt.run(func() *Redis { return StartRedis(gt, opts...) })
		})
	}
	wg.Wait()
	gt.started.Store(true)
	var failed []string
	for i, e := range errs {
		if e != "" {
			failed = append(failed, fmt.Sprintf("server %d: %s", i, e))
		}
	}
	if len(failed) > 0 {
		t.Fatalf("StartRedisN: %d of %d servers did not start:\n%s", len(failed), n, strings.Join(failed, "\n"))
	}
	return rs
}

// goTB lets the starters, which end the test with Fatalf on failure, run
// on goroutines other than the test's, where FailNow is not allowed: until
// started is set a fatal failure unwinds only that start and run returns
// its message, which the test's goroutine then reports. After that (Stop,
// Start and cleanup of the servers, on the test's goroutine) it is the
// test itself.
type goTB struct {
	testing.TB
	started atomic.Bool
}

// errFatal is the panic value a fatal failure unwinds a starter with.
type errFatal string

func (g *goTB) run(start func() *Redis) (r *Redis, msg string) {
	defer func() {
		if v := recover(); v != nil {
			f, ok := v.(errFatal)
			if !ok {
				panic(v)
			}
			msg = string(f)
		}
	}()
	return start(), ""
}

func (g *goTB) Fatalf(format string, args ...any) {
	g.Helper()
	if g.started.Load() {
		g.TB.Fatalf(format, args...)
	}
	panic(errFatal(fmt.Sprintf(format, args...)))
}

func (g *goTB) Fatal(args ...any) {
	g.Helper()
	if g.started.Load() {
		g.TB.Fatal(args...)
	}
	panic(errFatal(fmt.Sprint(args...)))
}

func (g *goTB) FailNow() {
	g.Helper()
	if g.started.Load() {
		g.TB.FailNow()
	}
	panic(errFatal("FailNow"))
}

// StartBlackhole listens on a free loopback port, accepts every
// connection and never answers: a dead target as a hung process or a
// half-open firewall presents it, which holds every request for its whole
// timeout, unlike a closed port that fails at once. It returns
// "127.0.0.1:PORT"; the listener and every accepted connection are closed
// when the test ends.
func StartBlackhole(t testing.TB) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("blackhole: listen on loopback: %v", err)
	}
	var (
		mu    sync.Mutex
		conns []net.Conn
		wg    sync.WaitGroup
	)
	wg.Go(func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return // closed by the cleanup below
			}
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
		}
	})
	t.Cleanup(func() {
		if err := l.Close(); err != nil && !errors.Is(err, net.ErrClosed) {
			t.Errorf("blackhole %s: close: %v", l.Addr(), err)
		}
		wg.Wait()
		mu.Lock()
		defer mu.Unlock()
		for _, c := range conns {
			c.Close()
		}
	})
	return l.Addr().String()
}
