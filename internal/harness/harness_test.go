package harness

import (
	"fmt"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"
)

// fatalTB stands in for a test whose Fatalf is the behaviour under test:
// it records the message and ends the goroutine, as testing.T does.
type fatalTB struct {
	testing.TB
	mu  sync.Mutex
	msg string
}

func (f *fatalTB) Helper() {}

func (f *fatalTB) Fatalf(format string, args ...any) {
	f.mu.Lock()
	f.msg = fmt.Sprintf(format, args...)
	f.mu.Unlock()
	runtime.Goexit()
}

// fatalMessage runs fn on its own goroutine (Goexit must not end the real
// test) and returns what it passed to Fatalf, "" if nothing.
func fatalMessage(t *testing.T, fn func(tb testing.TB)) string {
	f := &fatalTB{TB: t}
	done := make(chan struct{})
	go func() {
		defer close(done)
		fn(f)
	}()
	<-done
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.msg
}

func TestMissingBinaryFailsWithInstallHint(t *testing.T) {
	msg := fatalMessage(t, func(tb testing.TB) { lookBinary(tb, "redis-server-not-installed", "redis-server") })
	for _, want := range []string{"redis-server-not-installed not found in PATH", "make test", "apt-get install redis-server"} {
		if !strings.Contains(msg, want) {
			t.Errorf("message %q does not contain %q", msg, want)
		}
	}
}

func TestWaitFor(t *testing.T) {
	calls := 0
	WaitFor(t, 5*time.Second, "third call", func() (bool, error) {
		calls++
		return calls == 3, nil
	})
	if calls != 3 {
		t.Errorf("cond called %d times, want 3", calls)
	}

	// Giving up: it polls at most once a waitInterval (a ticker drops the
	// ticks a slow machine misses, never adds any), so the calls bound it
	// from above, whatever the speed; returning at all is the timeout.
	const timeout = 3 * waitInterval
	calls = 0
	msg := fatalMessage(t, func(tb testing.TB) {
		WaitFor(tb, timeout, "the impossible", func() (bool, error) {
			calls++
			return false, fmt.Errorf("still 2 series")
		})
	})
	if most := int(timeout/waitInterval) + 1; calls < 1 || calls > most {
		t.Errorf("cond called %d times in a %v WaitFor polling every %v, want 1 to %d", calls, timeout, waitInterval, most)
	}
	if !strings.Contains(msg, "the impossible") || !strings.Contains(msg, "still 2 series") {
		t.Errorf("failure message %q does not name what was awaited and the last error", msg)
	}
}

func TestParseSample(t *testing.T) {
	tests := []struct {
		line   string
		name   string
		labels string
		value  float64
		ok     bool
	}{
		{line: "up 1", name: "up", value: 1, ok: true},
		{line: `x_total{a="b",c="d"} 2.5 1700000000000`, name: "x_total", labels: `a="b",c="d"`, value: 2.5, ok: true},
		{line: `h{path="/{x}",q="a\"}"} 3`, name: "h", labels: `path="/{x}",q="a\"}"`, value: 3, ok: true},
		{line: `flag{name="storageDataPath", value="/tmp/d", is_set="true"} 1`, name: "flag", labels: `name="storageDataPath", value="/tmp/d", is_set="true"`, value: 1, ok: true},
		{line: "# HELP up whether", ok: false},
		{line: "", ok: false},
		{line: `broken{a="b" 1`, ok: false},
		{line: "novalue", ok: false},
		{line: "nan NaN", name: "nan", ok: true},
	}
	for _, tt := range tests {
		name, labels, value, ok := parseSample(tt.line)
		if ok != tt.ok || name != tt.name || labels != tt.labels || (value != tt.value && tt.name != "nan") {
			t.Errorf("parseSample(%q) = %q, %q, %v, %v; want %q, %q, %v, %v",
				tt.line, name, labels, value, ok, tt.name, tt.labels, tt.value, tt.ok)
		}
	}
}

func TestFreePortIsBindable(t *testing.T) {
	a, b := FreePort(t), FreePort(t)
	if a <= 0 || b <= 0 {
		t.Fatalf("ports %d, %d", a, b)
	}
}

func TestParseSeries(t *testing.T) {
	tests := []struct {
		in     string
		name   string
		labels map[string]string
		ok     bool
	}{
		{in: "up", name: "up", ok: true},
		{in: `x_total{code="400",handler="/api/v1/write"}`, name: "x_total", labels: map[string]string{"code": "400", "handler": "/api/v1/write"}, ok: true},
		{in: `x{v="a\"b\\c\nd, e"}`, name: "x", labels: map[string]string{"v": "a\"b\\c\nd, e"}, ok: true},
		{in: `{a="b"}`, ok: false},
		{in: `x{a="b"} 1`, ok: false},
		{in: `x{a=b}`, ok: false},
		{in: `x{a="b}`, ok: false},
		{in: "", ok: false},
	}
	for _, tt := range tests {
		name, labels, ok := parseSeries(tt.in)
		if ok != tt.ok || (ok && (name != tt.name || fmt.Sprint(labels) != fmt.Sprint(tt.labels))) {
			t.Errorf("parseSeries(%q) = %q, %v, %v; want %q, %v, %v", tt.in, name, labels, ok, tt.name, tt.labels, tt.ok)
		}
	}
}
