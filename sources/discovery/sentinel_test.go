package discovery

import (
	"context"
	"net"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	yaml "go.yaml.in/yaml/v2"

	"github.com/redwire/redwire/internal/harness"
)

// byRole indexes a group's targets: role → sorted addresses (without the
// scheme), and the instance of the master.
func byRole(t *testing.T, g Group) (map[string][]string, string) {
	t.Helper()
	out := map[string][]string{}
	master := ""
	for _, tc := range g.Targets {
		role := tc.Labels[LabelSentinelRole]
		out[role] = append(out[role], strings.TrimPrefix(tc.Addr, "redis://"))
		if role == "master" {
			master = tc.Instance()
		}
		if tc.Labels[LabelMasterName] != g.Source[len("sentinel:"):] {
			t.Errorf("target %s: %s=%q", tc.Addr, LabelMasterName, tc.Labels[LabelMasterName])
		}
	}
	for _, v := range out {
		slices.Sort(v)
	}
	return out, master
}

func addrs(rs []*harness.Redis) []string {
	var out []string
	for _, r := range rs {
		out = append(out, r.Addr())
	}
	slices.Sort(out)
	return out
}

func TestSentinelFollowsFailover(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a master, 2 replicas and 3 sentinels")
	}
	sg := harness.StartSentinelGroup(t, "mymaster", 2, 3)
	reg := prometheus.NewRegistry()
	log, logs := testLogger(t)
	cfg := SentinelConfig{MasterName: "mymaster", Addrs: addrs(sg.Sentinels)}
	// An hour: only Pub/Sub and nudges can bring the failover in time.
	s, err := NewSentinel(cfg, time.Hour, NewSentinelMetrics(reg), log)
	if err != nil {
		t.Fatal(err)
	}
	up := make(chan Group, 16)
	runDiscoverer(t, s, up)

	g := nextGroup(t, up)
	roles, master := byRole(t, g)
	if master != "mymaster" || !slices.Equal(roles["master"], []string{sg.Master.Addr()}) {
		t.Fatalf("master target: instance %q at %v, want mymaster at %s", master, roles["master"], sg.Master.Addr())
	}
	if !slices.Equal(roles["replica"], addrs(sg.Replicas)) || !slices.Equal(roles["sentinel"], addrs(sg.Sentinels)) {
		t.Fatalf("replicas %v (want %v), sentinels %v (want %v)", roles["replica"], addrs(sg.Replicas), roles["sentinel"], addrs(sg.Sentinels))
	}
	if g.Refresh == nil {
		t.Error("a sentinel group should offer Refresh")
	}

	old := sg.Master.Addr()
	sg.Master.Kill()
	// The next group with another master is the failover; groups that
	// only drop or add a replica may come first.
	var newMaster string
	for newMaster == "" || newMaster == old {
		g = nextGroup(t, up)
		roles, _ = byRole(t, g)
		if len(roles["master"]) == 1 {
			newMaster = roles["master"][0]
		}
	}
	if !slices.Contains(addrs(sg.Replicas), newMaster) {
		t.Fatalf("new master %s is not one of the replicas %v", newMaster, addrs(sg.Replicas))
	}
	if want, err := sg.MasterAddr(context.Background()); err != nil || want != newMaster {
		t.Fatalf("sentinels say the master is %s (%v), discovery says %s", want, err, newMaster)
	}
	if !strings.Contains(logs.String(), "+switch-master received") {
		t.Error("the failover was not taken from +switch-master")
	}
	// Let the other sentinels' announcements and a full resolution come
	// through: the count must stay at one failover.
	s.Refresh()
	harness.WaitFor(t, groupWait, "the promoted replica to leave the replica targets", func() (bool, error) {
		select {
		case g = <-up:
		default:
		}
		roles, _ = byRole(t, g)
		return !slices.Contains(roles["replica"], newMaster), nil
	})
	if n := testutil.ToFloat64(s.m.failovers.WithLabelValues("mymaster")); n != 1 {
		t.Errorf("redwire_sentinel_failovers_total = %v, want 1", n)
	}
	if n := testutil.ToFloat64(s.m.addressInfo.WithLabelValues("mymaster", newMaster)); n != 1 {
		t.Errorf("redwire_sentinel_master_address_info for %s = %v, want 1", newMaster, n)
	}
	if n := testutil.CollectAndCount(s.m.addressInfo); n != 1 {
		t.Errorf("redwire_sentinel_master_address_info has %d series, want only the current address", n)
	}
}

func TestSentinelUnreachableAtStart(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a master and a sentinel")
	}
	master := harness.StartRedis(t)
	port := harness.FreePort(t)
	reg := prometheus.NewRegistry()
	log, logs := testLogger(t)
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
	s, err := NewSentinel(SentinelConfig{MasterName: "mymaster", Addrs: []string{addr}}, time.Hour, NewSentinelMetrics(reg), log)
	if err != nil {
		t.Fatalf("an unreachable sentinel must not fail the start: %v", err)
	}
	up := make(chan Group, 4)
	runDiscoverer(t, s, up)
	harness.WaitFor(t, groupWait, "the error to be logged", func() (bool, error) {
		return strings.Contains(logs.String(), "no sentinel could resolve the master"), nil
	})
	if out := logs.String(); !strings.Contains(out, addr) {
		t.Errorf("the error should name the sentinel %s:\n%s", addr, out)
	}
	if v := testutil.ToFloat64(s.m.up.WithLabelValues("mymaster")); v != 0 {
		t.Errorf("redwire_sentinel_discovery_up = %v before any sentinel answered", v)
	}
	if len(up) != 0 {
		t.Fatal("a group was sent before any sentinel answered")
	}

	harness.StartSentinelOn(t, port, "mymaster", master.Addr())
	g := nextGroup(t, up)
	roles, _ := byRole(t, g)
	if !slices.Equal(roles["master"], []string{master.Addr()}) {
		t.Fatalf("master %v, want %s", roles["master"], master.Addr())
	}
	if v := testutil.ToFloat64(s.m.up.WithLabelValues("mymaster")); v != 1 {
		t.Errorf("redwire_sentinel_discovery_up = %v after the sentinel answered", v)
	}
	if n := strings.Count(logs.String(), "no sentinel could resolve the master"); n != 1 {
		t.Errorf("the outage was logged %d times, want once", n)
	}
}

func TestSentinelConfigErrors(t *testing.T) {
	for _, tc := range []struct {
		cfg  SentinelConfig
		want string
	}{
		{SentinelConfig{Addrs: []string{"h:1"}}, "master_name"},
		{SentinelConfig{MasterName: "m"}, "addrs"},
		{SentinelConfig{MasterName: "m", Addrs: []string{"h"}}, "addrs[0]"},
		{SentinelConfig{MasterName: "m", Addrs: []string{"redis://h:1", "rediss://h:2"}}, "mixes TLS"},
		{SentinelConfig{MasterName: "m", Addrs: []string{"h:1"}, Monitor: []string{"slaves"}}, "monitor[0]"},
		{SentinelConfig{MasterName: "m", Addrs: []string{"redis://u:secret@h"}}, "addrs[0]"},
	} {
		err := tc.cfg.Validate()
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%+v: got %v, want an error naming %q", tc.cfg, err, tc.want)
		}
		if err != nil && strings.Contains(err.Error(), "secret") {
			t.Errorf("error shows the password: %v", err)
		}
	}
}

func TestSentinelConfigRedactsSecrets(t *testing.T) {
	cfg := SentinelConfig{MasterName: "m", Addrs: []string{"redis://u:canary-pw@h:26379", "h2:26379"},
		SentinelPassword: "canary-sp", Password: "canary-p"}
	out, err := yaml.Marshal(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(out), "canary") {
		t.Errorf("a secret leaks into the printed config:\n%s", out)
	}
	if !strings.Contains(string(out), "h2:26379") {
		t.Errorf("addresses without secrets should print as they are:\n%s", out)
	}
}
