package redis

import (
	"context"
	"errors"
	"strconv"
	"strings"

	goredis "github.com/redis/go-redis/v9"

	"github.com/redwire/redwire/sample"
)

// sentinel reports, on a Redis Sentinel, the masters it watches as
// redis_exporter's redis_sentinel_* families: per master its status, how
// many replicas and sentinels it has and how many of those are up, whether
// the sentinels can authorize a failover (CKQUORUM), and its failover
// settings. On any other server it costs nothing: the check is on INFO.
//
// Labels carry the master's name and its address as the sentinel's INFO
// prints it, ip + ":" + port without brackets, and the address built from
// SENTINEL MASTERS is joined the same way (as redis_exporter does), so
// series from both sources carry the same value even for IPv6. Replies are
// read by field name, RESP2 flat arrays and RESP3 maps alike.
type sentinel struct{}

// sentinelInfoGauges are the numeric fields of INFO sentinel that
// redis_exporter exports unchanged, with its help texts.
var sentinelInfoGauges = [...]struct{ field, help string }{
	{"sentinel_masters", "The number of masters this sentinel is watching."},
	{"sentinel_tilt", "Whether the sentinel is in TILT mode."},
	{"sentinel_running_scripts", "Number of scripts in execution right now."},
	{"sentinel_scripts_queue_length", "Queue of user scripts to execute."},
	{"sentinel_simulate_failure_flags", "Failure simulation flags (SENTINEL SIMULATE-FAILURE)."},
}

// sentinelSettings are the SENTINEL MASTERS fields redis_exporter exports
// per master, and the scale that turns each into the family's unit.
var sentinelSettings = [...]struct {
	field, name, help string
	scale             float64
}{
	{"quorum", "redis_sentinel_master_setting_ckquorum", "The quorum configured for the master.", 1},
	{"failover-timeout", "redis_sentinel_master_setting_failover_timeout", "The failover-timeout configured for the master, in milliseconds.", 1},
	{"parallel-syncs", "redis_sentinel_master_setting_parallel_syncs", "The parallel-syncs configured for the master.", 1},
	{"down-after-milliseconds", "redis_sentinel_master_setting_down_after_milliseconds", "The down-after-milliseconds configured for the master.", 1},
	{"config-epoch", "redis_sentinel_master_config_epoch", "The master's configuration epoch; it grows with every failover.", 1},
	{"last-ok-ping-reply", "redis_sentinel_master_last_ok_ping_reply_seconds", "Seconds since the master last answered a PING correctly.", 1e-3},
}

func (sentinel) collect(ctx context.Context, s *session, sc *sample.Scrape) {
	if !isSentinel(s.info) {
		return
	}
	emitSentinelInfo(sc, s.info)

	reply, ok := s.do(ctx, "SENTINEL", "MASTERS")
	if !ok {
		return
	}
	for _, m := range sentinelMasters(reply) {
		name := m.name
		lv := []string{"master_name", validUTF8(name), "master_address", validUTF8(m.address)}

		if ok, msg, answered := ckquorum(ctx, s, name); answered {
			// The message is a label, as in redis_exporter: it names the
			// number of usable sentinels, so a change starts a new series.
			sc.Gauge("redis_sentinel_master_ckquorum_status", "Whether the sentinels can reach the quorum and authorize a failover of the master (SENTINEL CKQUORUM); message is the sentinel's answer.",
				boolFloat(ok), "master_name", lv[1], "message", validUTF8(msg))
		}
		emitSentinelSettings(sc, m.fields, lv)
		// This sentinel is not among its own peers, and counts as up.
		if peers, ok := s.do(ctx, "SENTINEL", "SENTINELS", name); ok {
			sc.Gauge("redis_sentinel_master_ok_sentinels", "The number of sentinels monitoring the master that are not flagged down, this one included.",
				float64(1+countUp(peers)), lv...)
		}
		if replicas, ok := s.do(ctx, "SENTINEL", "SLAVES", name); ok {
			sc.Gauge("redis_sentinel_master_ok_slaves", "The number of the master's replicas that are not flagged down.",
				float64(countUp(replicas)), lv...)
		}
	}
}

// sentinelMaster is one entry of a SENTINEL MASTERS reply.
type sentinelMaster struct {
	name    string
	address string            // ip + ":" + port, unbracketed as INFO prints it
	fields  map[string]string // the entry's string and integer fields
}

// sentinelMasters reads a SENTINEL MASTERS reply, RESP2 or RESP3. An entry
// without a name, ip or port cannot be labelled and is left out, as is a
// second entry for a name already read (or one that reads the same as a
// label value).
func sentinelMasters(reply any) []sentinelMaster {
	entries, _ := reply.([]any)
	seen := make(map[string]bool, len(entries))
	var out []sentinelMaster
	for _, e := range entries {
		f := respStrings(e)
		name, ip, port := f["name"], f["ip"], f["port"]
		// Names alike once made valid UTF-8 would make one series twice.
		if name == "" || ip == "" || port == "" || seen[validUTF8(name)] {
			continue
		}
		seen[validUTF8(name)] = true
		out = append(out, sentinelMaster{name: name, address: ip + ":" + port, fields: f})
	}
	return out
}

// emitSentinelSettings maps a master's failover settings from its SENTINEL
// MASTERS fields; lv are its master_name and master_address labels.
func emitSentinelSettings(sc *sample.Scrape, fields map[string]string, lv []string) {
	for _, st := range sentinelSettings {
		if v, ok := parseInfoNumber(fields[st.field]); ok {
			sc.Gauge(st.name, st.help, v*st.scale, lv...)
		}
	}
}

// isSentinel tells a Sentinel by INFO: redis_mode, or the sentinel section
// redis_exporter looks for.
func isSentinel(info *Info) bool {
	if get(info, "server", "redis_mode") == "sentinel" {
		return true
	}
	for _, sec := range info.Sections {
		if sec.Name == "sentinel" {
			return true
		}
	}
	return false
}

// emitSentinelInfo maps INFO sentinel: the counters of sentinelInfoGauges,
// and per "masterN:name=…,status=…,address=…,slaves=…,sentinels=…" line
// the master's status and its numbers of replicas and sentinels.
func emitSentinelInfo(sc *sample.Scrape, info *Info) {
	for _, g := range sentinelInfoGauges {
		// EmitInfo turns a numeric field it has no mapping for into
		// redis_<field>, which for these is redis_exporter's name: one
		// series per scrape, whoever emits it.
		name := "redis_" + g.field
		v, ok := parseInfoNumber(get(info, "sentinel", g.field))
		if ok && !hasFamily(sc, name) {
			sc.Gauge(name, g.help, v)
		}
	}
	seen := map[string]bool{}
	for _, sec := range info.Sections {
		if sec.Name != "sentinel" {
			continue
		}
		for _, fl := range sec.Fields {
			if !strings.HasPrefix(fl.Key, "master") || !isInfoIndex(fl.Key[len("master"):]) {
				continue
			}
			var name, status, address, slaves, sentinels string
			for rest := fl.Value; rest != ""; {
				var k, v string
				k, v, rest = nextInfoKV(rest)
				switch k {
				case "name":
					name = v
				case "status":
					status = v
				case "address":
					address = v
				case "slaves":
					slaves = v
				case "sentinels":
					sentinels = v
				}
			}
			if name == "" || seen[validUTF8(name)] { // as in sentinelMasters
				continue
			}
			seen[validUTF8(name)] = true
			lv := []string{"master_name", validUTF8(name), "master_address", validUTF8(address)}
			sc.Gauge("redis_sentinel_master_status", "Whether the sentinel sees the master as ok (1) or not (0); master_status is its word for it (ok, sdown, odown).",
				boolFloat(status == "ok"), lv[0], lv[1], lv[2], lv[3], "master_status", validUTF8(status))
			if v, ok := parseInfoNumber(slaves); ok {
				sc.Gauge("redis_sentinel_master_slaves", "The number of replicas of the master the sentinel knows.", v, lv...)
			}
			if v, ok := parseInfoNumber(sentinels); ok {
				sc.Gauge("redis_sentinel_master_sentinels", "The number of sentinels monitoring the master, this one included.", v, lv...)
			}
		}
	}
}

// ckquorum runs SENTINEL CKQUORUM, whose negative answer is an error reply
// ("NOQUORUM 1 usable Sentinels. …"): unlike session.do it keeps the
// error's text as the answer. answered is false when there is none: the
// command is refused (remembered, as session.do does) or the round trip
// failed, and a timeout must not read as a lost quorum.
func ckquorum(ctx context.Context, s *session, master string) (ok bool, msg string, answered bool) {
	name := commandName([]any{"SENTINEL", "CKQUORUM"})
	if s.optional.refused[name] {
		return false, "", false
	}
	reply, err := s.client.Do(ctx, "SENTINEL", "CKQUORUM", master).Result()
	if err == nil {
		msg, _ = reply.(string)
		return true, msg, true
	}
	if isCommandRefused(err) {
		if s.optional.refused == nil {
			s.optional.refused = make(map[string]bool)
		}
		s.optional.refused[name] = true
		return false, "", false
	}
	var re goredis.Error
	if errors.As(err, &re) {
		return false, re.Error(), true
	}
	return false, "", false
}

// countUp counts the entries of a SENTINEL SENTINELS or SLAVES reply whose
// flags hold neither s_down nor o_down. An entry without flags is not
// counted: nothing says it is up.
func countUp(reply any) int {
	entries, _ := reply.([]any)
	n := 0
	for _, e := range entries {
		flags, ok := respStrings(e)["flags"]
		if !ok {
			continue
		}
		up := true
		for _, fl := range strings.Split(flags, ",") {
			if fl == "s_down" || fl == "o_down" {
				up = false
			}
		}
		if up {
			n++
		}
	}
	return n
}

// respStrings reads a flat key/value reply (or a RESP3 map) whose values
// are strings or integers; other entries are left out.
func respStrings(reply any) map[string]string {
	pairs, _ := respPairs(reply)
	m := make(map[string]string, len(pairs))
	for _, p := range pairs {
		k, ok := p.k.(string)
		if !ok {
			continue
		}
		switch v := p.v.(type) {
		case string:
			m[k] = v
		case int64:
			m[k] = strconv.FormatInt(v, 10)
		}
	}
	return m
}

// hasFamily reports whether sc already holds a sample of family.
func hasFamily(sc *sample.Scrape, family string) bool {
	for _, m := range sc.Metadata {
		if m.Family == family {
			return true
		}
	}
	return false
}
