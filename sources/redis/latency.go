package redis

import (
	"cmp"
	"context"
	"slices"
	"strconv"

	"github.com/prometheus/prometheus/model/labels"

	"github.com/redwire/redwire/sample"
)

// latencyMonitor reads the two latency views redis_exporter exports:
//
//   - LATENCY LATEST, the latency monitor's newest spike per event
//     (command, fork, aof-fsync, …). It records only what exceeds
//     latency-monitor-threshold, which is 0 (off) by default: the reply is
//     then empty and so is the family.
//   - LATENCY HISTOGRAM (Redis >= 7), a cumulative histogram of every
//     command's latency kept by the server itself, so it sees every call,
//     not just the slow ones. Older servers refuse it, once.
type latencyMonitor struct{}

// histogramType is the remote-write type of every series of a classic
// histogram (_bucket, _sum, _count), as Prometheus records a scraped one.
const histogramType = sample.Histogram

func (latencyMonitor) collect(ctx context.Context, s *session, sc *sample.Scrape) {
	if reply, ok := s.do(ctx, "LATENCY", "LATEST"); ok {
		emitLatencyLatest(sc, reply)
	}
	if reply, ok := s.do(ctx, "LATENCY", "HISTOGRAM"); ok {
		emitLatencyHistograms(sc, s.info, reply)
	}
}

// emitLatencyLatest maps LATENCY LATEST. Each event is an array without
// keys: name, unix time of the latest spike, its latency and the all-time
// maximum in milliseconds (Valkey 8.1 appends a sum and a count).
func emitLatencyLatest(sc *sample.Scrape, reply any) {
	list, _ := reply.([]any)
	for _, item := range list {
		f, _ := item.([]any)
		if len(f) < 3 {
			continue
		}
		event, ok1 := f[0].(string)
		at, ok2 := f[1].(int64)
		ms, ok3 := f[2].(int64)
		if !ok1 || !ok2 || !ok3 || event == "" {
			continue
		}
		event = validUTF8(event)
		sc.Gauge("redis_latency_spike_last", "Unix time of the latest latency spike per event (LATENCY LATEST).",
			float64(at), "event_name", event)
		sc.Gauge("redis_latency_spike_duration_seconds", "Duration of the latest latency spike per event, in seconds (LATENCY LATEST).",
			float64(ms)/1e3, "event_name", event)
	}
}

const latencyHelpHistogram = "Server-side latency histogram per command in microseconds (LATENCY HISTOGRAM); _sum is the command's usec from commandstats."

// emitLatencyHistograms maps LATENCY HISTOGRAM, a map from command name
// to a map with "calls" and "histogram_usec" (itself a map from bucket
// upper bound in microseconds to the cumulative count). RESP2 sends maps
// as flat arrays, RESP3 as maps; both are read by key.
//
// As in redis_exporter, _sum comes from INFO commandstats (the histogram
// has none) and the +Inf bucket and _count are the calls. The exporter
// adds up every commandstats entry whose name starts with the command
// (get also counts getdel, getex, …); redwire takes the command's own.
func emitLatencyHistograms(sc *sample.Scrape, info *Info, reply any) {
	cmds, _ := respPairs(reply)
	for _, c := range cmds {
		cmd, ok := c.k.(string)
		if !ok || cmd == "" {
			continue
		}
		fields, _ := respPairs(c.v)
		var calls int64
		var hasCalls bool
		var buckets []respPair
		for _, f := range fields {
			switch key, _ := f.k.(string); key {
			case "calls":
				calls, hasCalls = f.v.(int64)
			case "histogram_usec":
				buckets, _ = respPairs(f.v)
			}
		}
		if !hasCalls {
			continue
		}
		type bucket struct{ le, n float64 }
		bs := make([]bucket, 0, len(buckets))
		for _, b := range buckets {
			le, ok1 := b.k.(int64)
			n, ok2 := b.v.(int64)
			if ok1 && ok2 {
				bs = append(bs, bucket{float64(le), float64(n)})
			}
		}
		slices.SortFunc(bs, func(a, b bucket) int { return cmp.Compare(a.le, b.le) })
		cmd = validUTF8(cmd)
		// Cumulative counts never decrease, and +Inf holds them all; a
		// reply read while calls were being added cannot be allowed to
		// break either (histogram_quantile would return nonsense).
		total := 0.0
		for _, b := range bs {
			total = max(total, b.n)
			sc.Add("redis_commands_latencies_usec_bucket", histogramType, latencyHelpHistogram, total,
				"cmd", cmd, "le", labels.FormatOpenMetricsFloat(b.le))
		}
		total = max(total, float64(calls))
		sc.Add("redis_commands_latencies_usec_bucket", histogramType, latencyHelpHistogram, total, "cmd", cmd, "le", "+Inf")
		sc.Add("redis_commands_latencies_usec_sum", histogramType, latencyHelpHistogram, commandUsec(info, cmd), "cmd", cmd)
		sc.Add("redis_commands_latencies_usec_count", histogramType, latencyHelpHistogram, total, "cmd", cmd)
	}
}

// commandUsec is the usec of a "cmdstat_<cmd>:calls=…,usec=…" line, 0 if
// there is none (the command first ran after INFO was read).
func commandUsec(info *Info, cmd string) float64 {
	for rest := get(info, "commandstats", "cmdstat_"+cmd); rest != ""; {
		var k, v string
		k, v, rest = nextInfoKV(rest)
		if n, ok := parseInfoNumber(v); ok && k == "usec" {
			return n
		}
	}
	return 0
}

// respPair is one key and value of a map reply.
type respPair struct{ k, v any }

// respPairs reads a map reply: a RESP3 map, or the flat key, value, key,
// value array RESP2 sends instead. ok is false for anything else.
func respPairs(reply any) (pairs []respPair, ok bool) {
	switch r := reply.(type) {
	case []any:
		if len(r)%2 != 0 {
			return nil, false
		}
		pairs = make([]respPair, 0, len(r)/2)
		for i := 0; i < len(r); i += 2 {
			pairs = append(pairs, respPair{r[i], r[i+1]})
		}
		return pairs, true
	case map[any]any:
		pairs = make([]respPair, 0, len(r))
		for k, v := range r {
			pairs = append(pairs, respPair{k, v})
		}
		return pairs, true
	}
	return nil, false
}

// respInt reads an integer reply; it takes session.do's results as they
// come. Servers and proxies that send a number as a bulk string are
// accepted too.
func respInt(reply any, ok bool) (int64, bool) {
	if !ok {
		return 0, false
	}
	switch r := reply.(type) {
	case int64:
		return r, true
	case string:
		n, err := strconv.ParseInt(r, 10, 64)
		return n, err == nil
	}
	return 0, false
}
