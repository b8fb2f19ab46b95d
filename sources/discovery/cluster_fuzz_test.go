package discovery

import (
	"net/url"
	"slices"
	"testing"
	"time"

	"github.com/redwire/redwire/sources/redis"
)

// FuzzClusterTargets feeds a seed URL and a CLUSTER NODES reply through
// Validate, NewCluster and targets. Nothing may panic; a seed that
// Validate accepts must make a discoverer; and whatever the reply, every
// target must be one the agent can use as it is: valid, unique and sorted
// by instance, with the seed's scheme, the instance its node's address,
// and the redis_cluster label. Interesting inputs found by fuzzing are
// kept in testdata/fuzz/FuzzClusterTargets.
func FuzzClusterTargets(f *testing.F) {
	reply := "a 10.0.0.2:7000@17000 master - 0 0 1 connected 0-16383\n" +
		"b ::1:7001@17001 slave,fail a 0 0 1 disconnected\n" +
		"c 10.0.0.2:7000@17000 slave a 0 0 1 connected\n" +
		"d :0@0 master,noaddr - 0 0 3 disconnected\n" +
		"e 10.0.0.4:7000@17000 handshake - 0 0 0 connected\n"
	for _, seed := range []string{
		"redis://10.0.0.1:7000", "rediss://u:p@h", "valkeys://:p@[::1]:1/0", "unix:///x", "redis://h:99999", "redis://",
	} {
		f.Add(seed, reply)
	}
	f.Fuzz(func(t *testing.T, seed, text string) {
		cfg := ClusterConfig{Name: "fz", Seeds: []string{seed}}
		if cfg.Validate() != nil {
			return
		}
		c, err := NewCluster(cfg, time.Second, nil, nil)
		if err != nil {
			t.Fatalf("valid config %q refused by NewCluster: %v", seed, err)
		}
		nodes, err := redis.ParseClusterNodes(text)
		if err != nil {
			return
		}
		seedURL, _ := url.Parse(seed)
		var instances []string
		for _, tc := range c.targets(nodes) {
			if err := tc.Validate(); err != nil {
				t.Errorf("target %q: %v", redis.RedactAddr(tc.Addr), err)
				continue
			}
			u, _ := url.Parse(tc.Addr)
			if u.Scheme != seedURL.Scheme || u.User.String() != seedURL.User.String() || tc.Labels[ClusterLabel] != "fz" {
				t.Errorf("target %+v does not carry the seed's scheme and userinfo and the cluster label", tc)
			}
			instances = append(instances, tc.Instance())
		}
		if !slices.IsSorted(instances) || len(slices.Compact(slices.Clone(instances))) != len(instances) {
			t.Errorf("instances %q not sorted and unique", instances)
		}
		for _, in := range instances {
			found := false
			for _, n := range nodes {
				found = found || n.Addr == in
			}
			if !found {
				t.Errorf("instance %q is no node's address", in)
			}
		}
	})
}
