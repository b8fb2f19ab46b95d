package sample

import (
	"testing"
	"time"
	"unsafe"

	"github.com/prometheus/prometheus/model/labels"
)

// sharesData reports whether two label sets share their memory: what the
// cache is for.
func sharesData(a, b labels.Labels) bool {
	var x, y string
	a.Range(func(l labels.Label) { x = l.Value })
	b.Range(func(l labels.Label) { y = l.Value })
	return unsafe.StringData(x) == unsafe.StringData(y)
}

func TestLabelCache(t *testing.T) {
	base := labels.FromStrings("instance", "a:6379", "job", "redis")
	var c LabelCache
	scrape := func(base labels.Labels, cmds ...string) Batch {
		sc := c.NewScrape(time.Unix(1, 0), base)
		sc.Gauge("redis_up", "up", 1)
		for _, cmd := range cmds {
			sc.Counter("redis_commands_total", "calls", 1, "cmd", cmd)
		}
		sc.Gauge("redis_info", "info", 1, "instance", "inner", "role", "master") // collides with a base label
		return sc.Batch()
	}
	first := scrape(base, "get", "set")
	// Every set is what an uncached scrape builds.
	plain := NewScrape(time.Unix(1, 0), base)
	plain.Gauge("redis_up", "up", 1)
	plain.Counter("redis_commands_total", "calls", 1, "cmd", "get")
	plain.Counter("redis_commands_total", "calls", 1, "cmd", "set")
	plain.Gauge("redis_info", "info", 1, "instance", "inner", "role", "master")
	for i, s := range plain.Batch().Samples {
		if !labels.Equal(s.Labels, first.Samples[i].Labels) {
			t.Fatalf("sample %d: cached %v, built %v", i, first.Samples[i].Labels, s.Labels)
		}
	}
	second := scrape(base, "get", "set")
	for i := range second.Samples {
		if !sharesData(first.Samples[i].Labels, second.Samples[i].Labels) {
			t.Errorf("sample %d: the second scrape built %v again", i, second.Samples[i].Labels)
		}
	}
	// Series that stop are dropped once they are as many as the live ones.
	scrape(base, "get", "set", "del", "incr", "hget", "hset")
	for range 3 {
		scrape(base)
	}
	if n, live := len(c.sets), 2; n > 2*live {
		t.Errorf("%d sets cached for %d live series", n, live)
	}
	// Another base: nothing of the old one is reused.
	other := labels.FromStrings("instance", "b:6379", "job", "redis")
	b := scrape(other, "get")
	if got := b.Samples[1].Labels.Get("instance"); got != "b:6379" {
		t.Errorf("after a base change: instance=%q", got)
	}
}

// TestLabelCacheKeys checks that sets differing only in how the same bytes
// split into name and values, or in an empty value, are told apart, and
// that a set with an empty value is still served from the cache.
func TestLabelCacheKeys(t *testing.T) {
	base := labels.FromStrings("instance", "a:6379", "job", "redis")
	var c LabelCache
	for round := range 3 {
		sc := c.NewScrape(time.Unix(int64(round+1), 0), base)
		sc.Gauge("m", "h", 1, "a", "bc")
		sc.Gauge("m", "h", 1, "ab", "c")
		sc.Gauge("m", "h", 1, "a", "", "b", "x")
		sc.Gauge("m", "h", 1, "a", "y", "b", "x")
		got := sc.Batch()
		want := []string{`{__name__="m", a="bc", instance="a:6379", job="redis"}`, `{__name__="m", ab="c", instance="a:6379", job="redis"}`,
			`{__name__="m", b="x", instance="a:6379", job="redis"}`, `{__name__="m", a="y", b="x", instance="a:6379", job="redis"}`}
		for i, s := range got.Samples {
			if s.Labels.String() != want[i] {
				t.Fatalf("round %d sample %d: %s, want %s", round, i, s.Labels, want[i])
			}
		}
	}
	if len(c.sets) != 4 {
		t.Errorf("%d sets cached, want 4", len(c.sets))
	}
}
