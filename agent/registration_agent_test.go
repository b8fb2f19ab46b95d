package agent

import (
	"errors"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/prometheus/common/model"

	"github.com/redwire/redwire/internal/harness"
	"github.com/redwire/redwire/sources/redis"
)

// TestAgentRegistersInEtcd runs the whole agent with registration.etcd:
// the key names its listen URL and targets, says degraded while the
// receiver is down, and is gone as soon as the agent stops gracefully.
func TestAgentRegistersInEtcd(t *testing.T) {
	t.Parallel()
	e := harness.StartEtcd(t)
	r := harness.StartRedis(t)
	prom := harness.StartPrometheus(t)
	cfg := editedTestConfig(t, prom.WriteURL(), func(c *Config) {
		c.Registration.Etcd = &EtcdRegistrationConfig{Endpoints: []string{e.Endpoint()}, AgentID: "edge-042",
			LeaseTTL: model.Duration(10 * time.Second)}
	}, redis.TargetConfig{Addr: r.URL()})
	a := runAgent(t, cfg)
	key := DefaultRegistrationKeyPrefix + "/edge-042"

	waitRegistered(t, e, key, func(s RegistrationState) error {
		if s.ListenURL != "http://"+cfg.Web.ListenAddress || !slices.Equal(s.Targets, []string{r.Addr()}) || s.Version != "test" {
			return fmt.Errorf("state %+v", s)
		}
		return nil
	})
	prom.Stop()
	waitRegistered(t, e, key, func(s RegistrationState) error {
		if !s.Degraded {
			return errors.New("not degraded yet")
		}
		return nil
	})
	prom.Start()

	a.stop()
	resp, err := regKey(t, e, key)
	if err != nil {
		t.Fatal(err)
	}
	if len(resp.Kvs) != 0 {
		t.Errorf("key %s still there after a graceful stop: %s", key, resp.Kvs[0].Value)
	}
}
