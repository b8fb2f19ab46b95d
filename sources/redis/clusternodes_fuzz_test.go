package redis

import (
	"net"
	"strconv"
	"strings"
	"testing"
)

// FuzzParseClusterNodes feeds arbitrary replies to ParseClusterNodes. It
// must never panic and must return either nodes or an error, never both;
// every node it returns must be one a caller can use without checking
// again: an ID, an Addr that is empty or host:port with a port in 1-65535
// (the host may be empty: a node not yet knowing its IP), a slot count
// within the key space, and the role booleans agreeing with the flags.
// Seeds are the
// captured reply and the variants of the unit tests; interesting inputs
// found by fuzzing are kept in testdata/fuzz/FuzzParseClusterNodes.
func FuzzParseClusterNodes(f *testing.F) {
	const id = "e7d1eecce10fd6bb5eb35b9f99a514335d9ba9ca"
	f.Add(clusterNodesReply)
	for _, seed := range []string{
		"",
		"\n\r\n",
		id + " 127.0.0.1:30001 myself,master - 0 0 1 connected 0-5460",
		id + " ::1:6379@16379 master - 0 0 1 connected 42",
		id + " :0@0 master,noaddr - 1 2 1 disconnected",
		id + " :7000@17000 myself,master - 0 0 0 connected",
		id + " 10.0.0.1:6379@16379,db-1,shard-id=abc master,fail?,nofailover - 0 0 4 connected",
		id + " 10.0.0.1:6379@16379 master - 0 0 4 connected 0-10 5 10-20 [21->-x] [22-<-y]",
		id + " [::1]:6379@16379 slave,fail " + id + " 0 0 4 connected 0-16383",
		"e1 127.0.0.1:7002@17002 master - 0 0 1 connected 10-5",
		"e1 127.0.0.1:7002@17002 master,,x - 0 0 1 connected",
	} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, text string) {
		nodes, err := ParseClusterNodes(text)
		if err != nil {
			if nodes != nil {
				t.Fatal("ParseClusterNodes returned both nodes and an error")
			}
			if !strings.Contains(err.Error(), "line ") {
				t.Errorf("error %q names no line", err)
			}
			return
		}
		for _, n := range nodes {
			if n.ID == "" || strings.ContainsAny(n.ID, " \t\r\n") {
				t.Errorf("bad ID %q", n.ID)
			}
			if n.Slots < 0 || n.Slots > clusterSlots {
				t.Errorf("%s: %d slots", n.ID, n.Slots)
			}
			if n.Master != n.HasFlag("master") || n.Failed != n.HasFlag("fail") || n.Myself != n.HasFlag("myself") {
				t.Errorf("%s: role booleans disagree with flags %q: %+v", n.ID, n.Flags, n)
			}
			if n.BusPort < 0 || n.BusPort > 65535 {
				t.Errorf("%s: bus port %d", n.ID, n.BusPort)
			}
			if n.Addr == "" {
				continue
			}
			host, port, err := net.SplitHostPort(n.Addr)
			if err != nil {
				t.Errorf("%s: Addr %q: %v", n.ID, n.Addr, err)
				continue
			}
			if p, err := strconv.Atoi(port); err != nil || p < 1 || p > 65535 || strconv.Itoa(p) != port {
				t.Errorf("%s: Addr %q: port not canonical or out of range", n.ID, n.Addr)
			}
			if strings.ContainsAny(host, " \t\r\n@,") {
				t.Errorf("%s: Addr %q: host with separators", n.ID, n.Addr)
			}
		}
	})
}
