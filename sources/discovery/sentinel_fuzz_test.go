package discovery

import (
	"log/slog"
	"net"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// FuzzSentinelDiscovery feeds what sentinels answer through the parsers of
// Sentinel discovery: a SENTINEL get-master-addr-by-name reply (one element
// a line, as redis-cli prints it), SENTINEL replicas / sentinels entries
// (flat key, value lines; entries apart by an empty line) and a
// +switch-master payload, which goes in through Sentinel.event as if it
// came from Pub/Sub. Nothing may panic; a refused reply is an error naming
// the command and the reply; and every address that comes out must be one
// the agent can scrape as it is: host:port with a host and a port in
// 1-65535, which a target of the entry's scheme keeps as its instance.
// Interesting inputs found by fuzzing are kept in
// testdata/fuzz/FuzzSentinelDiscovery.
func FuzzSentinelDiscovery(f *testing.F) {
	replicas := "name\n10.0.0.2:6379\nip\n10.0.0.2\nport\n6379\nrunid\n8a1c6b5e\nflags\nslave\n" +
		"link-pending-commands\n0\nmaster-link-status\nok\nmaster-host\n10.0.0.1\nmaster-port\n6379\nslave-priority\n100\n\n" +
		"name\n[::1]:6380\nip\n::1\nport\n6380\nflags\ns_down,slave,disconnected\n\n" +
		"name\nx\nip\n\nport\n6381\n"
	sentinels := "name\nb1f5e0e4\nip\n10.0.0.12\nport\n26379\nrunid\nb1f5e0e4\nflags\nsentinel\nvoted-leader\n?\n\n" +
		"name\nc2\nip\nsentinel-3.example.net\nport\n26379\nflags\no_down,sentinel\n"
	for _, seed := range []struct{ addr, entries, payload string }{
		{"10.0.0.1\n6379", replicas, "mymaster 10.0.0.1 6379 10.0.0.2 6379"},
		{"::1\n6379", sentinels, "mymaster ::1 6379 ::2 6380"},
		{"redis-1.example.net\n6379", "", "other 10.0.0.1 6379 10.0.0.2 6379"},
		{"", "", ""},
		{"10.0.0.1", "ip\n10.0.0.1", "mymaster 10.0.0.1 6379 10.0.0.2"},
		{"\n6379", "ip\n\nport\n\n", "mymaster a b  c d e"},
		{"10.0.0.1\n0", "ip\n10.0.0.1\nport\n65536\n\nip\nh\nport\n-1", "mymaster 10.0.0.1 6379 10.0.0.2 0"},
		{"10.0.0.1\nredis", "ip\nh/x\nport\n1\n\nip\nu:p@h\nport\n2", "mymaster 10.0.0.1 6379 h?x#y 6379"},
		{"10.0.0.1\n6379\n6380", "ip\n[::1]\nport\n06379", "  mymaster\t10.0.0.1 6379 10.0.0.2 +6379 "},
	} {
		f.Add(seed.addr, seed.entries, seed.payload)
	}
	cfg := SentinelConfig{MasterName: "mymaster", Addrs: []string{"rediss://10.0.0.11:26379"}}
	s, err := NewSentinel(cfg, time.Hour, NewSentinelMetrics(prometheus.NewRegistry()), slog.New(slog.DiscardHandler))
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, addrReply, entryReply, payload string) {
		hp := strings.Split(addrReply, "\n")
		if addr, err := masterAddr(hp); err != nil {
			if msg := err.Error(); !strings.Contains(msg, "get-master-addr-by-name") || !strings.Contains(msg, strconv.Quote(hp[0])) {
				t.Errorf("error %q does not name the command and the reply %q", msg, hp)
			}
		} else {
			checkSentinelAddr(t, &cfg, "get-master-addr-by-name", addr)
		}

		var entries []map[string]string
		for _, text := range strings.Split(entryReply, "\n\n") {
			lines, e := strings.Split(text, "\n"), map[string]string{}
			for i := 0; i+1 < len(lines); i += 2 {
				e[lines[i]] = lines[i+1]
			}
			entries = append(entries, e)
		}
		addrs := instanceAddrs(entries)
		if !slices.IsSorted(addrs) || len(slices.Compact(slices.Clone(addrs))) != len(addrs) {
			t.Errorf("instance addresses %q not sorted and unique", addrs)
		}
		for _, a := range addrs {
			checkSentinelAddr(t, &cfg, "replicas/sentinels", a)
			if !slices.ContainsFunc(entries, func(e map[string]string) bool { return net.JoinHostPort(e["ip"], e["port"]) == a }) {
				t.Errorf("address %q is no entry's ip and port", a)
			}
		}

		s.event("fuzz", "+switch-master", payload)
		select {
		case addr := <-s.nudge:
			checkSentinelAddr(t, &cfg, "+switch-master", addr)
			if f := strings.Fields(payload); f[0] != cfg.MasterName {
				t.Errorf("+switch-master %q about another master taken", payload)
			}
		default:
		}
	})
}

// checkSentinelAddr fails unless addr is host:port with a host and a port
// in 1-65535 written as a number is, and the target the entry makes of it
// is valid with addr as its instance.
func checkSentinelAddr(t *testing.T, cfg *SentinelConfig, from, addr string) {
	t.Helper()
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		t.Errorf("%s: address %q: %v", from, addr, err)
		return
	}
	if p, err := strconv.Atoi(port); host == "" || err != nil || p < 1 || p > 65535 || strconv.Itoa(p) != port {
		t.Errorf("%s: address %q: empty host, or port not in 1-65535", from, addr)
	}
	tc := cfg.serverTarget("", "replica", addr)
	if err := tc.Validate(); err != nil {
		t.Errorf("%s: address %q makes an invalid target: %v", from, addr, err)
	} else if tc.Instance() != addr {
		t.Errorf("%s: address %q makes a target of instance %q", from, addr, tc.Instance())
	}
}
