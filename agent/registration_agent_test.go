package agent

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/common/model"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/redwire/redwire/agent/registration"
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
		c.Registration.Etcd = &registration.EtcdConfig{Endpoints: []string{e.Endpoint()}, AgentID: "edge-042",
			LeaseTTL: model.Duration(10 * time.Second)}
	}, redis.TargetConfig{Addr: r.URL()})
	a := runAgent(t, cfg)
	key := registration.DefaultKeyPrefix + "/edge-042"

	waitRegistered(t, e, key, func(s registration.State) error {
		if s.ListenURL != "http://"+cfg.Web.ListenAddress || !slices.Equal(s.Targets, []string{r.Addr()}) || s.Version != "test" {
			return fmt.Errorf("state %+v", s)
		}
		return nil
	})
	prom.Stop()
	waitRegistered(t, e, key, func(s registration.State) error {
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

// TestRegistrationConfigErrorNamesLine: a registration error in a config
// file names its full path and line, as every other setting's does.
func TestRegistrationConfigErrorNamesLine(t *testing.T) {
	src := []byte("registration:\n  etcd:\n    endpoints: []\n")
	cfg, err := Parse(src)
	if err != nil {
		t.Fatal(err)
	}
	err = cfg.Finalize()
	var fe *FieldError
	if !errors.As(err, &fe) || fe.Path != "registration.etcd.endpoints" {
		t.Fatalf("Finalize: %v, want a *FieldError at registration.etcd.endpoints", err)
	}
	if fe.Line != 3 || !strings.HasPrefix(err.Error(), "line 3: registration.etcd.endpoints: required") {
		t.Errorf("line %d, %q; want line 3", fe.Line, err)
	}
}

// The helpers below read the agent's key as a central inventory would;
// the registration package's tests have fuller ones.

// regKey reads the agent's key: no Kvs if absent.
func regKey(t *testing.T, e *harness.Etcd, key string) (*clientv3.GetResponse, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	return e.Client().Get(ctx, key)
}

// waitRegistered waits until the key holds a state want accepts.
func waitRegistered(t *testing.T, e *harness.Etcd, key string, want func(registration.State) error) {
	t.Helper()
	harness.WaitFor(t, 20*time.Second, "key "+key, func() (bool, error) {
		resp, err := regKey(t, e, key)
		if err != nil {
			return false, err
		}
		if len(resp.Kvs) == 0 {
			return false, errors.New("no key")
		}
		var got registration.State
		if err := json.Unmarshal(resp.Kvs[0].Value, &got); err != nil {
			return false, fmt.Errorf("value %s: %w", resp.Kvs[0].Value, err)
		}
		if err := want(got); err != nil {
			return false, fmt.Errorf("value %s: %w", resp.Kvs[0].Value, err)
		}
		return resp.Kvs[0].Lease != int64(clientv3.NoLease), errors.New("key without a lease")
	})
}
