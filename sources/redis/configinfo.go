package redis

import (
	"context"
	"strconv"
	"strings"
	"time"

	"github.com/redwire/redwire/sample"
)

// configInfo reports the configuration values redis_exporter exports
// (limits that dashboards draw next to the usage INFO reports), and uses
// `databases` to zero-fill redis_db_keys as the exporter does: INFO lists
// only the databases that hold keys, so without the zeros a database that
// is emptied leaves a stale line on a graph instead of dropping to 0.
//
// Configuration rarely changes and CONFIG GET is not free on a busy server,
// so values are re-read every configRefreshScrapes scrapes or
// configRefreshAge, whichever comes first, and a value not re-read for
// configMaxAge (CONFIG refused since, or failing) is dropped rather than
// reported forever.
type configInfo struct {
	values  map[string]configValue // parameter -> last value read; nil until one read succeeded
	attempt time.Time              // last refresh
	scrapes int                    // scrapes since the last refresh
}

type configValue struct {
	v  string
	at time.Time
}

// configParams are read one per CONFIG GET: several names in one call
// need Redis 7, and older servers answer with an error that would mark
// CONFIG GET refused for good. CONFIG GET * would also pull the passwords
// (requirepass, masterauth) into the agent.
var configParams = [...]string{"maxmemory", "maxclients", "io-threads", "client-output-buffer-limit", "databases"}

const (
	configRefreshScrapes = 10
	configRefreshAge     = 5 * time.Minute
	configMaxAge         = 3 * configRefreshAge

	// defaultDatabases is Redis's default for `databases`, which
	// redis_exporter also assumes when CONFIG is refused (managed services
	// keep it).
	defaultDatabases = 16
	// maxZeroFilled bounds the zero-fill against an absurd `databases`.
	maxZeroFilled = 4096
)

func (c *configInfo) collect(ctx context.Context, s *session, sc *sample.Scrape) {
	now := time.Now()
	if c.values == nil || c.scrapes >= configRefreshScrapes || now.Sub(c.attempt) >= configRefreshAge {
		c.refresh(ctx, s, now)
	}
	c.scrapes++

	for _, name := range [...]string{"maxmemory", "maxclients", "io-threads"} {
		if v, ok := parseInfoNumber(c.get(name, now)); ok {
			sc.Gauge("redis_config_"+strings.ReplaceAll(name, "-", "_"), "The "+name+" configuration value (CONFIG GET).", v)
		}
	}
	emitOutputBufferLimits(sc, c.get("client-output-buffer-limit", now))

	databases := defaultDatabases
	if n, err := strconv.Atoi(c.get("databases", now)); err == nil && n > 0 {
		databases = n
	}
	zeroFillKeyspace(sc, s.info, databases)
}

// refresh re-reads every parameter. A server that refuses CONFIG costs
// nothing here after the first refusal (session.do remembers it); until a
// first read succeeds, every scrape tries again.
func (c *configInfo) refresh(ctx context.Context, s *session, now time.Time) {
	c.attempt, c.scrapes = now, 0
	for _, name := range configParams {
		reply, ok := s.do(ctx, "CONFIG", "GET", name)
		if !ok {
			continue
		}
		if c.values == nil {
			c.values = make(map[string]configValue, len(configParams))
		}
		// The reply is a map of the names matching the pattern; a name the
		// server does not know (io-threads before 6.0) matches nothing.
		delete(c.values, name)
		pairs, _ := respPairs(reply)
		for _, p := range pairs {
			k, _ := p.k.(string)
			v, isString := p.v.(string)
			if k == name && isString {
				c.values[name] = configValue{v: v, at: now}
			}
		}
	}
}

// get is a parameter's value, "" if unknown or too old to trust.
func (c *configInfo) get(name string, now time.Time) string {
	cv, ok := c.values[name]
	if !ok || now.Sub(cv.at) > configMaxAge {
		return ""
	}
	return cv.v
}

// emitOutputBufferLimits maps client-output-buffer-limit, which CONFIG GET
// returns as "normal 0 0 0 slave 268435456 67108864 60 pubsub 33554432
// 8388608 60": per class a hard limit and a soft limit in bytes and how
// long the soft limit may be exceeded in seconds. A value that does not
// split into such groups is skipped whole.
func emitOutputBufferLimits(sc *sample.Scrape, value string) {
	f := strings.Fields(value)
	if len(f) == 0 || len(f)%4 != 0 {
		return
	}
	for i := 0; i < len(f); i += 4 {
		if _, isNum := parseInfoNumber(f[i]); isNum {
			return // out of step: a number where a class name belongs
		}
	}
	const (
		helpBytes = "Client output buffer limits per client class, in bytes (CONFIG GET client-output-buffer-limit)."
		helpSecs  = "How long a client may exceed the soft output buffer limit before it is disconnected, per client class."
	)
	for i := 0; i < len(f); i += 4 {
		class := validUTF8(f[i])
		if v, ok := parseInfoNumber(f[i+1]); ok {
			sc.Gauge("redis_config_client_output_buffer_limit_bytes", helpBytes, v, "class", class, "limit", "hard")
		}
		if v, ok := parseInfoNumber(f[i+2]); ok {
			sc.Gauge("redis_config_client_output_buffer_limit_bytes", helpBytes, v, "class", class, "limit", "soft")
		}
		if v, ok := parseInfoNumber(f[i+3]); ok {
			sc.Gauge("redis_config_client_output_buffer_limit_overcome_seconds", helpSecs, v, "class", class, "limit", "soft")
		}
	}
}

// zeroFillKeyspace adds redis_db_keys and redis_db_keys_expiring 0 for
// every database below databases that INFO keyspace does not list (a
// cluster node has db0 only). A database counts as listed when EmitInfo
// emitted it, i.e. by the test EmitInfo's keyspace mapping applies, so no
// series is sent twice. Without a keyspace section nothing is known, and
// nothing is claimed to be 0.
func zeroFillKeyspace(sc *sample.Scrape, info *Info, databases int) {
	listed := map[string]bool{}
	found := false
	for _, sec := range info.Sections {
		if sec.Name != "keyspace" {
			continue
		}
		found = true
		for _, f := range sec.Fields {
			if !strings.HasPrefix(f.Key, "db") || !isInfoIndex(f.Key[len("db"):]) {
				continue
			}
			if st := parseKeyspace(f.Value); st.keys.ok && st.expires.ok {
				listed[f.Key] = true
			}
		}
	}
	if !found {
		return
	}
	if get(info, "cluster", "cluster_enabled") == "1" {
		databases = 1
	}
	for i := range min(databases, maxZeroFilled) {
		db := "db" + strconv.Itoa(i)
		if listed[db] {
			continue
		}
		sc.Gauge("redis_db_keys", "Keys per database.", 0, "db", db)
		sc.Gauge("redis_db_keys_expiring", "Keys with an expiry per database.", 0, "db", db)
	}
}
