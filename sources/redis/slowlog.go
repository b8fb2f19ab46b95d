package redis

import (
	"context"
	"fmt"
	"maps"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/prometheus/prometheus/model/labels"

	"github.com/redwire/redwire/sample"
)

// slowlog reads the slow log. It reports what redis_exporter reports (the
// length, the newest entry's id and duration), and as a redwire extra it
// follows the log incrementally: every entry newer than the last one seen
// is counted once, per command, with its duration in a histogram. The
// exporter's gauges only show the newest entry, so a burst of slow
// commands between two scrapes is invisible there.
//
// Only the command name leaves the host, never an argument: arguments are
// keys and values (customer data, tokens). The name is lower-cased and kept
// only if it is in the target's allowlist (slowlog_commands, by default
// slowlogCommands), others become cmd="other", so a client sending junk
// command names cannot grow the number of series.
//
// The first scrape only records where the log stands: history from before
// the agent started is not counted, as with the topology counters.
type slowlog struct {
	allow map[string]bool // lower-case names kept as cmd; nil: slowlogCommands

	seen   bool
	lastID int64     // newest entry id accounted for; -1 if none yet
	runID  string    // the server process lastID belongs to
	at     time.Time // when lastID was last confirmed
	self   [2]string // this agent's client addresses, current and previous

	missed float64 // entries skipped past (log trimmed, or > fetch bound)
	cmds   map[string]*slowlogStats
}

// slowlogStats is one command's share of the slow log since the agent
// started. buckets[i] counts entries with duration <= slowlogBuckets[i]
// (cumulative, as a Prometheus histogram).
type slowlogStats struct {
	count, sum float64
	buckets    [len(slowlogBuckets)]float64
}

// slowlogBuckets are the upper bounds in seconds of
// redis_slowlog_duration_seconds. The slow log holds commands above
// slowlog-log-slower-than (10ms by default), hence no finer buckets.
// Read-only.
var slowlogBuckets = [...]float64{.01, .05, .1, .25, .5, 1, 2.5, 5, 10}

const (
	// slowlogFetchMax bounds one SLOWLOG GET; beyond it entries are counted
	// as missed rather than fetched (the default slowlog-max-len is 128).
	slowlogFetchMax = 128
	// slowlogSlack is fetched on top of the gap between the last id seen
	// and the newest: entries logged after SLOWLOG GET 1 (this agent's own,
	// at least, when every command is slow) would otherwise push the oldest
	// wanted entries out of the reply.
	slowlogSlack = 16
)

// slowlogCommands are the command names kept as cmd label values: data
// commands an application sends, plus the usual suspects of a slow log
// (KEYS, FLUSHALL, scripts). Read-only; admin commands (INFO, CONFIG, …)
// are left to "other".
var slowlogCommands = func() map[string]bool {
	m := map[string]bool{}
	for _, c := range strings.Fields(`
		get set setex psetex setnx getset getdel getex mget mset msetnx append strlen setrange getrange
		incr incrby incrbyfloat decr decrby
		del unlink exists expire pexpire expireat pexpireat persist ttl pttl type rename renamenx copy
		dump restore object touch keys scan randomkey sort sort_ro flushdb flushall dbsize
		hget hset hsetnx hmget hmset hdel hlen hexists hkeys hvals hgetall hincrby hincrbyfloat hscan hstrlen hrandfield
		lpush rpush lpushx rpushx lpop rpop llen lrange lindex lset linsert lrem ltrim lpos lmove blmove
		blpop brpop brpoplpush rpoplpush lmpop blmpop
		sadd srem smembers sismember smismember scard spop srandmember smove sinter sintercard sinterstore
		sunion sunionstore sdiff sdiffstore sscan
		zadd zrem zscore zmscore zincrby zcard zcount zrank zrevrank zrange zrangestore zrevrange
		zrangebyscore zrevrangebyscore zrangebylex zrevrangebylex zremrangebyrank zremrangebyscore
		zremrangebylex zpopmin zpopmax bzpopmin bzpopmax zmpop bzmpop zunion zunionstore zinter
		zinterstore zintercard zdiff zdiffstore zscan zrandmember zlexcount
		xadd xread xreadgroup xrange xrevrange xlen xdel xtrim xack xclaim xautoclaim xpending xgroup xinfo
		setbit getbit bitcount bitpos bitop bitfield bitfield_ro
		pfadd pfcount pfmerge
		geoadd geodist geohash geopos georadius georadiusbymember geosearch geosearchstore
		eval evalsha eval_ro evalsha_ro fcall fcall_ro script
		multi exec watch publish spublish
		json.get json.set json.mget json.del ft.search ft.aggregate`) {
		m[c] = true
	}
	return m
}()

// newSlowlog returns the slow log collector of a target whose
// slowlog_commands are names: nil or empty keeps the built-in
// slowlogCommands, anything else replaces it. names must have passed
// ValidateSlowlogCommands.
func newSlowlog(names []string) *slowlog {
	if len(names) == 0 {
		return &slowlog{}
	}
	allow := make(map[string]bool, len(names))
	for _, n := range names {
		allow[strings.ToLower(n)] = true
	}
	return &slowlog{allow: allow}
}

// slowlogCommandName is what a slowlog_commands entry may be: a command
// name as Redis and its modules spell them (JSON.GET, FT.SEARCH,
// CLIENT|LIST as ACL rules write subcommands), compared lower-cased. A
// label value from config must not be anything else.
var slowlogCommandName = regexp.MustCompile(`(?i)^[a-z0-9_|.-]+$`)

// ValidateSlowlogCommands checks slowlog_commands entries and names the
// first bad one.
func ValidateSlowlogCommands(names []string) error {
	for i, n := range names {
		if !slowlogCommandName.MatchString(n) {
			return fmt.Errorf("slowlog_commands[%d]: %q is not a command name (want letters, digits and _ | . -)", i, n)
		}
	}
	return nil
}

// allowed reports whether cmd, lower-cased, is kept as a cmd label value.
func (l *slowlog) allowed(cmd string) bool {
	if l.allow == nil {
		return slowlogCommands[cmd]
	}
	return l.allow[cmd]
}

func (l *slowlog) collect(ctx context.Context, s *session, sc *sample.Scrape) {
	if n, ok := respInt(s.do(ctx, "SLOWLOG", "LEN")); ok {
		sc.Gauge("redis_slowlog_length", "Entries in the slow log (SLOWLOG LEN).", float64(n))
	}
	if reply, ok := s.do(ctx, "SLOWLOG", "GET", "1"); ok {
		// As redis_exporter: 0 and 0 while the log is empty.
		newest, lastID, lastDur := int64(-1), 0.0, 0.0
		if e := parseSlowlog(reply); len(e) > 0 {
			newest, lastID, lastDur = e[0].id, float64(e[0].id), e[0].seconds
		}
		sc.Gauge("redis_slowlog_last_id", "Id of the newest slow log entry.", lastID)
		sc.Gauge("redis_last_slow_execution_duration_seconds", "Duration of the newest slow log entry.", lastDur)
		l.follow(ctx, s, newest)
	}
	l.emit(sc)
}

// follow counts the entries after l.lastID, given the newest id the server
// has (-1: the log is empty).
//
// Ids are dense and grow for the life of the server process; SLOWLOG RESET
// empties the log without resetting them. They go backwards only when the
// process restarted (or, on some forks, on reset): then everything in the
// log is newer than what was seen. A changed run_id with a process older
// than the last read is another server behind the same address (failover
// behind a VIP): its log is history, so it becomes the new baseline.
func (l *slowlog) follow(ctx context.Context, s *session, newest int64) {
	now := time.Now()
	runID := get(s.info, "server", "run_id")
	from := l.lastID // count the entries with a greater id
	newProcess := runID != "" && l.runID != "" && runID != l.runID
	switch {
	case !l.seen, newProcess && !startedSince(s.info, now.Sub(l.at)):
		l.seen, l.lastID, l.runID, l.at = true, newest, runID, now
		return
	case newProcess, newest >= 0 && newest < l.lastID:
		from = -1 // a new id space, all of it after the last read
	}
	if newest <= from { // nothing new, or the log is empty
		l.lastID, l.runID, l.at = from, keep(l.runID, runID), now
		return
	}
	n := int64(slowlogFetchMax)
	if from >= 0 {
		n = min(newest-from+slowlogSlack, n)
	}
	reply, ok := s.do(ctx, "SLOWLOG", "GET", strconv.FormatInt(n, 10))
	if !ok {
		return // retried at the next scrape from the same id
	}
	self := l.selfAddrs(ctx, s)
	maxID, fetched := from, int64(0)
	for _, e := range parseSlowlog(reply) {
		if e.id <= from {
			continue
		}
		fetched++
		maxID = max(maxID, e.id)
		if e.addr != "" && slices.Contains(self, e.addr) {
			continue // this agent's own INFO, SLOWLOG, CONFIG, …
		}
		l.observe(e)
	}
	// Ids are dense, so every id in (from, maxID] not fetched was trimmed
	// from the log, or lay beyond the fetch bound, before it could be read.
	// Without a known from (first entries after a restart or after an empty
	// baseline) the gap is unknown: the count is a lower bound.
	if from >= 0 {
		l.missed += float64(max(maxID-from-fetched, 0))
	}
	l.lastID, l.runID, l.at = maxID, keep(l.runID, runID), now
}

// startedSince reports whether the server process is younger than d, i.e.
// started after the previous read. uptime_in_seconds is the difference of
// two whole-second clocks, up to a second more than the real age, hence
// the second of tolerance. Without uptime it answers no: counting another
// server's history would be worse than missing a few entries.
func startedSince(info *Info, d time.Duration) bool {
	up, ok := parseInfoNumber(get(info, "server", "uptime_in_seconds"))
	return ok && up <= d.Seconds()+1
}

// selfAddrs returns the client addresses of this agent's connection, now
// and before the last re-dial, as the slow log records them. Redis < 6.2
// has no CLIENT INFO: the agent's own slow commands then count as "other".
func (l *slowlog) selfAddrs(ctx context.Context, s *session) []string {
	if reply, ok := s.do(ctx, "CLIENT", "INFO"); ok {
		if line, ok := reply.(string); ok {
			for _, f := range strings.Fields(line) {
				if addr, ok := strings.CutPrefix(f, "addr="); ok && addr != l.self[0] {
					l.self = [2]string{addr, l.self[0]}
				}
			}
		}
	}
	self := make([]string, 0, len(l.self))
	for _, a := range l.self {
		if a != "" {
			self = append(self, a)
		}
	}
	return self
}

func (l *slowlog) observe(e slowlogEntry) {
	cmd := strings.ToLower(e.name)
	if !l.allowed(cmd) {
		cmd = "other"
	}
	st := l.cmds[cmd]
	if st == nil {
		if l.cmds == nil {
			l.cmds = make(map[string]*slowlogStats)
		}
		st = &slowlogStats{}
		l.cmds[cmd] = st
	}
	st.count++
	st.sum += e.seconds
	for i, le := range slowlogBuckets {
		if e.seconds <= le {
			st.buckets[i]++
		}
	}
}

const (
	slowlogHelpEntries  = "Slow log entries seen by this agent per command (allowlisted name, else other). A redwire extra."
	slowlogHelpDuration = "Durations of the slow log entries seen by this agent per command, in seconds. A redwire extra."
)

func (l *slowlog) emit(sc *sample.Scrape) {
	if !l.seen {
		return
	}
	sc.Counter("redis_slowlog_entries_missed_total",
		"Slow log entries this agent could not read: trimmed from the log, or more than one scrape fetches. A redwire extra.", l.missed)
	for _, cmd := range slices.Sorted(maps.Keys(l.cmds)) {
		st := l.cmds[cmd]
		sc.Counter("redis_slowlog_entries_total", slowlogHelpEntries, st.count, "cmd", cmd)
		for i, le := range slowlogBuckets {
			sc.Add("redis_slowlog_duration_seconds_bucket", histogramType, slowlogHelpDuration, st.buckets[i],
				"cmd", cmd, "le", labels.FormatOpenMetricsFloat(le))
		}
		sc.Add("redis_slowlog_duration_seconds_bucket", histogramType, slowlogHelpDuration, st.count, "cmd", cmd, "le", "+Inf")
		sc.Add("redis_slowlog_duration_seconds_sum", histogramType, slowlogHelpDuration, st.sum, "cmd", cmd)
		sc.Add("redis_slowlog_duration_seconds_count", histogramType, slowlogHelpDuration, st.count, "cmd", cmd)
	}
}

// slowlogEntry is what redwire keeps of one entry: never the arguments.
type slowlogEntry struct {
	id      int64
	seconds float64
	name    string // the command, the first element of the argument vector
	addr    string // client ip:port (Redis >= 4.0), "" if absent
}

// parseSlowlog reads a SLOWLOG GET reply, newest first. Entries are arrays
// without keys (id, timestamp, microseconds, arguments, client address,
// client name); malformed ones are skipped.
func parseSlowlog(reply any) []slowlogEntry {
	list, _ := reply.([]any)
	out := make([]slowlogEntry, 0, len(list))
	for _, item := range list {
		f, _ := item.([]any)
		if len(f) < 4 {
			continue
		}
		id, ok1 := f[0].(int64)
		us, ok2 := f[2].(int64)
		args, ok3 := f[3].([]any)
		if !ok1 || !ok2 || !ok3 || len(args) == 0 {
			continue
		}
		e := slowlogEntry{id: id, seconds: float64(us) / 1e6}
		e.name, _ = args[0].(string)
		if len(f) > 4 {
			e.addr, _ = f[4].(string)
		}
		out = append(out, e)
	}
	return out
}
