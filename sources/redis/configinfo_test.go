package redis

import (
	"context"
	"maps"
	"strings"
	"testing"

	"github.com/prometheus/prometheus/model/labels"

	"github.com/redwire/redwire/internal/harness"
	"github.com/redwire/redwire/sample"
)

// serverStat reads "key:…field=N…" from INFO section on r, 0 if absent.
func serverStat(t *testing.T, r *harness.Redis, section, key, field string) float64 {
	t.Helper()
	raw, err := r.Client().Info(context.Background(), section).Result()
	if err != nil {
		t.Fatal(err)
	}
	info, err := ParseInfo(raw)
	if err != nil {
		t.Fatal(err)
	}
	for rest := get(info, section, key); rest != ""; {
		var k, v string
		k, v, rest = nextInfoKV(rest)
		if n, ok := parseInfoNumber(v); ok && k == field {
			return n
		}
	}
	return 0
}

// TestConfigInfo: the config gauges hold what CONFIG SET set, they are
// cached for configRefreshScrapes scrapes, and every database of
// `databases` has redis_db_keys and redis_db_keys_expiring exactly once.
func TestConfigInfo(t *testing.T) {
	r := harness.StartRedis(t, harness.WithArgs("--databases", "4", "--maxmemory", "64mb"))
	ctx := t.Context()
	admin := r.Client()
	if err := admin.ConfigSet(ctx, "maxclients", "1234").Err(); err != nil {
		t.Fatal(err)
	}
	for _, args := range [][]any{
		{"SET", "a", "1"}, {"SET", "b", "1", "EX", "600"}, {"SET", "c", "1"},
		{"SELECT", "2"}, {"SET", "d", "1"}, {"SELECT", "0"},
	} {
		if err := admin.Do(ctx, args...).Err(); err != nil {
			t.Fatalf("%v: %v", args, err)
		}
	}
	tg := collectorTarget(t, r.URL())
	sc := collectorScrape(t, tg)

	for _, w := range []want{
		w("redis_config_maxclients", 1234),
		w("redis_config_maxmemory", 64<<20),
		w("redis_config_io_threads", 1),
		w("redis_config_client_output_buffer_limit_bytes", 0, "class", "normal", "limit", "hard"),
		w("redis_config_client_output_buffer_limit_bytes", 32<<20, "class", "pubsub", "limit", "hard"),
		w("redis_config_client_output_buffer_limit_bytes", 8<<20, "class", "pubsub", "limit", "soft"),
		w("redis_config_client_output_buffer_limit_overcome_seconds", 60, "class", "pubsub", "limit", "soft"),
	} {
		if v, ok := find(sc, w.name, w.kv...); !ok || v != w.v {
			t.Errorf("%s%v = %v (found %v), want %v", w.name, w.kv, v, ok, w.v)
		}
	}
	for family, want := range map[string]map[string]float64{
		"redis_db_keys":          {"db0": 3, "db1": 0, "db2": 1, "db3": 0},
		"redis_db_keys_expiring": {"db0": 1, "db1": 0, "db2": 0, "db3": 0},
	} {
		if got := byLabel(t, sc, family, "db"); !maps.Equal(got, want) {
			t.Errorf("%s = %v, want %v", family, got, want)
		}
	}

	// Cached: a change shows only at the refresh, and until then no CONFIG
	// GET reaches the server.
	if err := admin.ConfigSet(ctx, "maxclients", "2000").Err(); err != nil {
		t.Fatal(err)
	}
	gets := serverStat(t, r, "commandstats", "cmdstat_config|get", "calls")
	for i := 2; i <= configRefreshScrapes; i++ {
		sc = collectorScrape(t, tg)
		if v, _ := find(sc, "redis_config_maxclients"); v != 1234 {
			t.Fatalf("scrape %d: maxclients %v, want the cached 1234", i, v)
		}
	}
	if now := serverStat(t, r, "commandstats", "cmdstat_config|get", "calls"); now != gets {
		t.Errorf("CONFIG GET calls went from %v to %v while cached", gets, now)
	}
	sc = collectorScrape(t, tg)
	if v, _ := find(sc, "redis_config_maxclients"); v != 2000 {
		t.Errorf("scrape %d: maxclients %v, want the refreshed 2000", configRefreshScrapes+1, v)
	}
}

// TestOptionalCommandsRefused: a user without CONFIG, SLOWLOG and LATENCY
// still gets a complete INFO scrape; those families are left out, and from
// the second scrape on the refused commands are not even sent.
func TestOptionalCommandsRefused(t *testing.T) {
	r := harness.StartRedis(t)
	ctx := t.Context()
	if err := r.Client().Do(ctx, "ACL", "SETUSER", "mon", "on", ">pw", "~*", "+@all", "-config", "-slowlog", "-latency").Err(); err != nil {
		t.Fatal(err)
	}
	tg := collectorTarget(t, "redis://mon:pw@"+r.Addr())

	refused := []string{"redis_config_", "redis_slowlog_", "redis_last_slow_", "redis_latency_spike_", "redis_commands_latencies_usec"}
	var denied []float64
	for i := range 3 {
		sc := collectorScrape(t, tg)
		if v, ok := find(sc, "redis_up"); !ok || v != 1 {
			t.Fatalf("scrape %d: redis_up %v (found %v)", i+1, v, ok)
		}
		if _, ok := find(sc, "redis_connected_clients"); !ok {
			t.Fatalf("scrape %d: INFO metrics missing", i+1)
		}
		checkNoFamilies(t, sc, refused)
		// Without `databases`, redis_exporter's default of 16.
		if v, ok := find(sc, "redis_db_keys", "db", "db15"); !ok || v != 0 {
			t.Errorf("scrape %d: redis_db_keys{db=db15} = %v (found %v), want the zero-fill", i+1, v, ok)
		}
		denied = append(denied, serverStat(t, r, "errorstats", "errorstat_NOPERM", "count"))
	}
	if denied[0] == 0 || denied[1] != denied[0] || denied[2] != denied[0] {
		t.Errorf("NOPERM errors after each scrape: %v; want some after the first, none after", denied)
	}
}

func checkNoFamilies(t *testing.T, sc *sample.Scrape, prefixes []string) {
	t.Helper()
	for _, m := range sc.Metadata {
		for _, p := range prefixes {
			if strings.HasPrefix(m.Family, p) {
				t.Errorf("family %s present although its command is refused", m.Family)
			}
		}
	}
}

// TestZeroFillKeyspace: no keyspace section, no claims; a cluster node has
// db0 only; a listed database is never filled.
func TestZeroFillKeyspace(t *testing.T) {
	for _, tc := range []struct {
		name, raw string
		dbs       int
		want      map[string]float64
	}{
		{"no section", "# Server\nredis_version:7.0.0\n", 4, map[string]float64{}},
		{"empty", "# Keyspace\n", 2, map[string]float64{"db0": 0, "db1": 0}},
		{"listed", "# Keyspace\ndb1:keys=5,expires=0,avg_ttl=0\n", 3, map[string]float64{"db0": 0, "db1": 5, "db2": 0}},
		{"cluster", "# Cluster\ncluster_enabled:1\n# Keyspace\n", 16, map[string]float64{"db0": 0}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			sc := emitRaw(t, tc.raw)
			info, _ := ParseInfo(tc.raw)
			zeroFillKeyspace(sc, info, tc.dbs)
			if got := byLabel(t, sc, "redis_db_keys", "db"); !maps.Equal(got, tc.want) {
				t.Errorf("redis_db_keys = %v, want %v", got, tc.want)
			}
		})
	}
}

// TestOutputBufferLimits: a value out of step is skipped whole.
func TestOutputBufferLimits(t *testing.T) {
	sc := sample.NewScrape(infoTestTime, labels.EmptyLabels())
	emitOutputBufferLimits(sc, "normal 0 0 0 replica 1 2 3 pubsub 4 5")
	emitOutputBufferLimits(sc, "normal 0 0 0 1 2 3 4")
	if len(sc.Samples) != 0 {
		t.Errorf("malformed values gave %d samples", len(sc.Samples))
	}
	emitOutputBufferLimits(sc, "replica 1 2 3")
	if v, ok := find(sc, "redis_config_client_output_buffer_limit_overcome_seconds", "class", "replica", "limit", "soft"); !ok || v != 3 {
		t.Errorf("overcome_seconds{class=replica} = %v (found %v), want 3", v, ok)
	}
}
