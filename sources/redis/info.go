package redis

import (
	"fmt"
	"strconv"
	"strings"
)

// Info is a parsed INFO reply: sections in the order Redis sent them.
//
// Keys and values are substrings of the reply, kept as sent; nothing is
// interpreted here. Mapping fields to samples is EmitInfo's job, so the
// parser stays usable for anything else that wants to read INFO (role
// checks, version gates) and stays trivially safe on hostile input.
type Info struct {
	Sections []Section
}

// Section is one "# Name" block of an INFO reply.
type Section struct {
	// Name is the header lower-cased ("server", "keyspace", "cluster info").
	// Fields sent before any header land in a section named "".
	Name   string
	Fields []Field
}

// Field is one "key:value" line. Value is everything after the first ':',
// so addresses ("ip=::1,port=6379") and paths survive intact.
type Field struct {
	Key, Value string
}

// ParseInfo splits an INFO reply into sections and fields.
//
// It accepts \r\n and \n line ends, blank lines, unknown sections and any
// number of fields, and skips lines that are not "key:value" (some proxies
// and forks append notes). It fails only for input that is clearly not INFO
// output: an empty reply, or one whose first non-blank line is neither a
// "# Section" header nor a "key:value" field (an error reply, an HTML page,
// a RESP frame), and the error quotes that line.
func ParseInfo(raw string) (*Info, error) {
	// One backing array for every field of every section: a reply has at
	// most one field per line, so this never grows, and sections hold
	// capped sub-slices of it.
	fields := make([]Field, 0, strings.Count(raw, "\n")+1)
	info := &Info{Sections: make([]Section, 0, 16)}
	start := 0 // index in fields of the current section's first field
	seen := false
	closeSection := func() {
		if n := len(info.Sections); n > 0 {
			info.Sections[n-1].Fields = fields[start:len(fields):len(fields)]
		}
		start = len(fields)
	}

	lineNo := 0
	for rest := raw; rest != ""; {
		var line string
		if i := strings.IndexByte(rest, '\n'); i >= 0 {
			line, rest = rest[:i], rest[i+1:]
		} else {
			line, rest = rest, ""
		}
		lineNo++
		line = strings.TrimSpace(line) // also drops the \r of \r\n
		if line == "" {
			continue
		}
		if line[0] == '#' {
			closeSection()
			info.Sections = append(info.Sections, Section{Name: infoSectionName(strings.TrimSpace(line[1:]))})
			seen = true
			continue
		}
		key, value, ok := strings.Cut(line, ":")
		if !ok || !isInfoKey(key) {
			if !seen {
				return nil, fmt.Errorf("line %d %q: not INFO output (want \"# Section\" or \"field:value\")", lineNo, clipLine(line))
			}
			continue
		}
		if len(info.Sections) == 0 {
			info.Sections = append(info.Sections, Section{})
		}
		fields = append(fields, Field{Key: key, Value: value})
		seen = true
	}
	if !seen {
		return nil, fmt.Errorf("no INFO section or field in %d-byte reply", len(raw))
	}
	closeSection()
	return info, nil
}

// Get returns the value of key in the named section (matched without
// regard to case) and whether it was there. A nil Info has no fields.
func (i *Info) Get(section, key string) (string, bool) {
	if i == nil {
		return "", false
	}
	for _, s := range i.Sections {
		if !strings.EqualFold(s.Name, section) {
			continue
		}
		for _, f := range s.Fields {
			if f.Key == key {
				return f.Value, true
			}
		}
	}
	return "", false
}

// isInfoKey reports whether k can be an INFO field name. Real names never
// hold blanks or control characters; an error reply such as "ERR unknown
// command 'x', with args beginning with: " does, which is how it is told
// apart from a field.
func isInfoKey(k string) bool {
	if k == "" {
		return false
	}
	for i := 0; i < len(k); i++ {
		if k[i] <= ' ' || k[i] == 0x7f {
			return false
		}
	}
	return true
}

// infoSectionName lower-cases a header. The headers Redis and Valkey send are
// looked up so that the common case does not allocate on every scrape.
func infoSectionName(h string) string {
	switch h {
	case "Server":
		return "server"
	case "Clients":
		return "clients"
	case "Memory":
		return "memory"
	case "Persistence":
		return "persistence"
	case "Stats":
		return "stats"
	case "Replication":
		return "replication"
	case "CPU":
		return "cpu"
	case "Modules":
		return "modules"
	case "Commandstats":
		return "commandstats"
	case "Errorstats":
		return "errorstats"
	case "Latencystats":
		return "latencystats"
	case "Cluster":
		return "cluster"
	case "Keyspace":
		return "keyspace"
	case "Keysizes":
		return "keysizes"
	case "Threads":
		return "threads"
	case "TLS":
		return "tls"
	}
	return strings.ToLower(h)
}

// clipLine shortens a line quoted in an error: the reply may be megabytes of
// something that is not INFO, and the message only needs to identify it.
func clipLine(s string) string {
	const maxLen = 60
	if len(s) <= maxLen {
		return s
	}
	return s[:maxLen] + "…"
}

// nextInfoKV splits the first "k=v" pair off a comma-separated list such as
// "calls=3,usec=9" and returns the remainder. A pair without '=' yields
// an empty value, which no caller accepts as a number.
func nextInfoKV(s string) (k, v, rest string) {
	pair, rest, _ := strings.Cut(s, ",")
	k, v, _ = strings.Cut(pair, "=")
	return k, v, rest
}

// parseInfoNumber reads a decimal number as Redis prints it ("%lld", "%.2f",
// "%.6f", possibly with an exponent). strconv.ParseFloat alone would also
// take "NaN", "Inf", "0x1p3" and "1_0": a field holding such text is not a
// measurement, and accepting it would turn garbage into NaN samples.
func parseInfoNumber(s string) (float64, bool) {
	i := 0
	if i < len(s) && (s[i] == '-' || s[i] == '+') {
		i++
	}
	digits := 0
	for ; i < len(s) && s[i] >= '0' && s[i] <= '9'; i++ {
		digits++
	}
	if i < len(s) && s[i] == '.' {
		for i++; i < len(s) && s[i] >= '0' && s[i] <= '9'; i++ {
			digits++
		}
	}
	if digits == 0 {
		return 0, false
	}
	if i < len(s) && (s[i] == 'e' || s[i] == 'E') {
		i++
		if i < len(s) && (s[i] == '-' || s[i] == '+') {
			i++
		}
		exp := i
		for ; i < len(s) && s[i] >= '0' && s[i] <= '9'; i++ {
		}
		if i == exp {
			return 0, false
		}
	}
	if i != len(s) {
		return 0, false
	}
	v, err := strconv.ParseFloat(s, 64)
	if err != nil { // out of range: ±Inf is no more a measurement than NaN
		return 0, false
	}
	return v, true
}

// parseInfoStatus reads a field redis_exporter maps: a number, or one of the
// status words it turns into 1 (ok, true) or 0 (err, fail, false), as in
// rdb_last_bgsave_status:ok.
func parseInfoStatus(s string) (float64, bool) {
	switch s {
	case "ok", "true":
		return 1, true
	case "err", "fail", "false":
		return 0, true
	}
	return parseInfoNumber(s)
}

// isInfoIndex reports whether s is a non-empty run of ASCII digits, as in
// the "0" of db0, slave0 and master_1_host.
func isInfoIndex(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}

// infoNum is a number read from INFO, or its absence: fields come and go
// between versions, so every one is optional until a caller says not.
type infoNum struct {
	v  float64
	ok bool
}

func readInfoNum(s string) infoNum {
	v, ok := parseInfoNumber(s)
	return infoNum{v, ok}
}

// keyspaceStats is a keyspace line: "db0:keys=61,expires=11,avg_ttl=3314,
// subexpiry=0". Redis 7.4 added subexpiry, Valkey 9 names it
// keys_with_volatile_items and KeyDB adds cached_keys; hence by key.
type keyspaceStats struct {
	keys, expires, avgTTL, cached, subexpiry infoNum
}

func parseKeyspace(value string) keyspaceStats {
	var st keyspaceStats
	for rest := value; rest != ""; {
		var k, v string
		k, v, rest = nextInfoKV(rest)
		switch k {
		case "keys":
			st.keys = readInfoNum(v)
		case "expires":
			st.expires = readInfoNum(v)
		case "avg_ttl":
			st.avgTTL = readInfoNum(v)
		case "cached_keys":
			st.cached = readInfoNum(v)
		case "subexpiry", "keys_with_volatile_items":
			st.subexpiry = readInfoNum(v)
		}
	}
	return st
}

// slaveStats is a master's "slave0:ip=10.0.0.2,port=6379,state=online,
// offset=42,lag=0" line. Redis before 3.0 sends no lag.
type slaveStats struct {
	ip, port, state string
	offset, lag     infoNum
}

func parseSlave(value string) slaveStats {
	var st slaveStats
	for rest := value; rest != ""; {
		var k, v string
		k, v, rest = nextInfoKV(rest)
		switch k {
		case "ip":
			st.ip = v
		case "port":
			st.port = v
		case "state":
			st.state = v
		case "offset":
			st.offset = readInfoNum(v)
		case "lag":
			st.lag = readInfoNum(v)
		}
	}
	return st
}

// commandStats is a "cmdstat_get:calls=21,usec=189,usec_per_call=9.00,
// rejected_calls=0,failed_calls=0" line; the last two came with 6.2.
type commandStats struct {
	calls, usec, rejected, failed infoNum
}

func parseCommandStats(value string) commandStats {
	var st commandStats
	for rest := value; rest != ""; {
		var k, v string
		k, v, rest = nextInfoKV(rest)
		switch k {
		case "calls":
			st.calls = readInfoNum(v)
		case "usec":
			st.usec = readInfoNum(v)
		case "rejected_calls":
			st.rejected = readInfoNum(v)
		case "failed_calls":
			st.failed = readInfoNum(v)
		}
	}
	return st
}
