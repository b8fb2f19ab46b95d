package redis

import (
	"math"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/model/labels"

	"github.com/redwire/redwire/sample"
)

// infoTestTime is the scrape time of every test scrape, so that
// redis_start_time_seconds has a known value.
var infoTestTime = time.Unix(1_800_000_000, 0)

func readCapture(t testing.TB, name string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", "info", name))
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// emitRaw parses raw and emits it into a fresh scrape with the labels a
// target would add.
func emitRaw(t testing.TB, raw string) *sample.Scrape {
	t.Helper()
	info, err := ParseInfo(raw)
	if err != nil {
		t.Fatalf("ParseInfo: %v", err)
	}
	sc := sample.NewScrape(infoTestTime, labels.FromStrings("instance", "redis-1:6379", "job", "redis"))
	EmitInfo(sc, info)
	return sc
}

// find returns the value of the sample of family name whose labels include
// kv, and whether there is exactly one such sample.
func find(sc *sample.Scrape, name string, kv ...string) (float64, bool) {
	var v float64
	n := 0
	for _, s := range sc.Samples {
		if s.Labels.Get(model.MetricNameLabel) != name {
			continue
		}
		match := true
		for i := 0; i < len(kv); i += 2 {
			if s.Labels.Get(kv[i]) != kv[i+1] {
				match = false
				break
			}
		}
		if match {
			v = s.V
			n++
		}
	}
	return v, n == 1
}

func typeOf(sc *sample.Scrape, family string) (sample.Type, bool) {
	for _, m := range sc.Metadata {
		if m.Family == family {
			return m.Type, true
		}
	}
	return 0, false
}

type want struct {
	name string
	kv   []string
	v    float64
}

func w(name string, v float64, kv ...string) want { return want{name: name, kv: kv, v: v} }

func TestEmitInfoCaptures(t *testing.T) {
	now := float64(infoTestTime.Unix())
	tests := []struct {
		file   string
		want   []want
		absent []string
		types  map[string]sample.Type
	}{
		{
			file: "redis-7.0-master.txt",
			want: []want{
				w("redis_db_keys", 61, "db", "db0"),
				w("redis_db_keys", 4, "db", "db3"),
				w("redis_db_keys_expiring", 11, "db", "db0"),
				w("redis_db_avg_ttl_seconds", 3314.123, "db", "db0"),
				w("redis_commands_total", 21, "cmd", "get"),
				w("redis_commands_duration_seconds_total", 0.000189, "cmd", "get"),
				w("redis_commands_total", 2, "cmd", "client|list"),
				w("redis_commands_rejected_calls_total", 1, "cmd", "set"),
				w("redis_commands_failed_calls_total", 1, "cmd", "incr"),
				w("redis_errors_total", 3, "err", "ERR"),
				w("redis_errors_total", 1, "err", "WRONGTYPE"),
				w("redis_latency_percentiles_usec", 13.055, "cmd", "get", "quantile", "99.0"),
				w("redis_latency_percentiles_usec", 9.023, "cmd", "get", "quantile", "50.0"),
				w("redis_latency_percentiles_usec", 50.175, "cmd", "client|list", "quantile", "99.9"),
				w("redis_latency_percentiles_usec_sum", 189, "cmd", "get"),
				w("redis_latency_percentiles_usec_count", 21, "cmd", "get"),
				w("redis_connected_slave_offset_bytes", 2741, "slave_ip", "127.0.0.1", "slave_port", "16380", "slave_state", "online"),
				w("redis_connected_slave_lag_seconds", 0, "slave_ip", "127.0.0.1", "slave_port", "16380", "slave_state", "online"),
				w("redis_connected_clients", 1),
				w("redis_memory_used_bytes", 1336216),
				w("redis_cpu_sys_seconds_total", 0.023309),
				w("redis_uptime_in_seconds", 12),
				w("redis_start_time_seconds", now-12),
				w("redis_rdb_last_bgsave_status", 1),
				w("redis_aof_last_bgrewrite_status", 1),
				w("redis_latest_fork_seconds", 0.00477),
				w("redis_total_error_replies", 4),
				w("redis_replica_resyncs_full", 1),
				w("redis_instantaneous_ops_per_sec", 1), // no redis_exporter name: generic
				w("redis_instance_info", 1, "role", "master", "redis_version", "7.0.15", "redis_build_id", "ae4d7c971a948f0",
					"redis_mode", "standalone", "os", "Linux 6.18.44-fc-v782 x86_64", "maxmemory_policy", "noeviction",
					"tcp_port", "16379", "run_id", "acbf709443c48355b28d56566f8517e072d5a354", "process_id", "7376",
					"master_replid", "93c63760142725a9b5916c895c4e1699075a96f6"),
			},
			absent: []string{"redis_slave_info", "redis_master_link_up", "redis_tcp_port", "redis_run_id", "redis_redis_git_sha1", "redis_redis_git_dirty",
				"redis_latest_fork_usec", "redis_used_memory_human"},
			types: map[string]sample.Type{
				"redis_commands_total": sample.Counter, "redis_errors_total": sample.Counter, "redis_connected_clients": sample.Gauge,
				"redis_cpu_sys_seconds_total": sample.Counter, "redis_latency_percentiles_usec": sample.Summary,
				"redis_instance_info": sample.Gauge, "redis_total_error_replies": sample.Counter, "redis_replica_resyncs_full": sample.Gauge,
				"redis_db_keys": sample.Gauge, "redis_expired_time_cap_reached_total": sample.Counter, "redis_instantaneous_ops_per_sec": sample.Gauge,
			},
		},
		{
			file: "redis-7.0-replica.txt",
			want: []want{
				w("redis_master_link_up", 1, "master_host", "127.0.0.1", "master_port", "16379"),
				w("redis_master_last_io_seconds_ago", 2, "master_host", "127.0.0.1", "master_port", "16379"),
				w("redis_master_sync_in_progress", 0, "master_host", "127.0.0.1", "master_port", "16379"),
				w("redis_slave_repl_offset", 2741, "master_host", "127.0.0.1", "master_port", "16379"),
				w("redis_slave_info", 1, "master_host", "127.0.0.1", "master_port", "16379", "read_only", "1"),
				w("redis_instance_info", 1, "role", "slave", "redis_version", "7.0.15"),
				w("redis_slave_read_repl_offset", 2741),
				w("redis_db_keys", 61, "db", "db0"),
				w("redis_db_avg_ttl_seconds", 0, "db", "db0"),
			},
			absent: []string{"redis_master_port", "redis_master_host", "redis_connected_slave_offset_bytes"},
			types:  map[string]sample.Type{"redis_master_link_up": sample.Gauge, "redis_slave_info": sample.Gauge},
		},
		{
			file: "redis-7.4.5.txt",
			want: []want{
				w("redis_db_keys", 10, "db", "db0"),
				w("redis_db_keys_expiring", 10, "db", "db0"),
				w("redis_db_avg_ttl_seconds", 68250.416, "db", "db0"),
				w("redis_db_keys_with_expiring_items", 0, "db", "db0"),
				w("redis_expired_subkeys_total", 0),
				w("redis_evicted_scripts_total", 0),
				w("redis_aof_current_size_bytes", 2697),
				w("redis_errors_total", 31, "err", "ERR"),
				w("redis_eventloop_cycles", 823770),
				w("redis_latest_fork_seconds", 0.000258),
				w("redis_instance_info", 1, "redis_version", "7.4.5", "role", "master"),
			},
			types: map[string]sample.Type{"redis_expired_subkeys_total": sample.Counter, "redis_eventloop_cycles": sample.Gauge},
		},
		{
			file: "redis-6.2-reconstructed.txt",
			want: []want{
				w("redis_connected_slave_offset_bytes", 0, "slave_ip", "10.1.2.12", "slave_port", "6379", "slave_state", "wait_bgsave"),
				w("redis_connected_slave_lag_seconds", 1, "slave_ip", "10.1.2.11", "slave_port", "6379", "slave_state", "online"),
				w("redis_rdb_last_bgsave_status", 0),
				w("redis_commands_total", 120, "cmd", "client"),
				w("redis_commands_failed_calls_total", 18, "cmd", "eval"),
				w("redis_errors_total", 3, "err", "OOM"),
				w("redis_memory_max_bytes", 8589934592),
				w("redis_db_keys", 7, "db", "db2"),
				w("redis_instance_info", 1, "maxmemory_policy", "allkeys-lru", "redis_version", "6.2.3"),
			},
			absent: []string{"redis_current_fork_perc", "redis_latency_percentiles_usec"},
		},
		{
			file: "redis-6.0.9-telegraf.txt",
			want: []want{
				w("redis_connected_slave_offset_bytes", 0, "slave_ip", "127.0.0.1", "slave_port", "8379", "slave_state", "send_bulk"),
				w("redis_connected_slave_lag_seconds", 1, "slave_port", "8379"),
				w("redis_connected_slave_offset_bytes", 4556468, "slave_port", "7379"),
				w("redis_commands_total", 261265, "cmd", "set"),
				w("redis_commands_duration_seconds_total", 1.634157, "cmd", "set"),
				w("redis_client_longest_output_list", 0),
				w("redis_mem_fragmentation_ratio", 0.81),
				w("redis_db_keys", 2, "db", "db0"),
			},
			absent: []string{"redis_commands_rejected_calls_total"}, // pre-6.2 commandstats
		},
		{
			file: "redis-5.0.7-otel.txt",
			want: []want{
				w("redis_db_keys", 5, "db", "db3"),
				w("redis_db_keys_expiring", 10, "db", "db3"),
				w("redis_db_avg_ttl_seconds", 0.085, "db", "db3"),
				w("redis_commands_rejected_calls_total", 3, "cmd", "ssubscribe"),
				w("redis_cpu_sys_main_thread_seconds_total", 180),
				w("redis_instance_info", 1, "redis_version", "5.0.7", "master_replid", "29fed19c4c45f24e289b2ac7917131fd4a9326e0"),
			},
		},
		{
			file: "redis-4.0.9-netdata.txt",
			want: []want{
				w("redis_client_biggest_input_buf", 0),
				w("redis_memory_used_bytes", 840400),
				w("redis_db_keys", 1, "db", "db0"),
				w("redis_cpu_user_seconds_total", 2.58),
				w("redis_keyspace_hits_total", 98),
				w("redis_instance_info", 1, "redis_version", "4.0.9"),
			},
		},
		{
			file: "valkey-8.0-dev-doc.txt",
			want: []want{
				w("redis_instance_info", 1, "valkey_version", "255.255.255", "redis_mode", "standalone", "redis_version", "7.2.4"),
				w("redis_pubsub_clients", 0),
				w("redis_evicted_scripts_total", 0),
				w("redis_errors_total", 55, "err", "ERR"),
				w("redis_latest_fork_seconds", 0.000832),
			},
			absent: []string{"redis_db_keys", "redis_server_name"},
		},
		{
			file: "valkey-9.1.2-netdata.txt",
			want: []want{
				w("redis_tls_certificate_info", 1, "certificate", "server", "serial", "none"),
				w("redis_tls_certificate_info", 1, "certificate", "ca", "serial", "none"),
				w("redis_tls_server_cert_expires_in_seconds", 0),
				w("redis_expired_fields_total", 0),
				w("redis_acl_access_denied_db_total", 0),
				w("redis_mem_replicas_repl_buffer_bytes", 0),
				w("redis_commands_total", 2, "cmd", "config|get"),
				w("redis_latency_percentiles_usec", 7.007, "cmd", "config|get", "quantile", "99.9"),
				w("redis_latency_percentiles_usec_sum", 8, "cmd", "config|get"),
				w("redis_engines_count", 1),
				w("redis_instance_info", 1, "valkey_version", "9.1.2", "valkey_release_stage", "ga", "redis_mode", "standalone"),
			},
			types: map[string]sample.Type{"redis_expired_fields_total": sample.Counter, "redis_tls_certificate_info": sample.Gauge},
		},
	}
	for _, tt := range tests {
		t.Run(tt.file, func(t *testing.T) {
			sc := emitRaw(t, readCapture(t, tt.file))
			checkScrape(t, sc)
			for _, w := range tt.want {
				got, ok := find(sc, w.name, w.kv...)
				if !ok {
					t.Errorf("%s%v: not exactly one sample", w.name, w.kv)
					continue
				}
				if math.Abs(got-w.v) > 1e-9*math.Max(1, math.Abs(w.v)) {
					t.Errorf("%s%v = %v, want %v", w.name, w.kv, got, w.v)
				}
			}
			for _, name := range tt.absent {
				if _, ok := typeOf(sc, name); ok {
					t.Errorf("%s emitted, want none", name)
				}
			}
			for name, typ := range tt.types {
				if got, ok := typeOf(sc, name); !ok || got != typ {
					t.Errorf("type of %s = %v (found %v), want %v", name, got, ok, typ)
				}
			}
		})
	}
}

// checkScrape asserts what must hold for any scrape, whatever the input:
// valid names, valid UTF-8 label values, numbers that are numbers, one
// sample per series and metadata for every family.
func checkScrape(t testing.TB, sc *sample.Scrape) {
	t.Helper()
	seen := make(map[string]bool, len(sc.Samples))
	for _, s := range sc.Samples {
		name := s.Labels.Get(model.MetricNameLabel)
		if !model.LegacyValidation.IsValidMetricName(name) {
			t.Errorf("invalid metric name %q", name)
		}
		s.Labels.Range(func(l labels.Label) {
			if !utf8.ValidString(l.Value) {
				t.Errorf("%s: label %s not UTF-8: %q", name, l.Name, l.Value)
			}
		})
		if math.IsNaN(s.V) || math.IsInf(s.V, 0) {
			t.Errorf("%s = %v", s.Labels, s.V)
		}
		key := s.Labels.String()
		if seen[key] {
			t.Errorf("duplicate series %s", key)
		}
		seen[key] = true
		if _, ok := typeOf(sc, name); !ok {
			t.Errorf("%s has no metadata", name)
		}
	}
	for _, m := range sc.Metadata {
		if m.Help == "" {
			t.Errorf("%s has no help", m.Family)
		}
	}
}

func TestEmitInfoReorderedSubfields(t *testing.T) {
	// The same lines with their k=v pairs in another order, and with keys
	// Redis may add later: by-key parsing must see no difference.
	a := "# Replication\r\nrole:master\r\nslave0:ip=10.0.0.2,port=6380,state=online,offset=99,lag=2\r\n" +
		"# Commandstats\r\ncmdstat_get:calls=7,usec=70,usec_per_call=10.00,rejected_calls=1,failed_calls=2\r\n" +
		"# Latencystats\r\nlatency_percentiles_usec_get:p50=1.003,p99=2.007,p99.9=3.007\r\n" +
		"# Keyspace\r\ndb0:keys=5,expires=2,avg_ttl=4000\r\n"
	b := "# Replication\nrole:master\nslave0:lag=2,offset=99,future=1,state=online,port=6380,ip=10.0.0.2\n" +
		"# Commandstats\ncmdstat_get:failed_calls=2,usec_per_call=10.00,rejected_calls=1,usec=70,new_thing=3,calls=7\n" +
		"# Latencystats\nlatency_percentiles_usec_get:p99.9=3.007,p50=1.003,p99=2.007\n" +
		"# Keyspace\ndb0:avg_ttl=4000,subexpiry=1,expires=2,keys=5\n"
	got, ref := emitRaw(t, b), emitRaw(t, a)
	checkScrape(t, got)
	for _, s := range ref.Samples {
		kv := []string{}
		s.Labels.Range(func(l labels.Label) {
			if l.Name != model.MetricNameLabel {
				kv = append(kv, l.Name, l.Value)
			}
		})
		v, ok := find(got, s.Labels.Get(model.MetricNameLabel), kv...)
		if !ok || v != s.V {
			t.Errorf("%s: reordered gives %v (found %v), in order %v", s.Labels, v, ok, s.V)
		}
	}
	if v, ok := find(got, "redis_db_keys_with_expiring_items", "db", "db0"); !ok || v != 1 {
		t.Errorf("subexpiry = %v (found %v), want 1", v, ok)
	}
	if len(got.Samples) != len(ref.Samples)+1 { // + subexpiry
		t.Errorf("%d samples reordered, %d in order (+1 expected)", len(got.Samples), len(ref.Samples))
	}
}

func TestEmitInfoEdgeCases(t *testing.T) {
	raw := strings.Join([]string{
		"# Server",
		"redis_version:7.2.0",
		"up:1",                  // would shadow the target's redis_up
		"db_keys:3",             // would add an unlabelled series to redis_db_keys
		"instance_info:9",       // idem for redis_instance_info
		"weird-key.name:5",      // sanitized
		"nan_field:NaN",         // strconv would accept these four
		"inf_field:+Inf",        //
		"hex_field:0x10",        //
		"underscore_field:1_0",  //
		"big_field:1e999",       // out of range
		"pct_field:12.5%",       // not a number
		"redis_build_id:123456", // an id, not a quantity, even when all digits
		"connected_clients:5",
		"connected_clients:6", // repeated: the first wins
		"# Replication",
		"role:slave",
		"master_host:10.0.0.1",
		"master_port:6379",
		"master_link_status:down",
		"master_1_host:10.0.0.9", // KeyDB multi-master
		"master_1_port:6390",
		"master_1_link_status:up",
		"# Persistence",
		"rdb_last_bgsave_status:err",
		"aof_last_write_status:ok",
		"# Commandstats",
		"cmdstat_bad\xffname:calls=1,usec=2",
		"cmdstat_:calls=1,usec=2",
		"# Keyspace",
		"db0:keys=abc,expires=1",   // keys unreadable: no db0 series
		"db1:expires=1,avg_ttl=10", // keys missing: none either
		"db2:keys=3,expires=1,avg_ttl=oops",
		"dbx:keys=1,expires=0",
		"# Errorstats",
		"errorstat_ERR:count=2,extra=1",
	}, "\n")
	sc := emitRaw(t, raw)
	checkScrape(t, sc)
	for _, name := range []string{"redis_nan_field", "redis_inf_field", "redis_hex_field", "redis_underscore_field",
		"redis_big_field", "redis_pct_field", "redis_redis_build_id"} {
		if _, ok := typeOf(sc, name); ok {
			t.Errorf("%s emitted from a non-number", name)
		}
	}
	if _, ok := find(sc, "redis_up"); ok {
		t.Error("field up:1 became redis_up")
	}
	if _, ok := find(sc, "redis_db_keys", "db", ""); ok {
		t.Error("field db_keys became an unlabelled redis_db_keys")
	}
	checks := []want{
		w("redis_weird_key_name", 5),
		w("redis_connected_clients", 5),
		w("redis_master_link_up", 0, "master_host", "10.0.0.1", "master_port", "6379"),
		w("redis_master_link_up", 1, "master_host", "10.0.0.9", "master_port", "6390"),
		w("redis_slave_info", 1, "master_host", "10.0.0.1", "master_port", "6379"),
		w("redis_rdb_last_bgsave_status", 0),
		w("redis_aof_last_write_status", 1),
		w("redis_commands_total", 1, "cmd", "bad\uFFFDname"),
		w("redis_db_keys", 3, "db", "db2"),
		w("redis_errors_total", 2, "err", "ERR"),
	}
	for _, c := range checks {
		if v, ok := find(sc, c.name, c.kv...); !ok || v != c.v {
			t.Errorf("%s%v = %v (found %v), want %v", c.name, c.kv, v, ok, c.v)
		}
	}
	for _, db := range []string{"db0", "db1", "dbx"} {
		if _, ok := find(sc, "redis_db_keys", "db", db); ok {
			t.Errorf("redis_db_keys{db=%q} emitted from a bad line", db)
		}
	}
	if _, ok := find(sc, "redis_db_avg_ttl_seconds", "db", "db2"); ok {
		t.Error("unreadable avg_ttl emitted")
	}
	if n := len(sc.Samples); n != len(emitRaw(t, raw).Samples) {
		t.Errorf("not deterministic: %d samples", n)
	}
}

func TestEmitInfoNil(t *testing.T) {
	EmitInfo(nil, &Info{})
	sc := sample.NewScrape(infoTestTime, labels.EmptyLabels())
	EmitInfo(sc, nil)
	EmitInfo(sc, &Info{})
	if len(sc.Samples) != 0 {
		t.Errorf("%d samples from nothing", len(sc.Samples))
	}
}

func TestQuantileLabel(t *testing.T) {
	for in, want := range map[string]string{"50": "50.0", "99": "99.0", "99.9": "99.9", "75": "75.0", "99.99": "99.99", "100": "100.0"} {
		if got, ok := quantileLabel(in); !ok || got != want {
			t.Errorf("quantileLabel(%q) = %q, %v; want %q", in, got, ok, want)
		}
	}
	for _, bad := range []string{"", "x", "NaN", "Inf", "9 9"} {
		if got, ok := quantileLabel(bad); ok {
			t.Errorf("quantileLabel(%q) = %q, want rejected", bad, got)
		}
	}
}

func TestParseInfo(t *testing.T) {
	raw := "\r\n# Server\r\nredis_version:7.0.15\r\nexecutable:/usr/bin/redis-server\r\n\r\n" +
		"# Replication\r\nslave0:ip=::1,port=6380,state=online,offset=1,lag=0\r\n" +
		"a note without a colon\r\n" +
		"# Some Future Section\r\nnew_field:1\r\n\r\n# Keyspace\r\n"
	info, err := ParseInfo(raw)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, s := range info.Sections {
		names = append(names, s.Name)
	}
	if got := strings.Join(names, ","); got != "server,replication,some future section,keyspace" {
		t.Errorf("sections = %s", got)
	}
	for _, c := range []struct{ section, key, want string }{
		{"server", "redis_version", "7.0.15"},
		{"SERVER", "executable", "/usr/bin/redis-server"},
		{"Replication", "slave0", "ip=::1,port=6380,state=online,offset=1,lag=0"},
		{"some future section", "new_field", "1"},
	} {
		if got, ok := info.Get(c.section, c.key); !ok || got != c.want {
			t.Errorf("Get(%q, %q) = %q, %v; want %q", c.section, c.key, got, ok, c.want)
		}
	}
	if _, ok := info.Get("server", "a note without a colon"); ok {
		t.Error("line without ':' became a field")
	}
	if _, ok := info.Get("keyspace", "db0"); ok {
		t.Error("empty keyspace has a field")
	}
	if n := len(info.Sections[3].Fields); n != 0 {
		t.Errorf("empty section has %d fields", n)
	}
	// Sections must not share spare capacity: appending to one must not
	// overwrite the next.
	s0 := info.Sections[0]
	_ = append(s0.Fields, Field{"x", "y"})
	if info.Sections[1].Fields[0].Key != "slave0" {
		t.Error("append to a section's fields clobbered the next section")
	}
	var nilInfo *Info
	if _, ok := nilInfo.Get("server", "x"); ok {
		t.Error("nil Info has a field")
	}
}

func TestParseInfoLineEnds(t *testing.T) {
	for _, file := range []string{"redis-7.0-master.txt", "redis-7.0-replica.txt"} {
		crlf := readCapture(t, file)
		if !strings.Contains(crlf, "\r\n") {
			t.Fatalf("%s: capture lost its \\r\\n", file)
		}
		a, err := ParseInfo(crlf)
		if err != nil {
			t.Fatal(err)
		}
		b, err := ParseInfo(strings.ReplaceAll(crlf, "\r\n", "\n"))
		if err != nil {
			t.Fatal(err)
		}
		if len(a.Sections) != len(b.Sections) {
			t.Fatalf("%s: %d sections with \\r\\n, %d with \\n", file, len(a.Sections), len(b.Sections))
		}
		for i := range a.Sections {
			sa, sb := a.Sections[i], b.Sections[i]
			if sa.Name != sb.Name || len(sa.Fields) != len(sb.Fields) {
				t.Fatalf("%s: section %d differs: %q/%d vs %q/%d", file, i, sa.Name, len(sa.Fields), sb.Name, len(sb.Fields))
			}
			for j := range sa.Fields {
				if sa.Fields[j] != sb.Fields[j] {
					t.Errorf("%s: %v vs %v", file, sa.Fields[j], sb.Fields[j])
				}
			}
		}
	}
}

func TestParseInfoFieldsBeforeHeader(t *testing.T) {
	// INFO as some proxies answer it: fields without a section header.
	info, err := ParseInfo("connected_clients:3\nuptime_in_seconds:9\n")
	if err != nil {
		t.Fatal(err)
	}
	if len(info.Sections) != 1 || info.Sections[0].Name != "" || len(info.Sections[0].Fields) != 2 {
		t.Fatalf("sections = %+v", info.Sections)
	}
	if v, ok := info.Get("", "uptime_in_seconds"); !ok || v != "9" {
		t.Errorf("uptime = %q, %v", v, ok)
	}
	if v, ok := find(emitRaw(t, "connected_clients:3\n"), "redis_connected_clients"); !ok || v != 3 {
		t.Errorf("redis_connected_clients = %v, %v", v, ok)
	}
}

func TestParseInfoRejects(t *testing.T) {
	for _, c := range []struct{ raw, line string }{
		{"", ""},
		{"\r\n\r\n", ""},
		{"-ERR unknown command 'INFO'\r\n", "line 1"},
		{"ERR unknown command 'INFO', with args beginning with: \r\n", "line 1"},
		{"NOAUTH Authentication required.\r\n# Server\r\n", "line 1"},
		{"\n<!DOCTYPE html>\n<html>\n", "line 2"},
		{"$4050\r\n# Server\r\nredis_version:6.0.9\r\n", "line 1"},
	} {
		info, err := ParseInfo(c.raw)
		if err == nil {
			t.Errorf("ParseInfo(%q) = %+v, want error", c.raw, info)
			continue
		}
		if !strings.Contains(err.Error(), c.line) {
			t.Errorf("ParseInfo(%q): error %q does not name %q", c.raw, err, c.line)
		}
	}
}

func TestParseInfoHuge(t *testing.T) {
	// 200k fields (~5 MB), as from a server with a huge commandstats or a
	// proxy aggregating many shards: linear, and every field kept.
	var b strings.Builder
	b.WriteString("# Commandstats\r\n")
	const n = 200_000
	for i := 0; i < n; i++ {
		b.WriteString("cmdstat_c")
		b.WriteString(strconv.Itoa(i))
		b.WriteString(":calls=1,usec=2,usec_per_call=2.00\r\n")
	}
	info, err := ParseInfo(b.String())
	if err != nil {
		t.Fatal(err)
	}
	if got := len(info.Sections[0].Fields); got != n {
		t.Fatalf("%d fields, want %d", got, n)
	}
	if testing.Short() {
		return
	}
	sc := sample.NewScrape(infoTestTime, labels.EmptyLabels())
	EmitInfo(sc, info)
	if got := len(sc.Samples); got != 2*n {
		t.Errorf("%d samples, want %d", got, 2*n)
	}
}

func TestParseInfoNumber(t *testing.T) {
	good := map[string]float64{"0": 0, "-1": -1, "+2": 2, "1.5": 1.5, "0.00": 0, "-0.25": -0.25, ".5": 0.5, "5.": 5,
		"1e3": 1000, "1.5E-3": 0.0015, "1795535330268951": 1795535330268951}
	for in, want := range good {
		if got, ok := parseInfoNumber(in); !ok || got != want {
			t.Errorf("parseInfoNumber(%q) = %v, %v; want %v", in, got, ok, want)
		}
	}
	for _, bad := range []string{"", "-", ".", "e5", "1e", "1e+", "NaN", "nan", "Inf", "-inf", "infinity", "0x10", "1_000",
		"1.2.3", "12%", " 1", "1 ", "ok", "1e999", "-1e999"} {
		if got, ok := parseInfoNumber(bad); ok {
			t.Errorf("parseInfoNumber(%q) = %v, want rejected", bad, got)
		}
	}
}
