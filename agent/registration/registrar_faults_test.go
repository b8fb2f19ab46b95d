package registration

// Registration when things go wrong: the agent killed, etcd down at start
// or restarted, dead endpoints, errors inside 200 answers, a lease revoked
// behind the agent's back. The rig is in registration_test.go.

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"os/exec"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/redwire/redwire/internal/harness"
)

// regHelperEnv marks the test binary run as a registrar that is killed
// with SIGKILL, see init.
const regHelperEnv = "REDWIRE_TEST_REGISTRAR"

// init turns the test binary into a bare registrar when the kill test runs
// it: a process that is really SIGKILLed is the honest way to show the key
// outlives no cleanup for longer than its lease. It gets the config as
// JSON and exits, without deregistering, when its stdin closes (the test
// is gone), so it never outlives the test for long.
func init() {
	spec := os.Getenv(regHelperEnv)
	if spec == "" {
		return
	}
	var cfg EtcdConfig
	if err := json.Unmarshal([]byte(spec), &cfg); err != nil {
		fmt.Fprintln(os.Stderr, "registrar helper:", err)
		os.Exit(2)
	}
	go func() {
		io.Copy(io.Discard, os.Stdin)
		os.Exit(0)
	}()
	log := slog.New(slog.NewTextHandler(os.Stderr, nil))
	started := time.Now()
	New(&Config{Etcd: &cfg}, func() State { return State{StartedAt: started} }, nil, log).Run(context.Background())
	os.Exit(1)
}

// TestRegistrationLeaseExpiresAfterKill: an agent that dies without
// deregistering (kill -9, power loss) leaves its key behind for at most
// lease_ttl, then etcd removes it.
func TestRegistrationLeaseExpiresAfterKill(t *testing.T) {
	t.Parallel()
	e := harness.StartEtcd(t)
	cfg := regConfig(t, e, regTestTTL)
	spec, err := json.Marshal(cfg)
	if err != nil {
		t.Fatal(err)
	}
	bin, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, "-test.run=^$")
	cmd.Env = append(os.Environ(), regHelperEnv+"="+string(spec))
	var out harness.LogBuffer
	cmd.Stdout, cmd.Stderr = &out, &out
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		stdin.Close()
		cmd.Process.Kill()
		cmd.Wait()
		if t.Failed() {
			t.Logf("registrar process output:\n%s", out.String())
		}
	})
	key := cfg.key()
	lease := waitRegistered(t, e, key, nil)

	if err := cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	cmd.Wait()
	// The process is gone, the key is not: nobody deleted it, and the
	// lease was renewed at most ttl/3 ago.
	resp, err := regKey(t, e, key)
	if err != nil {
		t.Fatal(err)
	}
	if len(resp.Kvs) != 1 || clientv3.LeaseID(resp.Kvs[0].Lease) != lease {
		t.Fatalf("right after kill -9 the key is %v, want it still under lease %x", resp.Kvs, lease)
	}
	// "At most lease_ttl" without a stopwatch: the key is under a lease
	// granted for lease_ttl, and it goes when that lease expires, not
	// before (deleted) and not never (no lease, or one kept alive). The
	// bound on the wait only ends a broken run.
	ttl := int64(time.Duration(regTestTTL) / time.Second)
	live, err := e.Client().TimeToLive(context.Background(), lease)
	if err != nil {
		t.Fatal(err)
	}
	if live.GrantedTTL != ttl || live.TTL <= 0 || live.TTL > ttl {
		t.Fatalf("lease %x after kill -9: granted %d s, %d s left; want granted lease_ttl (%d s)", lease, live.GrantedTTL, live.TTL, ttl)
	}
	harness.WaitFor(t, time.Duration(regTestTTL)+time.Minute, "the key to expire with its lease", func() (bool, error) {
		resp, err := regKey(t, e, key)
		if err != nil {
			return false, err
		}
		if len(resp.Kvs) != 0 {
			return false, fmt.Errorf("key still there under lease %x", resp.Kvs[0].Lease)
		}
		// Read after the key: etcd deletes a lease's keys only once it
		// has expired, so an expired lease here is the cause, not a
		// race.
		left, err := leaseTTL(t, e, lease)
		if err != nil {
			return false, err
		}
		if left > 0 {
			t.Fatalf("key gone while its lease %x has %d s left: deleted, not expired", lease, left)
		}
		return true, nil
	})
}

// TestRegistrationEtcdDownAtStart: an unreachable etcd does not stop the
// registrar; it retries, reports down, logs it once, and registers as
// soon as etcd is there.
func TestRegistrationEtcdDownAtStart(t *testing.T) {
	t.Parallel()
	e := harness.StartEtcd(t)
	e.Stop()
	cfg := regConfig(t, e, regTestTTL)
	rig := startRegistrar(t, cfg)
	rig.reg.Changed() // never blocks, even with nobody registered
	harness.WaitFor(t, 20*time.Second, "three failed attempts", func() (bool, error) {
		n := testutil.ToFloat64(rig.reg.errs)
		return n >= 3, fmt.Errorf("redwire_registration_errors_total = %v", n)
	})
	if up := testutil.ToFloat64(rig.reg.up); up != 0 {
		t.Errorf("redwire_registration_up = %v with etcd down", up)
	}
	if n := rig.logs.Count("level=WARN", "service registration failed"); n != 1 {
		t.Errorf("%d warnings for %v failures, want 1 (once per state change):\n%s", n, testutil.ToFloat64(rig.reg.errs), rig.logs)
	}

	e.Start()
	waitRegistered(t, e, cfg.key(), func(s State) error {
		if s.AgentID != cfg.AgentID {
			return fmt.Errorf("agent_id %q", s.AgentID)
		}
		return nil
	})
	harness.WaitFor(t, 5*time.Second, "redwire_registration_up 1", func() (bool, error) {
		return testutil.ToFloat64(rig.reg.up) == 1, nil
	})
	if rig.logs.Count("level=INFO", "registered in etcd") != 1 {
		t.Errorf("registration not logged once")
	}
}

// TestRegistrationSurvivesEtcdRestart: after etcd crashes and comes back,
// the agent registers under a fresh lease and keeps it alive, so the key
// stays when the old lease expires; and a key deleted behind the agent's
// back comes back within a check interval.
func TestRegistrationSurvivesEtcdRestart(t *testing.T) {
	t.Parallel()
	e := harness.StartEtcd(t)
	cfg := regConfig(t, e, regTestTTL)
	rig := startRegistrar(t, cfg)
	key := cfg.key()
	old := waitRegistered(t, e, key, nil)

	e.Kill()
	harness.WaitFor(t, 20*time.Second, "the registrar to notice etcd is gone", func() (bool, error) {
		return testutil.ToFloat64(rig.reg.up) == 0, nil
	})
	e.Start()
	var lease clientv3.LeaseID
	harness.WaitFor(t, 20*time.Second, "the key under a new lease", func() (bool, error) {
		resp, err := regKey(t, e, key)
		if err != nil || len(resp.Kvs) == 0 {
			return false, fmt.Errorf("key: %v, %v", resp, err)
		}
		lease = clientv3.LeaseID(resp.Kvs[0].Lease)
		return lease != old, fmt.Errorf("still under the old lease %x", old)
	})
	// etcd restored the old lease with a fresh TTL; once it has expired,
	// only the agent's keepalives hold the key.
	harness.WaitFor(t, 20*time.Second, "the old lease to expire", func() (bool, error) {
		ttl, err := leaseTTL(t, e, old)
		return err == nil && ttl == -1, fmt.Errorf("old lease TTL %d, %v", ttl, err)
	})
	resp, err := regKey(t, e, key)
	if err != nil || len(resp.Kvs) != 1 || clientv3.LeaseID(resp.Kvs[0].Lease) != lease {
		t.Fatalf("after the old lease expired: %v, %v; want the key under %x", resp, err, lease)
	}
	if up := testutil.ToFloat64(rig.reg.up); up != 1 {
		t.Errorf("redwire_registration_up = %v after re-registering", up)
	}

	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	if _, err := e.Client().Delete(ctx, key); err != nil {
		t.Fatal(err)
	}
	harness.WaitFor(t, time.Duration(regTestTTL), "the deleted key to be written again", func() (bool, error) {
		resp, err := regKey(t, e, key)
		return err == nil && len(resp.Kvs) == 1, fmt.Errorf("%v, %v", resp, err)
	})
}

// TestRegistrationEndpointFailover: with the first endpoints dead (one
// closes connections, one never answers), the registrar registers at the
// next within its first attempt: dial_timeout bounds each endpoint's try,
// not the request. A graceful stop deregisters through the live one.
func TestRegistrationEndpointFailover(t *testing.T) {
	t.Parallel()
	e := harness.StartEtcd(t)
	cfg := regConfig(t, e, regTestTTL)
	dead, silent := closingEndpoint(t), silentEndpoint(t)
	cfg.Endpoints = []string{dead, "http://" + silent, e.Endpoint()}
	if err := validate(cfg); err != nil {
		t.Fatal(err)
	}
	rig := startRegistrar(t, cfg)
	lease := waitRegistered(t, e, cfg.key(), nil)
	if n := testutil.ToFloat64(rig.reg.errs); n != 0 {
		t.Errorf("redwire_registration_errors_total = %v; the dead endpoints failed the attempt instead of being skipped", n)
	}
	if n := rig.logs.Count("registered in etcd", "endpoint="+e.Endpoint()); n != 1 {
		t.Errorf("%d 'registered' lines naming %s:\n%s", n, e.Endpoint(), rig.logs)
	}
	rig.stop()
	if ttl, err := leaseTTL(t, e, lease); err != nil || ttl != -1 {
		t.Errorf("lease TTL %d (%v) after a graceful stop, want -1 (revoked)", ttl, err)
	}
}

// TestRegistrationEtcdErrorIn200: etcd's gateway may refuse a request in a
// 200 answer. A refused put is a failed registration (nothing claims to
// be registered, the message is logged), and so is a keepalive stream
// that answers with an error: the registrar starts over under a new
// lease once etcd behaves.
func TestRegistrationEtcdErrorIn200(t *testing.T) {
	t.Parallel()
	e := harness.StartEtcd(t)
	front := newEtcdFront(t, e.Endpoint())
	front.srv.Start()
	cfg := regConfig(t, e, regTestTTL)
	cfg.Endpoints = []string{front.srv.URL}
	front.fail("/v3/kv/put", http.StatusOK, `{"error":"etcdserver: injected put refusal","message":"etcdserver: injected put refusal","code":9}`)
	rig := startRegistrar(t, cfg)
	harness.WaitFor(t, 20*time.Second, "two refused puts", func() (bool, error) {
		n := testutil.ToFloat64(rig.reg.errs)
		return n >= 2, fmt.Errorf("redwire_registration_errors_total = %v", n)
	})
	if up := testutil.ToFloat64(rig.reg.up); up != 0 {
		t.Errorf("redwire_registration_up = %v while every put is refused", up)
	}
	if n := rig.logs.Count("level=WARN", "service registration failed", "put "+cfg.key()+": "+front.srv.URL+": etcdserver: injected put refusal"); n != 1 {
		t.Errorf("%d warnings naming the refused put and the endpoint, want 1:\n%s", n, rig.logs)
	}
	if resp, err := regKey(t, e, cfg.key()); err != nil || len(resp.Kvs) != 0 {
		t.Errorf("key with every put refused: %v, %v", resp, err)
	}

	front.clear("/v3/kv/put")
	first := waitRegistered(t, e, cfg.key(), nil)
	errs := testutil.ToFloat64(rig.reg.errs)
	front.fail("/v3/lease/keepalive", http.StatusOK,
		`{"error":{"grpc_code":13,"http_code":500,"message":"etcdserver: injected keepalive failure","http_status":"Internal Server Error"}}`)
	harness.WaitFor(t, 20*time.Second, "the failed keepalive to end the registration", func() (bool, error) {
		n := testutil.ToFloat64(rig.reg.errs)
		return n > errs, fmt.Errorf("redwire_registration_errors_total = %v", n)
	})
	if n := rig.logs.Count("level=WARN", "keep lease", "etcdserver: injected keepalive failure"); n != 1 {
		t.Errorf("%d warnings naming the failed keepalive, want 1:\n%s", n, rig.logs)
	}
	front.clear("/v3/lease/keepalive")
	harness.WaitFor(t, 20*time.Second, "the key under a new lease", func() (bool, error) {
		resp, err := regKey(t, e, cfg.key())
		if err != nil || len(resp.Kvs) == 0 {
			return false, fmt.Errorf("key: %v, %v", resp, err)
		}
		return clientv3.LeaseID(resp.Kvs[0].Lease) != first, fmt.Errorf("still under lease %x", first)
	})
}

// TestRegistrationLeaseRevoked: a lease revoked behind the agent's back
// (an operator, an etcd restored from a backup) is answered by the next
// keepalive with TTL 0; the registrar registers again under a new lease.
func TestRegistrationLeaseRevoked(t *testing.T) {
	t.Parallel()
	e := harness.StartEtcd(t)
	cfg := regConfig(t, e, regTestTTL)
	rig := startRegistrar(t, cfg)
	first := waitRegistered(t, e, cfg.key(), nil)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	if _, err := e.Client().Revoke(ctx, first); err != nil {
		t.Fatal(err)
	}
	lease := waitRegistered(t, e, cfg.key(), nil)
	if lease == first {
		t.Fatalf("key under the revoked lease %x", first)
	}
	if n := rig.logs.Count("level=WARN", fmt.Sprintf("lease %x: lease lost", int64(first))); n != 1 {
		t.Errorf("%d warnings saying lease %x was lost, want 1:\n%s", n, int64(first), rig.logs)
	}
	harness.WaitFor(t, 5*time.Second, "redwire_registration_up 1", func() (bool, error) {
		return testutil.ToFloat64(rig.reg.up) == 1, nil
	})
}
