package remotewrite

import (
	"context"
	"fmt"
	"net/url"
	"strconv"
	"testing"
	"time"

	"github.com/redwire/redwire/internal/harness"
	"github.com/redwire/redwire/sources/redis"
)

// TestNativeHistogramsAgreeWithClassicInPrometheus3: a real Redis's
// LATENCY HISTOGRAM, scraped once, is sent to a real Prometheus 3.x twice
// over remote write 2.0: classic (the _bucket series) and native (one
// histogram series per command). Prometheus stores the native ones as
// histograms, and histogram_quantile over each agrees within the
// buckets' resolution, a factor of 2.
func TestNativeHistogramsAgreeWithClassicInPrometheus3(t *testing.T) {
	ctx := context.Background()
	r := harness.StartRedis(t)
	// Latencies of several sizes: quick SETs and GETs, slower KEYS and
	// SORTs over thousands of keys.
	c := r.Client()
	for round := range 4 {
		pipe := c.Pipeline()
		for i := range 2000 {
			k := fmt.Sprintf("k%d:%d", round, i)
			pipe.Set(ctx, k, i, 0)
			pipe.Get(ctx, k)
			pipe.RPush(ctx, "list", i)
		}
		if _, err := pipe.Exec(ctx); err != nil {
			t.Fatal(err)
		}
		for range 5 {
			if err := c.Keys(ctx, "*").Err(); err != nil {
				t.Fatal(err)
			}
			if err := c.Do(ctx, "SORT", "list").Err(); err != nil {
				t.Fatal(err)
			}
		}
	}
	target, err := redis.NewTarget(redis.TargetConfig{Addr: r.URL()}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer target.Close()
	sc, err := target.Scrape(ctx, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	batch := sc.Batch()
	cmds := map[string]bool{}
	// Each command's observations, and its buckets' cumulative counts.
	counts, cumulative := map[string]float64{}, map[string]map[float64]bool{}
	for _, s := range batch.Samples {
		cmd := s.Labels.Get("cmd")
		switch s.Labels.Get("__name__") {
		case nativeFamily + "_count":
			counts[cmd] = s.V
		case nativeFamily + "_bucket":
			if cumulative[cmd] == nil {
				cumulative[cmd] = map[float64]bool{}
			}
			cumulative[cmd][s.V] = true
		}
	}
	for _, s := range batch.Samples {
		if s.Labels.Get("__name__") == nativeFamily+"_count" {
			cmds[s.Labels.Get("cmd")] = true
		}
	}
	for _, want := range []string{"set", "get", "keys", "sort"} {
		if !cmds[want] {
			t.Fatalf("no latency histogram of %s in the scrape (%v)", want, cmds)
		}
	}

	prom := harness.StartPrometheus3(t)
	u, err := url.Parse(prom.WriteURL())
	if err != nil {
		t.Fatal(err)
	}
	client, err := NewClient(NewEndpointConfig(u), "test")
	if err != nil {
		t.Fatal(err)
	}
	for _, enc := range []*Encoder{{msg: MessageV2}, nativeEncoder()} {
		body, err := enc.Encode(&batch)
		if err != nil {
			t.Fatal(err)
		}
		w, err := client.SendMessage(ctx, MessageV2, body)
		if err != nil {
			t.Fatalf("native %v: %v", enc.native, err)
		}
		st := enc.NativeStats()
		if enc.native && (st.Converted != len(cmds) || st.Split+st.Inexact != 0 || w.Histograms != len(cmds)) {
			t.Fatalf("native: stats %+v, Prometheus wrote %+v; want all %d sets native and written", st, w, len(cmds))
		}
		t.Logf("native %v: %d bytes, Prometheus wrote %+v", enc.native, len(body), w)
	}

	for cmd := range cmds {
		for _, q := range []float64{0.5, 0.9, 0.99} {
			qs := strconv.FormatFloat(q, 'g', -1, 64)
			classic := queryValue(t, prom, fmt.Sprintf(`histogram_quantile(%s, %s_bucket{cmd=%q})`, qs, nativeFamily, cmd))
			native := queryValue(t, prom, fmt.Sprintf(`histogram_quantile(%s, %s{cmd=%q})`, qs, nativeFamily, cmd))
			t.Logf("%s q%s: classic %.3g µs, native %.3g µs", cmd, qs, classic, native)
			if rank := q * counts[cmd]; cumulative[cmd][rank] {
				// The rank falls on a bucket's edge: any value between that
				// bucket's bound and the next non-empty one is the quantile,
				// and classic and native pick different ends.
				continue
			}
			if !(native >= classic/2 && native <= classic*2) {
				t.Errorf("%s q%s: classic %g µs, native %g µs: more than a bucket apart", cmd, qs, classic, native)
			}
		}
		// Count and sum survive as they were.
		for _, f := range []string{"count", "sum"} {
			classic := queryValue(t, prom, fmt.Sprintf(`%s_%s{cmd=%q}`, nativeFamily, f, cmd))
			native := queryValue(t, prom, fmt.Sprintf(`histogram_%s(%s{cmd=%q})`, f, nativeFamily, cmd))
			if classic != native {
				t.Errorf("%s: _%s %g, histogram_%s %g", cmd, f, classic, f, native)
			}
		}
	}
}

// queryValue is the one value of an instant query, once Prometheus has it.
func queryValue(t *testing.T, prom *harness.Prometheus, q string) float64 {
	t.Helper()
	var v float64
	harness.WaitFor(t, 30*time.Second, q, func() (bool, error) {
		vec, err := prom.Query(context.Background(), q)
		if err != nil || len(vec) != 1 {
			return false, err
		}
		v = vec[0].Value
		return true, nil
	})
	return v
}
