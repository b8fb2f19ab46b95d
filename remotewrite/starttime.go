package remotewrite

import (
	"cmp"
	"math"
	"slices"

	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/model/value"
)

// Start timestamps (remote write 2.0 Sample.start_timestamp, field 3;
// Histogram.start_timestamp, field 17): when a cumulative series started
// counting, which lets a receiver tell a counter that started between two
// samples from one that did not (Prometheus 3 stores a zero sample there
// with --enable-feature=created-timestamp-zero-ingestion, and reads resets
// from it with use-start-timestamps). The 2.0 encoder always sends it
// where it is known: a receiver that does not use it ignores the field.
//
// Redis counts from its process start, and says how long ago that was:
// INFO's uptime_in_seconds, which redwire emits as redis_uptime_in_seconds.
// So, as nativehist.go derives native histograms, the start is derived at
// encoding time from the samples of one scrape that the batch holds: a
// counting series' sample at T gets the start of its target (label
// instance) found in the redis_uptime_in_seconds sample of that target at
// the same T. A restart (a new run_id) restarts uptime, so the start
// follows restarts by itself, scrape by scrape. With no such uptime sample
// in the batch (a batch boundary cut the scrape, an INFO that failed, a
// stale marker), the start stays 0, unknown: it is never guessed.
//
// The start is T - (uptime+1) s, the earliest the process may have started:
// uptime is whole seconds, rounded down, and read a little after T. So it
// is always before T, and never after the true start; taken as T - uptime
// s it would sometimes fall after it, by up to a second, and a receiver
// comparing it with the sample before could read a reset that did not
// happen (Prometheus' isStartTimestampReset: a start after the previous
// sample is a reset).
//
// Which series count from the process start is known by name, not by
// type. Neither what the batch says nor a name's _total is reliable:
// the family metadata rides along once a minute only (buffer/memory.go),
// redwire counts some counters itself from its own start
// (redis_restarts_total, redis_slowlog_entries_total: sources/redis/
// topology.go, slowlog.go), and a few gauges end in _total as
// redis_exporter names them (redis_rdb_saves_total). processCounters
// lists them; TestProcessCountersCoverRedisCounters checks the list
// against a real Redis' scrape.
//
// CONFIG RESETSTAT zeroes most of them without a restart. Their start then
// stays the process start: the receiver sees the value drop, a reset, as
// it did before start timestamps (a zero sample at the old start is out of
// order and not stored).

// uptimeSeries is the family whose value is the target's uptime, seconds.
const uptimeSeries = "redis_uptime_in_seconds"

// processCounters are the series Redis counts from its process start.
var processCounters = map[string]bool{
	// INFO stats
	"redis_connections_received_total":                      true,
	"redis_commands_processed_total":                        true,
	"redis_rejected_connections_total":                      true,
	"redis_net_input_bytes_total":                           true,
	"redis_net_output_bytes_total":                          true,
	"redis_net_repl_input_bytes_total":                      true,
	"redis_net_repl_output_bytes_total":                     true,
	"redis_expired_subkeys_total":                           true,
	"redis_expired_fields_total":                            true,
	"redis_expired_keys_total":                              true,
	"redis_expired_time_cap_reached_total":                  true,
	"redis_expire_cycle_cpu_time_ms_total":                  true,
	"redis_evicted_keys_total":                              true,
	"redis_evicted_clients_total":                           true,
	"redis_evicted_scripts_total":                           true,
	"redis_eviction_exceeded_time_ms_total":                 true,
	"redis_keyspace_hits_total":                             true,
	"redis_keyspace_misses_total":                           true,
	"redis_unexpected_error_replies":                        true,
	"redis_total_error_replies":                             true,
	"redis_dump_payload_sanitizations":                      true,
	"redis_total_reads_processed":                           true,
	"redis_total_writes_processed":                          true,
	"redis_io_threaded_reads_processed":                     true,
	"redis_io_threaded_writes_processed":                    true,
	"redis_reply_buffer_shrinks_total":                      true,
	"redis_reply_buffer_expands_total":                      true,
	"redis_acl_access_denied_auth_total":                    true,
	"redis_acl_access_denied_cmd_total":                     true,
	"redis_acl_access_denied_key_total":                     true,
	"redis_acl_access_denied_channel_total":                 true,
	"redis_acl_access_denied_tls_cert_total":                true,
	"redis_acl_access_denied_db_total":                      true,
	"redis_client_query_buffer_limit_disconnections_total":  true,
	"redis_client_output_buffer_limit_disconnections_total": true,
	// INFO cpu
	"redis_cpu_sys_seconds_total":              true,
	"redis_cpu_user_seconds_total":             true,
	"redis_cpu_sys_children_seconds_total":     true,
	"redis_cpu_user_children_seconds_total":    true,
	"redis_cpu_sys_main_thread_seconds_total":  true,
	"redis_cpu_user_main_thread_seconds_total": true,
	// KeyDB
	"redis_cached_keys_total":            true,
	"redis_storage_provider_read_hits":   true,
	"redis_storage_provider_read_misses": true,
	// INFO threads, commandstats, errorstats
	"redis_active_time_io_thread_seconds_total": true,
	"redis_commands_total":                      true,
	"redis_commands_duration_seconds_total":     true,
	"redis_commands_rejected_calls_total":       true,
	"redis_commands_failed_calls_total":         true,
	"redis_errors_total":                        true,
	// INFO latencystats: the summary's _sum and _count (its quantiles
	// are not cumulative)
	"redis_latency_percentiles_usec_sum":   true,
	"redis_latency_percentiles_usec_count": true,
	// LATENCY HISTOGRAM, classic (its native series is nativeFamily)
	nativeFamily + "_bucket": true,
	nativeFamily + "_sum":    true,
	nativeFamily + "_count":  true,
	nativeFamily:             true,
}

// scrapeStart is a scrape's time and its target's start, ms.
type scrapeStart struct{ t, start int64 }

// startState is what the start derivation keeps between requests, for
// reuse.
type startState struct {
	byTarget map[string][]scrapeStart // instance -> its scrapes, in time order
	// by series: its target's scrapes, nil if it does not count from the
	// process start. One lookup per series, not per sample.
	series [][]scrapeStart
}

// findStarts finds the targets' starts in the built series' uptime
// samples, and which series count from them.
func (e *Encoder) findStarts() {
	st := &e.st
	if st.byTarget == nil {
		st.byTarget = map[string][]scrapeStart{}
	}
	clear(st.byTarget)
	clear(st.series)
	st.series = st.series[:0]
	for i := range e.series {
		ls := e.series[i].ls
		if ls.Get(model.MetricNameLabel) != uptimeSeries {
			continue
		}
		inst := ls.Get(model.InstanceLabel)
		for _, p := range e.series[i].points { // in time order (build)
			if start := startOf(p); start > 0 {
				st.byTarget[inst] = append(st.byTarget[inst], scrapeStart{p.t, start})
			}
		}
	}
	if len(st.byTarget) == 0 {
		return
	}
	for i := range e.series {
		var ss []scrapeStart
		if ls := e.series[i].ls; processCounters[ls.Get(model.MetricNameLabel)] {
			ss = st.byTarget[ls.Get(model.InstanceLabel)]
		}
		st.series = append(st.series, ss)
	}
}

// startOf is the start an uptime sample tells, in ms; 0 if none.
func startOf(p point) int64 {
	if math.IsNaN(p.v) || p.v < 0 || p.v > math.MaxInt64/2000 {
		return 0 // a stale marker, or nonsense
	}
	return p.t - (int64(p.v)+1)*1000
}

// start is the start of series i's sample at t, in ms; 0: unknown.
func (e *Encoder) start(i int, t int64, v float64) int64 {
	st := &e.st
	if i >= len(st.series) || len(st.series[i]) == 0 || value.IsStaleNaN(v) {
		return 0
	}
	ss := st.series[i]
	k, ok := slices.BinarySearchFunc(ss, t, func(s scrapeStart, t int64) int { return cmp.Compare(s.t, t) })
	if !ok {
		return 0
	}
	return ss[k].start
}
