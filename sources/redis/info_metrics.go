package redis

import (
	"slices"
	"strconv"
	"strings"
	"sync"
	"unicode/utf8"

	"github.com/redwire/redwire/sample"
)

// EmitInfo adds every sample derived from an INFO reply to sc.
//
// Names, types and labels follow oliver006/redis_exporter wherever it
// exports the field, so dashboards and alerts written for it keep working.
// A numeric field it does not export becomes a gauge named redis_<field>;
// other non-numeric fields are dropped. Sub-fields ("calls=3,usec=9") are
// read by key, never by position, because Redis and Valkey add keys
// between releases.
//
// Invariant: one scrape holds at most one sample per series. INFO never
// repeats a field, but a proxy or fork that did would otherwise make the
// receiver reject the whole batch as duplicate samples; the first value wins.
func EmitInfo(sc *sample.Scrape, info *Info) {
	if sc == nil || info == nil {
		return
	}
	// Most fields make one sample, a commandstats or latencystats line four
	// or five: room for two per field saves regrowing on every scrape.
	n := 0
	for _, s := range info.Sections {
		n += len(s.Fields)
	}
	if cap(sc.Samples)-len(sc.Samples) < n { // a cached scrape starts with room for the last one's
		sc.Samples = slices.Grow(sc.Samples, 2*n)
	}
	seen, _ := seenPool.Get().(map[infoSeries]struct{})
	if seen == nil {
		seen = make(map[infoSeries]struct{}, 2*n)
	}
	defer func() {
		clear(seen)
		seenPool.Put(seen)
	}()
	e := infoEmitter{sc: sc, seen: seen}
	var latency []Field
	for _, s := range info.Sections {
		switch s.Name {
		case "commandstats":
			for _, f := range s.Fields {
				e.commandStat(f)
			}
		case "errorstats":
			for _, f := range s.Fields {
				e.errorStat(f)
			}
		case "latencystats":
			// Needs calls and usec from commandstats, which may come later.
			latency = append(latency, s.Fields...)
		case "keyspace":
			for _, f := range s.Fields {
				e.keyspace(f)
			}
		case "cluster info":
			// Valkey 9.1 repeats CLUSTER INFO here; redis_exporter skips it.
		default:
			for _, f := range s.Fields {
				e.field(s.Name, f)
			}
		}
	}
	for _, f := range latency {
		e.latencyStat(f)
	}
	e.identity()
}

// seenPool recycles the per-scrape set of emitted series: a map of a few
// hundred entries per scrape of every target is otherwise the largest
// single allocation of a scrape.
var seenPool sync.Pool

// infoSummaryType is the remote-write type of redis_latency_percentiles_usec,
// a Prometheus summary in redis_exporter.
const infoSummaryType = sample.Summary

const (
	infoHelpLatency = "Server-side latency percentiles per command in microseconds (INFO latencystats); quantile is the percentile."
	infoHelpGeneric = "Redis INFO field of the same name, as the server reports it (no redis_exporter equivalent)."
)

// infoDerivedNames are families built by the code below rather than from
// one field each, plus those the target adds itself. A field whose generic
// name collides with one (say "up:1") would otherwise add an unlabelled
// series to a family with labels, or a second redis_up.
var infoDerivedNames = map[string]bool{
	"redis_up": true, "redis_exporter_last_scrape_duration_seconds": true,
	"redis_commands_total": true, "redis_commands_duration_seconds_total": true,
	"redis_commands_rejected_calls_total": true, "redis_commands_failed_calls_total": true,
	"redis_errors_total": true, "redis_latency_percentiles_usec": true,
	"redis_latency_percentiles_usec_sum": true, "redis_latency_percentiles_usec_count": true,
	"redis_db_keys": true, "redis_db_keys_expiring": true, "redis_db_avg_ttl_seconds": true,
	"redis_db_keys_cached": true, "redis_db_keys_with_expiring_items": true,
	"redis_connected_slave_offset_bytes": true, "redis_connected_slave_lag_seconds": true,
	"redis_master_link_up": true, "redis_master_last_io_seconds_ago": true,
	"redis_master_sync_in_progress": true, "redis_slave_repl_offset": true,
	"redis_instance_info": true, "redis_slave_info": true, "redis_start_time_seconds": true,
	"redis_latest_fork_seconds": true, "redis_active_time_io_thread_seconds_total": true,
	"redis_tls_certificate_info": true,
}

// infoSeries identifies a series within one scrape: the family and the
// values of its labels (fixed per family, at most three outside
// instance_info).
type infoSeries struct{ name, a, b, c string }

// cmdTotals are a command's calls and usec from commandstats, kept for the
// _count and _sum of its latency summary.
type cmdTotals struct{ calls, usec float64 }

type infoEmitter struct {
	sc   *sample.Scrape
	seen map[infoSeries]struct{}
	cmds map[string]cmdTotals // made on the first complete commandstats line

	masterHost, masterPort string // as last seen, for replica-side labels
	id                     [len(infoLabelKeys)]string
	serverMode             string
	slaveOf                [3]string // master_host, master_port, slave_read_only
	hasID                  bool
}

// add emits one sample unless its series was already emitted.
func (e *infoEmitter) add(name string, typ sample.Type, help string, v float64, kv ...string) {
	if len(kv) > 6 {
		panic("redis: infoSeries keys at most three labels; " + name + " has more")
	}
	k := infoSeries{name: name}
	for i := 1; i < len(kv); i += 2 {
		kv[i] = validUTF8(kv[i])
		switch i {
		case 1:
			k.a = kv[i]
		case 3:
			k.b = kv[i]
		case 5:
			k.c = kv[i]
		}
	}
	if _, dup := e.seen[k]; dup {
		return
	}
	e.seen[k] = struct{}{}
	e.sc.Add(name, typ, help, v, kv...)
}

// validUTF8 repairs a label value taken from the reply: receivers reject a
// whole request over one invalid label value.
func validUTF8(s string) string {
	if utf8.ValidString(s) {
		return s
	}
	return strings.ToValidUTF8(s, "\uFFFD")
}

// field maps one "key:value" field of a section EmitInfo has no special
// handling for.
func (e *infoEmitter) field(section string, f Field) {
	e.remember(f)
	if section == "replication" && e.replication(f) {
		return
	}
	switch {
	case f.Key == "uptime_in_seconds":
		if v, ok := parseInfoNumber(f.Value); ok {
			e.add("redis_start_time_seconds", sample.Gauge, "Start time of the Redis process, seconds since the Unix epoch.",
				float64(e.sc.T/1000)-v)
		}
	case f.Key == "latest_fork_usec": // redis_exporter converts to seconds
		if v, ok := parseInfoNumber(f.Value); ok {
			e.add("redis_latest_fork_seconds", sample.Gauge, "Duration of the latest fork, in seconds.", v/1e6)
		}
		return
	case strings.HasPrefix(f.Key, "used_active_time_io_thread_"):
		thread := f.Key[len("used_active_time_io_thread_"):]
		if v, ok := parseInfoNumber(f.Value); ok && isInfoIndex(thread) {
			e.add("redis_active_time_io_thread_seconds_total", sample.Counter, "Active time of each I/O thread, in seconds.",
				v, "thread", thread)
		}
		return
	case section == "tls" && strings.HasPrefix(f.Key, "tls_") && strings.HasSuffix(f.Key, "_cert_serial"):
		// Cut in turn: in "tls_cert_serial" prefix and suffix overlap.
		cert, ok := strings.CutSuffix(f.Key[len("tls_"):], "_cert_serial")
		if ok && cert != "" && f.Value != "" {
			e.add("redis_tls_certificate_info", sample.Gauge, "Serial of each configured TLS certificate, as a label; always 1.",
				1, "certificate", cert, "serial", f.Value)
		}
		return
	}
	if m, ok := infoMetrics[f.Key]; ok {
		if v, ok := parseInfoStatus(f.Value); ok {
			e.add(m.name, m.typ, m.help, v)
		}
		return
	}
	if isInfoIdentifier(f.Key) {
		return
	}
	v, ok := parseInfoNumber(f.Value)
	if !ok {
		return
	}
	if name := genericInfoName(f.Key); !infoDerivedNames[name] {
		e.add(name, sample.Gauge, infoHelpGeneric, v)
	}
}

// replication handles the replication fields redis_exporter turns into
// labelled series, and reports whether f was one of them. KeyDB's
// multi-master replicas number their masters (master_1_link_status).
func (e *infoEmitter) replication(f Field) bool {
	switch {
	case masterField(f.Key, "link_status"):
		up := 0.0
		if f.Value == "up" {
			up = 1
		}
		e.add("redis_master_link_up", sample.Gauge, "Whether the replica's link to its master is up (1) or not (0).",
			up, "master_host", e.masterHost, "master_port", e.masterPort)
	case masterField(f.Key, "last_io_seconds_ago"):
		e.masterGauge("redis_master_last_io_seconds_ago", "Seconds since the replica last heard from its master.", f.Value)
	case masterField(f.Key, "sync_in_progress"):
		e.masterGauge("redis_master_sync_in_progress", "Whether a full sync from the master is in progress.", f.Value)
	case f.Key == "slave_repl_offset":
		e.masterGauge("redis_slave_repl_offset", "Replication offset of this replica.", f.Value)
	case strings.HasPrefix(f.Key, "slave") && isInfoIndex(f.Key[len("slave"):]):
		e.connectedSlave(parseSlave(f.Value))
	default:
		return false
	}
	return true
}

func (e *infoEmitter) masterGauge(name, help, value string) {
	if v, ok := parseInfoNumber(value); ok {
		e.add(name, sample.Gauge, help, v, "master_host", e.masterHost, "master_port", e.masterPort)
	}
}

// connectedSlave keeps slave_state as a label, as redis_exporter does, so a
// replica changing state starts a new series; parity beats purity here.
func (e *infoEmitter) connectedSlave(st slaveStats) {
	if !st.offset.ok {
		return
	}
	e.add("redis_connected_slave_offset_bytes", sample.Gauge, "Replication offset acknowledged by each connected replica.",
		st.offset.v, "slave_ip", st.ip, "slave_port", st.port, "slave_state", st.state)
	if st.lag.ok {
		e.add("redis_connected_slave_lag_seconds", sample.Gauge, "Seconds since each connected replica last acknowledged.",
			st.lag.v, "slave_ip", st.ip, "slave_port", st.port, "slave_state", st.state)
	}
}

// commandStat maps a commandstats line. The cmd label is the rest of the
// key, subcommands included ("client|list"), as redis_exporter has it.
func (e *infoEmitter) commandStat(f Field) {
	cmd, ok := strings.CutPrefix(f.Key, "cmdstat_")
	if !ok || cmd == "" {
		return
	}
	st := parseCommandStats(f.Value)
	if st.calls.ok {
		e.add("redis_commands_total", sample.Counter, "Calls per command (INFO commandstats).", st.calls.v, "cmd", cmd)
	}
	if st.usec.ok {
		e.add("redis_commands_duration_seconds_total", sample.Counter, "Time spent executing each command, in seconds.",
			st.usec.v/1e6, "cmd", cmd)
	}
	if st.rejected.ok {
		e.add("redis_commands_rejected_calls_total", sample.Counter, "Calls per command rejected before execution.",
			st.rejected.v, "cmd", cmd)
	}
	if st.failed.ok {
		e.add("redis_commands_failed_calls_total", sample.Counter, "Calls per command that failed during execution.",
			st.failed.v, "cmd", cmd)
	}
	if st.calls.ok && st.usec.ok {
		if e.cmds == nil {
			e.cmds = make(map[string]cmdTotals, 64)
		}
		if _, dup := e.cmds[cmd]; !dup {
			e.cmds[cmd] = cmdTotals{calls: st.calls.v, usec: st.usec.v}
		}
	}
}

// errorStat maps "errorstat_ERR:count=3".
func (e *infoEmitter) errorStat(f Field) {
	prefix, ok := strings.CutPrefix(f.Key, "errorstat_")
	if !ok || prefix == "" {
		return
	}
	for rest := f.Value; rest != ""; {
		var k, v string
		k, v, rest = nextInfoKV(rest)
		if n, ok := parseInfoNumber(v); ok && k == "count" {
			e.add("redis_errors_total", sample.Counter, "Error replies per error prefix (INFO errorstats).", n, "err", prefix)
		}
	}
}

// latencyStat maps "latency_percentiles_usec_get:p50=9.023,p99=13.055,
// p99.9=13.055" to a summary whose quantile label is the percentile (not a
// 0..1 quantile: redis_exporter's choice) and whose _sum and _count are the
// command's usec and calls, as in redis_exporter. A command missing from
// commandstats gets no summary.
func (e *infoEmitter) latencyStat(f Field) {
	cmd, ok := strings.CutPrefix(f.Key, "latency_percentiles_usec_")
	if !ok || cmd == "" {
		return
	}
	totals, ok := e.cmds[cmd]
	if !ok {
		return
	}
	emitted := false
	for rest := f.Value; rest != ""; {
		var k, v string
		k, v, rest = nextInfoKV(rest)
		pct, ok := strings.CutPrefix(k, "p")
		if !ok {
			continue
		}
		q, ok := quantileLabel(pct)
		if !ok {
			continue
		}
		if n, ok := parseInfoNumber(v); ok {
			e.add("redis_latency_percentiles_usec", infoSummaryType, infoHelpLatency, n, "cmd", cmd, "quantile", q)
			emitted = true
		}
	}
	if emitted {
		e.add("redis_latency_percentiles_usec_sum", infoSummaryType, infoHelpLatency, totals.usec, "cmd", cmd)
		e.add("redis_latency_percentiles_usec_count", infoSummaryType, infoHelpLatency, totals.calls, "cmd", cmd)
	}
}

// quantileLabel renders a percentile the way Prometheus 3 stores a scraped
// summary's quantile label (floats with at least one decimal: "50.0",
// "99.9"), so series line up with those of a scraped redis_exporter.
func quantileLabel(pct string) (string, bool) {
	switch pct { // what Redis sends by default; no allocation
	case "50":
		return "50.0", true
	case "99":
		return "99.0", true
	case "99.9":
		return "99.9", true
	}
	v, ok := parseInfoNumber(pct)
	if !ok {
		return "", false
	}
	s := strconv.FormatFloat(v, 'g', -1, 64)
	if !strings.ContainsAny(s, ".e") {
		s += ".0"
	}
	return s, true
}

// keyspace maps a dbN line. keys and expires are required, as in
// redis_exporter; each optional sub-field is skipped alone when unreadable.
func (e *infoEmitter) keyspace(f Field) {
	if !strings.HasPrefix(f.Key, "db") || !isInfoIndex(f.Key[len("db"):]) {
		return
	}
	st := parseKeyspace(f.Value)
	if !st.keys.ok || !st.expires.ok {
		return
	}
	db := f.Key
	e.add("redis_db_keys", sample.Gauge, "Keys per database.", st.keys.v, "db", db)
	e.add("redis_db_keys_expiring", sample.Gauge, "Keys with an expiry per database.", st.expires.v, "db", db)
	if st.avgTTL.ok {
		e.add("redis_db_avg_ttl_seconds", sample.Gauge, "Average TTL of expiring keys per database, in seconds (sampled).",
			st.avgTTL.v/1000, "db", db)
	}
	if st.cached.ok {
		e.add("redis_db_keys_cached", sample.Gauge, "Keys cached in memory per database (KeyDB).", st.cached.v, "db", db)
	}
	if st.subexpiry.ok {
		e.add("redis_db_keys_with_expiring_items", sample.Gauge, "Keys with expiring sub-items (hash fields) per database.",
			st.subexpiry.v, "db", db)
	}
}

// infoLabelKeys are the INFO fields that label redis_instance_info, under
// their own names as in redis_exporter. The Valkey ones are absent on
// Redis, and the label builder drops empty values, so they stay off there.
var infoLabelKeys = [...]string{
	"role", "redis_version", "redis_build_id", "redis_mode", "os", "maxmemory_policy", "tcp_port",
	"run_id", "process_id", "master_replid", "valkey_version", "valkey_release_stage", "availability_zone",
}

// remember keeps the identity fields and the master's address, which
// redis_exporter takes from whichever section holds them.
func (e *infoEmitter) remember(f Field) {
	switch {
	case masterField(f.Key, "host"):
		e.masterHost = f.Value
	case masterField(f.Key, "port"):
		e.masterPort = f.Value
	}
	switch f.Key {
	case "server_mode": // Valkey's redis_mode
		e.serverMode = f.Value
	case "master_host":
		e.slaveOf[0] = f.Value
	case "master_port":
		e.slaveOf[1] = f.Value
	case "slave_read_only":
		e.slaveOf[2] = f.Value
	}
	for i, k := range infoLabelKeys {
		if f.Key == k {
			if e.id[i] == "" {
				e.id[i] = f.Value
			}
			e.hasID = true
			return
		}
	}
}

// identity emits redis_instance_info and, on replicas, redis_slave_info.
func (e *infoEmitter) identity() {
	if !e.hasID {
		return
	}
	var kv [2 * len(infoLabelKeys)]string
	for i, k := range infoLabelKeys {
		kv[2*i], kv[2*i+1] = k, validUTF8(e.id[i])
	}
	if e.id[3] == "" { // redis_mode
		kv[7] = validUTF8(e.serverMode)
	}
	e.sc.Gauge("redis_instance_info", "Identity of the Redis instance as labels; always 1.", 1, kv[:]...)
	if e.id[0] == "slave" {
		e.add("redis_slave_info", sample.Gauge, "Master of this replica and whether it is read-only, as labels; always 1.",
			1, "master_host", e.slaveOf[0], "master_port", e.slaveOf[1], "read_only", e.slaveOf[2])
	}
}

// masterField reports whether key is master_<suffix> or KeyDB's
// master_<n>_<suffix>.
func masterField(key, suffix string) bool {
	rest, ok := strings.CutPrefix(key, "master_")
	if !ok {
		return false
	}
	if rest == suffix {
		return true
	}
	n, s, ok := strings.Cut(rest, "_")
	return ok && isInfoIndex(n) && s == suffix
}

// isInfoIdentifier reports fields that are names, not quantities: a build
// id or replication id that happens to be all digits must not turn into a
// gauge that appears and vanishes with the digits.
func isInfoIdentifier(key string) bool {
	switch key {
	case "redis_git_sha1", "redis_build_id", "run_id", "master_replid", "master_replid2", "tcp_port":
		return true
	}
	return masterField(key, "host") || masterField(key, "port")
}

// genericInfoName is redis_<key> with every byte outside [a-zA-Z0-9_]
// replaced by '_'; the prefix makes it a valid name whatever the key.
func genericInfoName(key string) string {
	// redis_git_dirty is redis_git_dirty, not redis_redis_git_dirty.
	key = strings.TrimPrefix(key, "redis_")
	var b strings.Builder
	b.Grow(len("redis_") + len(key))
	b.WriteString("redis_")
	for i := 0; i < len(key); i++ {
		c := key[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_') {
			c = '_'
		}
		b.WriteByte(c)
	}
	return b.String()
}
