package redis

import (
	"context"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/redwire/redwire/internal/harness"
)

// clusterNodesReply is a Redis 7.0 reply captured from a 3+3 cluster, with
// a hostname, a migration in progress and a failed replica edited in.
const clusterNodesReply = `05584403eeaf95e7f597dcff4b5b820b8ab51cc7 127.0.0.1:46221@39509 slave e64290b2c70d5726da7c848ca0d9f957c4e524ca 0 1795546246000 3 connected
4979b7f14fe6a0ab23e41ccf3a4495b538bf9800 127.0.0.1:43975@39679,replica-2.example slave,fail ddd439a1154418085eab616af078a61d7fadc3c7 1795546245000 1795546245000 2 disconnected
6fe38e153f92944017c32f9c2848bd48a593784b 127.0.0.1:39051@35953 myself,master - 0 1795546242000 1 connected 0-5460 [93->-ddd439a1154418085eab616af078a61d7fadc3c7]
60b3383770bf3b8dd373ad10efb291b980e75684 127.0.0.1:35477@40495 slave 6fe38e153f92944017c32f9c2848bd48a593784b 0 1795546246721 1 connected
ddd439a1154418085eab616af078a61d7fadc3c7 127.0.0.1:38225@39811 master - 0 1795546245717 2 connected 5461-10922 [93-<-6fe38e153f92944017c32f9c2848bd48a593784b]
e64290b2c70d5726da7c848ca0d9f957c4e524ca 127.0.0.1:36667@43511 master - 0 1795546247725 3 connected 10923-16383
`

func TestParseClusterNodes(t *testing.T) {
	nodes, err := ParseClusterNodes(clusterNodesReply)
	if err != nil {
		t.Fatal(err)
	}
	want := []ClusterNode{
		{ID: "05584403eeaf95e7f597dcff4b5b820b8ab51cc7", Addr: "127.0.0.1:46221", BusPort: 39509, Flags: []string{"slave"},
			Replica: true, MasterID: "e64290b2c70d5726da7c848ca0d9f957c4e524ca", LinkConnected: true},
		{ID: "4979b7f14fe6a0ab23e41ccf3a4495b538bf9800", Addr: "127.0.0.1:43975", BusPort: 39679, Hostname: "replica-2.example",
			Flags: []string{"slave", "fail"}, Replica: true, Failed: true, MasterID: "ddd439a1154418085eab616af078a61d7fadc3c7"},
		{ID: "6fe38e153f92944017c32f9c2848bd48a593784b", Addr: "127.0.0.1:39051", BusPort: 35953, Flags: []string{"myself", "master"},
			Myself: true, Master: true, LinkConnected: true, Slots: 5461},
		{ID: "60b3383770bf3b8dd373ad10efb291b980e75684", Addr: "127.0.0.1:35477", BusPort: 40495, Flags: []string{"slave"},
			Replica: true, MasterID: "6fe38e153f92944017c32f9c2848bd48a593784b", LinkConnected: true},
		{ID: "ddd439a1154418085eab616af078a61d7fadc3c7", Addr: "127.0.0.1:38225", BusPort: 39811, Flags: []string{"master"},
			Master: true, LinkConnected: true, Slots: 5462},
		{ID: "e64290b2c70d5726da7c848ca0d9f957c4e524ca", Addr: "127.0.0.1:36667", BusPort: 43511, Flags: []string{"master"},
			Master: true, LinkConnected: true, Slots: 5461},
	}
	if !reflect.DeepEqual(nodes, want) {
		t.Errorf("got\n%+v\nwant\n%+v", nodes, want)
	}
}

// TestParseClusterNodesVariants: one line each for the formats and flags
// that a captured healthy cluster does not show.
func TestParseClusterNodesVariants(t *testing.T) {
	const id = "e7d1eecce10fd6bb5eb35b9f99a514335d9ba9ca"
	for _, tc := range []struct {
		name, line string
		check      func(ClusterNode) bool
	}{
		{"redis 3, no bus port", id + " 127.0.0.1:30001 myself,master - 0 0 1 connected 0-5460",
			func(n ClusterNode) bool { return n.Addr == "127.0.0.1:30001" && n.BusPort == 0 && n.Slots == 5461 }},
		{"ipv6 without brackets", id + " ::1:6379@16379 master - 0 0 1 connected 42",
			func(n ClusterNode) bool { return n.Addr == "[::1]:6379" && n.BusPort == 16379 && n.Slots == 1 }},
		{"noaddr", id + " :0@0 master,noaddr - 1 2 1 disconnected",
			func(n ClusterNode) bool { return n.Addr == "" && n.HasFlag("noaddr") && !n.LinkConnected }},
		{"handshake", id + " 127.0.0.1:7005@17005 handshake - 0 0 0 connected",
			func(n ClusterNode) bool { return n.HasFlag("handshake") && !n.Master && !n.Replica }},
		{"own IP not learnt yet", id + " :7000@17000 myself,master - 0 0 0 connected",
			func(n ClusterNode) bool { return n.Addr == ":7000" && n.Myself }},
		{"suspected only", id + " 10.0.0.1:6379@16379 master,fail?,nofailover - 0 0 4 connected",
			func(n ClusterNode) bool { return !n.Failed && n.HasFlag("fail?") && n.HasFlag("nofailover") }},
		{"nodes.conf aux fields", id + " 10.0.0.1:6379@16379,,shard-id=abc master - 0 0 4 connected",
			func(n ClusterNode) bool { return n.Hostname == "" && n.Addr == "10.0.0.1:6379" }},
		{"hostname and aux fields", id + " 10.0.0.1:6379@16379,db-1,shard-id=abc master - 0 0 4 connected",
			func(n ClusterNode) bool { return n.Hostname == "db-1" }},
		{"repeated and overlapping slots", id + " 10.0.0.1:6379@16379 master - 0 0 4 connected 0-10 5 10-20 [21->-x] [22-<-y]",
			func(n ClusterNode) bool { return n.Slots == 21 }},
		{"every slot", id + " 10.0.0.1:6379@16379 master - 0 0 4 connected 0-16383 0-16383",
			func(n ClusterNode) bool { return n.Slots == 16384 }},
		{"leading zeros", id + " 10.0.0.1:06379@016379 master - 0 0 4 connected",
			func(n ClusterNode) bool { return n.Addr == "10.0.0.1:6379" && n.BusPort == 16379 }},
		{"crlf", id + " 10.0.0.1:6379@16379 master - 0 0 4 connected 7\r",
			func(n ClusterNode) bool { return n.Slots == 1 && n.LinkConnected }},
	} {
		nodes, err := ParseClusterNodes("\n" + tc.line + "\n\n")
		if err != nil || len(nodes) != 1 || !tc.check(nodes[0]) {
			t.Errorf("%s: %+v, %v", tc.name, nodes, err)
		}
	}
}

// TestParseClusterNodesErrors: a malformed line fails the whole reply and
// the error names the line and the field.
func TestParseClusterNodesErrors(t *testing.T) {
	const good = "e0 127.0.0.1:7001@17001 myself,master - 0 0 1 connected 0-5460\n"
	for _, tc := range []struct{ line, want string }{
		{"e1 127.0.0.1:7002@17002 master - 0 0 1", "7 fields"},
		{"e1 127.0.0.1@17002 master - 0 0 1 connected", "no port"},
		{"e1 127.0.0.1:x@17002 master - 0 0 1 connected", `bad port "x"`},
		{"e1 127.0.0.1:70000@17002 master - 0 0 1 connected", `bad port "70000"`},
		{"e1 127.0.0.1:7002@bus master - 0 0 1 connected", `bad bus port "bus"`},
		{"e1 0[0:7002@17002 master - 0 0 1 connected", `bad host "0[0"`},
		{"e1 127.0.0.1:7002@17002 master,,x - 0 0 1 connected", "empty flag"},
		{"e1 127.0.0.1:7002@17002 master - -1 0 1 connected", "ping-sent"},
		{"e1 127.0.0.1:7002@17002 master - 0 now 1 connected", "pong-recv"},
		{"e1 127.0.0.1:7002@17002 master - 0 0 x connected", "config-epoch"},
		{"e1 127.0.0.1:7002@17002 master - 0 0 1 up", "link-state"},
		{"e1 127.0.0.1:7002@17002 master - 0 0 1 connected 0-16384", `slot entry "0-16384"`},
		{"e1 127.0.0.1:7002@17002 master - 0 0 1 connected 10-5", `slot entry "10-5"`},
		{"e1 127.0.0.1:7002@17002 master - 0 0 1 connected x", `slot entry "x"`},
		{"e1 127.0.0.1:7002@17002 master - 0 0 1 connected [5]", `slot entry "[5]"`},
		{"e1 127.0.0.1:7002@17002 master - 0 0 1 connected [->-e0]", `slot entry "[->-e0]"`},
		{"e1 127.0.0.1:7002@17002 master - 0 0 1 connected [5-6->-e0]", `slot entry "[5-6->-e0]"`},
		{"e1 127.0.0.1:7002@17002 master - 0 0 1 connected [5-<-]", `slot entry "[5-<-]"`},
	} {
		nodes, err := ParseClusterNodes(good + "\n" + tc.line + "\n")
		if err == nil || nodes != nil {
			t.Errorf("%q: %v, %v; want an error", tc.line, nodes, err)
			continue
		}
		if !strings.Contains(err.Error(), "line 3") || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%q: error %q, want it to name line 3 and %q", tc.line, err, tc.want)
		}
	}
}

// TestClusterNodesFromServer: ClusterNodes asks a real cluster over a
// connection with the target's credentials and sees every node; a lone
// node that does not know its own IP yet is listed at the address it was
// reached at.
func TestClusterNodesFromServer(t *testing.T) {
	nodes := harness.StartRedisCluster(t, 3, harness.WithPassword("pw"))
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	got, err := ClusterNodes(ctx, TargetConfig{Addr: "redis://" + nodes[1].Addr(), Password: "pw"})
	if err != nil {
		t.Fatal(err)
	}
	addrs := map[string]bool{}
	slots := 0
	for _, n := range got {
		addrs[n.Addr] = true
		slots += n.Slots
		if n.Myself != (n.Addr == nodes[1].Addr()) || !n.Master || !n.LinkConnected {
			t.Errorf("node %+v", n)
		}
	}
	for _, n := range nodes {
		if !addrs[n.Addr()] {
			t.Errorf("%s missing from %+v", n.Addr(), got)
		}
	}
	if len(got) != 3 || slots != clusterSlots {
		t.Errorf("%d nodes owning %d slots, want 3 owning %d", len(got), slots, clusterSlots)
	}

	if _, err := ClusterNodes(ctx, TargetConfig{Addr: "redis://" + nodes[1].Addr(), Password: "wrong"}); err == nil ||
		!strings.Contains(err.Error(), nodes[1].Addr()) {
		t.Errorf("wrong password: error %v, want one naming %s", err, nodes[1].Addr())
	}

	lone := harness.StartRedis(t, harness.WithArgs("--cluster-enabled", "yes",
		"--cluster-config-file", filepath.Join(t.TempDir(), "nodes.conf"), "--cluster-port", strconv.Itoa(harness.FreePort(t))))
	got, err = ClusterNodes(ctx, TargetConfig{Addr: lone.URL()})
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 1 || got[0].Addr != lone.Addr() || !got[0].Myself {
		t.Errorf("lone node %s: %+v", lone.Addr(), got)
	}
}
