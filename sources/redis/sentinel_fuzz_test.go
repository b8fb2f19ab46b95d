package redis

import (
	"errors"
	"strconv"
	"strings"
	"testing"

	"github.com/prometheus/prometheus/model/labels"

	"github.com/redwire/redwire/sample"
)

// FuzzSentinelReplies feeds what a sentinel answers through the sentinel
// collector's parsers: its INFO to emitSentinelInfo, a SENTINEL MASTERS
// reply to sentinelMasters and emitSentinelSettings, and a SENTINEL
// SENTINELS or SLAVES reply to countUp. The replies are RESP2 or RESP3 as
// sent on the wire, read into the values session.do hands over. Nothing may
// panic; every master read must have a name, read once, and the address
// its entry's ip and port name; countUp must count within the entries; and
// the scrape must pass checkScrape (one sample per series: masters whose
// names are alike once made valid UTF-8 must not make two). Interesting
// inputs found by fuzzing are kept in testdata/fuzz/FuzzSentinelReplies.
func FuzzSentinelReplies(f *testing.F) {
	info := "# Server\r\nredis_version:7.2.4\r\nredis_mode:sentinel\r\n# Sentinel\r\nsentinel_masters:1\r\nsentinel_tilt:0\r\n" +
		"sentinel_running_scripts:0\r\nsentinel_scripts_queue_length:0\r\nsentinel_simulate_failure_flags:0\r\n" +
		"master0:name=mymaster,status=ok,address=127.0.0.1:6379,slaves=1,sentinels=3\r\n"
	masters := respArray(respArray(
		"name", "mymaster", "ip", "127.0.0.1", "port", "6379", "runid", "f7d3c2a1", "flags", "master",
		"link-pending-commands", "0", "link-refcount", "1", "last-ping-sent", "0", "last-ok-ping-reply", "353",
		"last-ping-reply", "353", "down-after-milliseconds", "5000", "info-refresh", "7079", "role-reported", "master",
		"role-reported-time", "1224741", "config-epoch", "0", "num-slaves", "1", "num-other-sentinels", "2",
		"quorum", "2", "failover-timeout", "180000", "parallel-syncs", "1"))
	peers := respArray(respArray("name", "b1f5e0e4", "ip", "127.0.0.1", "port", "26380", "flags", "sentinel"),
		respArray("name", "c2", "ip", "127.0.0.1", "port", "26381", "flags", "s_down,sentinel"))
	// The same as RESP3 maps, with integers where a proxy might send them.
	masters3 := "*2\r\n%4\r\n+name\r\n+a\r\n+ip\r\n+::1\r\n+port\r\n:6379\r\n+quorum\r\n:2\r\n" +
		"%3\r\n$4\r\nname\r\n$1\r\nb\r\n$2\r\nip\r\n$8\r\n10.0.0.2\r\n$4\r\nport\r\n_\r\n"
	peers3 := "*3\r\n%1\r\n+flags\r\n+slave\r\n%1\r\n+flags\r\n+o_down,slave\r\n%0\r\n"
	for _, seed := range []struct {
		info           string
		masters, peers string
	}{
		{info, masters, peers},
		{info, masters3, peers3},
		{"# Sentinel\nmaster0:name=a,status=sdown,address=[::1]:1,slaves=x\nmaster1:name=a\nmaster2:status=ok\n", "*0\r\n", "*0\r\n"},
		{"# Sentinel\nmaster0:name=\xff,status=ok\nmaster1:name=\xfe,status=ok\n",
			respArray(respArray("name", "\xff", "ip", "h", "port", "1", "quorum", "1"), respArray("name", "\xfe", "ip", "h", "port", "1", "quorum", "1")), ""},
		{"", respArray(respArray("name", "a", "ip", "h", "port", "1", "failover-timeout", "NaN", "quorum", "1e999"), respArray("name", "a", "ip", "h")), "-ERR no such master\r\n"},
		{"", "*1\r\n*3\r\n$4\r\nname\r\n$1\r\na\r\n$2\r\nip\r\n", "*1\r\n*2\r\n+flags\r\n*1\r\n+x\r\n"},
		{"", "*-1\r\n", "$5\r\nhello\r\n"},
		{"", "*99999999\r\n", "%2\r\n*0\r\n:1\r\n"},
	} {
		f.Add(seed.info, []byte(seed.masters), []byte(seed.peers))
	}
	f.Fuzz(func(t *testing.T, infoText string, mastersReply, peersReply []byte) {
		sc := sample.NewScrape(infoTestTime, labels.FromStrings("instance", "fuzz", "job", "redis"))
		if in, err := ParseInfo(infoText); err == nil && isSentinel(in) {
			emitSentinelInfo(sc, in)
		}
		names := map[string]bool{}
		for _, m := range sentinelMasters(readRESP(mastersReply)) {
			ip, port := m.fields["ip"], m.fields["port"]
			if m.name == "" || names[validUTF8(m.name)] || m.fields["name"] != m.name {
				t.Errorf("master %q read twice or without its name", m.name)
			}
			if ip == "" || port == "" || m.address != ip+":"+port {
				t.Errorf("master %q: address %q is not its ip %q and port %q", m.name, m.address, ip, port)
			}
			names[validUTF8(m.name)] = true
			emitSentinelSettings(sc, m.fields, []string{"master_name", validUTF8(m.name), "master_address", validUTF8(m.address)})
		}
		peers := readRESP(peersReply)
		entries, _ := peers.([]any)
		if n := countUp(peers); n < 0 || n > len(entries) {
			t.Errorf("countUp = %d of %d entries", n, len(entries))
		}
		checkScrape(t, sc)
	})
}

// respArray is a RESP2 array reply; an element that is already a reply
// (starts with *) goes in as it is, others as bulk strings.
func respArray(elems ...string) string {
	var b strings.Builder
	b.WriteString("*" + strconv.Itoa(len(elems)) + "\r\n")
	for _, e := range elems {
		if strings.HasPrefix(e, "*") {
			b.WriteString(e)
			continue
		}
		b.WriteString("$" + strconv.Itoa(len(e)) + "\r\n" + e + "\r\n")
	}
	return b.String()
}

// readRESP reads one RESP2/RESP3 reply into the values go-redis returns
// for it: string, int64, float64, bool, nil, []any, map[any]any, and an
// error for an error reply. What cannot be read ends the reply as nil; a
// map key that cannot be a Go map key is left out.
func readRESP(b []byte) any {
	v, _ := respValue(&b)
	return v
}

func respValue(b *[]byte) (any, bool) {
	line, ok := respLine(b)
	if !ok || line == "" {
		return nil, false
	}
	body := line[1:]
	switch line[0] {
	case '+':
		return body, true
	case '-', '!':
		return errors.New(body), true
	case ':':
		n, err := strconv.ParseInt(body, 10, 64)
		return n, err == nil
	case ',':
		x, err := strconv.ParseFloat(body, 64)
		return x, err == nil
	case '#':
		return body == "t", body == "t" || body == "f"
	case '_':
		return nil, true
	case '$', '=':
		n, err := strconv.Atoi(body)
		if err != nil || n < 0 {
			return nil, err == nil && n == -1
		}
		if n+2 > len(*b) {
			return nil, false
		}
		s := string((*b)[:n])
		*b = (*b)[n+2:]
		if line[0] == '=' && len(s) >= 4 {
			s = s[4:] // "txt:"
		}
		return s, true
	case '*', '~', '>':
		n, err := strconv.Atoi(body)
		if err != nil || n < 0 {
			return nil, err == nil && n == -1
		}
		var out []any
		for range min(n, len(*b)) {
			v, ok := respValue(b)
			if !ok {
				return out, false
			}
			out = append(out, v)
		}
		return out, len(out) == n
	case '%':
		n, err := strconv.Atoi(body)
		if err != nil || n < 0 {
			return nil, false
		}
		out := map[any]any{}
		for range n {
			k, ok := respValue(b)
			if !ok {
				return out, false
			}
			v, ok := respValue(b)
			if !ok {
				return out, false
			}
			switch k.(type) {
			case []any, map[any]any:
			default:
				out[k] = v
			}
		}
		return out, true
	}
	return nil, false
}

// respLine takes one CRLF-terminated line off b.
func respLine(b *[]byte) (string, bool) {
	i := strings.Index(string(*b), "\r\n")
	if i < 0 {
		return "", false
	}
	line := string((*b)[:i])
	*b = (*b)[i+2:]
	return line, true
}
