package redis

import (
	"fmt"
	"maps"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/model/labels"

	"github.com/redwire/redwire/internal/harness"
	"github.com/redwire/redwire/sample"
)

// collectorTarget is a Target on url, closed with the test.
func collectorTarget(t *testing.T, url string) *Target {
	t.Helper()
	tg, err := NewTarget(TargetConfig{Addr: url}, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { tg.Close() })
	return tg
}

// collectorScrape scrapes tg once and fails the test if the scrape fails.
func collectorScrape(t *testing.T, tg *Target) *sample.Scrape {
	t.Helper()
	sc, err := tg.Scrape(t.Context(), time.Now())
	if err != nil {
		t.Fatalf("scrape: %v", err)
	}
	return sc
}

// byLabel returns the values of family's samples keyed by the value of
// label; a second sample with the same value fails the test.
func byLabel(t *testing.T, sc *sample.Scrape, family, label string) map[string]float64 {
	t.Helper()
	out := map[string]float64{}
	for _, s := range sc.Samples {
		if s.Labels.Get(model.MetricNameLabel) != family {
			continue
		}
		k := s.Labels.Get(label)
		if _, dup := out[k]; dup {
			t.Fatalf("%s{%s=%q} twice in one scrape", family, label, k)
		}
		out[k] = s.V
	}
	return out
}

// checkSlowlogHistogram requires redis_slowlog_duration_seconds{cmd} to be
// a well-formed cumulative histogram of count entries.
func checkSlowlogHistogram(t *testing.T, sc *sample.Scrape, cmd string, count float64) {
	t.Helper()
	prev := 0.0
	for _, le := range slowlogBuckets {
		v, ok := find(sc, "redis_slowlog_duration_seconds_bucket", "cmd", cmd, "le", labels.FormatOpenMetricsFloat(le))
		if !ok || v < prev {
			t.Errorf("cmd %s: bucket le=%v is %v (found %v), previous %v", cmd, le, v, ok, prev)
		}
		prev = v
	}
	for _, part := range []struct {
		name string
		kv   []string
	}{
		{"redis_slowlog_duration_seconds_bucket", []string{"cmd", cmd, "le", "+Inf"}},
		{"redis_slowlog_duration_seconds_count", []string{"cmd", cmd}},
	} {
		if v, ok := find(sc, part.name, part.kv...); !ok || v != count || v < prev {
			t.Errorf("%s%v = %v (found %v), want %v", part.name, part.kv, v, ok, count)
		}
	}
	if typ, _ := typeOf(sc, "redis_slowlog_duration_seconds_bucket"); typ != histogramType {
		t.Errorf("redis_slowlog_duration_seconds_bucket has type %v, want histogram", typ)
	}
}

// TestSlowlogIncremental: with every command slow, the first scrape is a
// baseline only; afterwards each command is counted once under its
// allowlisted name (others as "other"), the agent's own commands not at
// all, and no argument ever shows up in a label.
func TestSlowlogIncremental(t *testing.T) {
	r := harness.StartRedis(t, harness.WithArgs("--slowlog-log-slower-than", "0"))
	ctx := t.Context()
	c := r.Client()
	// Set up the test client's connection (HELLO, CLIENT SETINFO) before
	// the baseline, so it is not counted.
	if err := c.Ping(ctx).Err(); err != nil {
		t.Fatal(err)
	}
	tg := collectorTarget(t, r.URL())

	sc := collectorScrape(t, tg)
	for _, f := range []string{"redis_slowlog_length", "redis_slowlog_last_id", "redis_last_slow_execution_duration_seconds"} {
		if v, ok := find(sc, f); !ok || v < 0 {
			t.Errorf("baseline: %s = %v (found %v)", f, v, ok)
		}
	}
	if got := byLabel(t, sc, "redis_slowlog_entries_total", "cmd"); len(got) != 0 {
		t.Errorf("baseline counted history from before the agent: %v", got)
	}

	const canary = "canary-7f3e9b"
	for _, args := range [][]any{
		{"SET", "k1", canary}, {"SET", "k2", "v"}, {"SET", canary, "v"},
		{"GET", "k1"}, {"GET", canary},
		{"ECHO", canary}, // not in the allowlist
	} {
		if err := c.Do(ctx, args...).Err(); err != nil {
			t.Fatalf("%v: %v", args, err)
		}
	}
	want := map[string]float64{"set": 3, "get": 2, "other": 1}
	for i := range 2 { // the second time with nothing new but the agent's own commands
		sc = collectorScrape(t, tg)
		if got := byLabel(t, sc, "redis_slowlog_entries_total", "cmd"); !maps.Equal(got, want) {
			t.Errorf("scrape %d: redis_slowlog_entries_total = %v, want %v", i+2, got, want)
		}
		for cmd, n := range want {
			checkSlowlogHistogram(t, sc, cmd, n)
		}
		if v, ok := find(sc, "redis_slowlog_entries_missed_total"); !ok || v != 0 {
			t.Errorf("redis_slowlog_entries_missed_total = %v (found %v), want 0", v, ok)
		}
	}
	if typ, _ := typeOf(sc, "redis_slowlog_entries_total"); typ != sample.Counter {
		t.Errorf("redis_slowlog_entries_total has type %v, want counter", typ)
	}
	for _, s := range sc.Samples {
		s.Labels.Range(func(l labels.Label) {
			if strings.Contains(l.Value, canary) {
				t.Errorf("argument value in a label: %s", s.Labels)
			}
		})
	}
}

// TestSlowlogResetAndRestart: SLOWLOG RESET empties the log but ids go on,
// so counting continues; after a restart ids start again at 0 and the new
// process's entries are all counted.
func TestSlowlogResetAndRestart(t *testing.T) {
	r := harness.StartRedis(t, harness.WithArgs("--slowlog-log-slower-than", "0"))
	ctx := t.Context()
	c := r.Client()
	if err := c.Ping(ctx).Err(); err != nil {
		t.Fatal(err)
	}
	tg := collectorTarget(t, r.URL())
	collectorScrape(t, tg)

	for _, args := range [][]any{{"SET", "a", "1"}, {"SLOWLOG", "RESET"}, {"SET", "b", "1"}, {"SET", "c", "1"}} {
		if err := c.Do(ctx, args...).Err(); err != nil {
			t.Fatalf("%v: %v", args, err)
		}
	}
	// The SET before the reset is gone with it; the two after it count.
	sc := collectorScrape(t, tg)
	if v, ok := find(sc, "redis_slowlog_entries_total", "cmd", "set"); !ok || v != 2 {
		t.Fatalf("after SLOWLOG RESET: set = %v (found %v), want 2", v, ok)
	}

	r.Stop()
	r.Start()
	harness.WaitFor(t, 10*time.Second, "a SET on the restarted server", func() (bool, error) {
		return c.Set(ctx, "d", "1", 0).Err() == nil, nil
	})
	harness.WaitFor(t, 10*time.Second, "a scrape of the restarted server", func() (bool, error) {
		sc, err := tg.Scrape(ctx, time.Now())
		if err != nil {
			return false, err
		}
		if v, ok := find(sc, "redis_slowlog_entries_total", "cmd", "set"); !ok || v != 3 {
			t.Fatalf("after restart: set = %v (found %v), want 3", v, ok)
		}
		return true, nil
	})
}

// TestParseSlowlog: malformed entries are skipped, and only the command
// name is kept of the argument vector.
func TestParseSlowlog(t *testing.T) {
	reply := []any{
		[]any{int64(7), int64(1700000000), int64(25000), []any{"SET", "secret-key", "secret-value"}, "10.0.0.1:5000", ""},
		[]any{int64(6), int64(1700000000), int64(1), []any{}},           // no command
		[]any{"x", int64(1700000000), int64(1), []any{"GET"}},           // id not a number
		[]any{int64(5), int64(1700000000), int64(3), []any{"GET", "k"}}, // Redis < 4.0: no client fields
		"not an entry",
	}
	got := parseSlowlog(reply)
	want := []slowlogEntry{{id: 7, seconds: 0.025, name: "SET", addr: "10.0.0.1:5000"}, {id: 5, seconds: 3e-6, name: "GET"}}
	if len(got) != len(want) || got[0] != want[0] || got[1] != want[1] {
		t.Fatalf("parseSlowlog = %+v, want %+v", got, want)
	}
	if len(parseSlowlog("ERR")) != 0 || len(parseSlowlog(nil)) != 0 {
		t.Fatal("a non-array reply must give no entries")
	}
}

// TestSlowlogConfiguredCommands: slowlog_commands replaces the built-in
// allowlist, case-insensitively: a listed command outside the default list
// keeps its name, and a default one not listed becomes "other".
func TestSlowlogConfiguredCommands(t *testing.T) {
	r := harness.StartRedis(t, harness.WithArgs("--slowlog-log-slower-than", "0"))
	ctx := t.Context()
	c := r.Client()
	if err := c.Ping(ctx).Err(); err != nil {
		t.Fatal(err)
	}
	tg, err := NewTarget(TargetConfig{Addr: r.URL(), SlowlogCommands: []string{"ECHO", "Get"}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { tg.Close() })
	collectorScrape(t, tg) // the baseline

	for _, args := range [][]any{
		{"SET", "k", "v"}, {"SET", "k2", "v"}, // in the default list only
		{"GET", "k"},      // listed, in the default list too
		{"ECHO", "hello"}, // listed, not in the default list
	} {
		if err := c.Do(ctx, args...).Err(); err != nil {
			t.Fatalf("%v: %v", args, err)
		}
	}
	sc := collectorScrape(t, tg)
	want := map[string]float64{"echo": 1, "get": 1, "other": 2}
	if got := byLabel(t, sc, "redis_slowlog_entries_total", "cmd"); !maps.Equal(got, want) {
		t.Errorf("redis_slowlog_entries_total = %v, want %v", got, want)
	}
}

// TestSlowlogCommandsValidation: an entry that is not a command name is
// refused with the field and the value, whatever its case.
func TestSlowlogCommandsValidation(t *testing.T) {
	if err := ValidateSlowlogCommands([]string{"get", "JSON.GET", "client|list", "my-cmd_2"}); err != nil {
		t.Errorf("valid names refused: %v", err)
	}
	if err := ValidateSlowlogCommands(nil); err != nil {
		t.Errorf("no list refused: %v", err)
	}
	for _, bad := range []string{"", "get key", "del\n", "cmd/x", `ev"al`, "zädd"} {
		err := ValidateSlowlogCommands([]string{"get", bad})
		if err == nil {
			t.Errorf("%q accepted", bad)
			continue
		}
		if msg := err.Error(); !strings.Contains(msg, "slowlog_commands[1]") || !strings.Contains(msg, fmt.Sprintf("%q", bad)) {
			t.Errorf("%q: error %q does not name the field and the value", bad, msg)
		}
	}
}
