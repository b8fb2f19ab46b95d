package registration

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/prometheus/common/config"
	"github.com/prometheus/common/model"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
	yaml "go.yaml.in/yaml/v2"

	"github.com/redwire/redwire/internal/harness"
)

// The registration tests run the registrar against a real etcd and read
// the key back with a client of their own, as a central inventory would.

// regTestTTL is the shortest lease validation allows; the tests that
// wait for a lease to expire use it.
const regTestTTL = model.Duration(5 * time.Second)

func TestRegistrationConfig(t *testing.T) {
	var c Config
	if err := yaml.UnmarshalStrict([]byte("etcd:\n  endpoints: [http://10.0.0.1:2379]\n  password_file: pw\n  tls: {ca_file: ca.pem}\n"), &c); err != nil {
		t.Fatalf("parse: %v", err)
	}
	c.SetDirectory("/etc/redwire")
	c.SetDefaults()
	host, _ := os.Hostname()
	e := c.Etcd
	if e.KeyPrefix != "/redwire/agents" || e.AgentID != host || e.LeaseTTL != model.Duration(30*time.Second) ||
		e.DialTimeout != model.Duration(5*time.Second) || e.PasswordFile != "/etc/redwire/pw" || e.TLS.CAFile != "/etc/redwire/ca.pem" {
		t.Errorf("after SetDirectory and SetDefaults: %+v", *e)
	}
	if e.key() != "/redwire/agents/"+host {
		t.Errorf("key %q", e.key())
	}
	if err := yaml.UnmarshalStrict([]byte("etcd:\n  endpoint: [x:1]\n"), &Config{}); err == nil || !strings.Contains(err.Error(), "endpoint") {
		t.Errorf("unknown key: %v", err)
	}
	var off Config
	off.SetDefaults()
	if off.Enabled() || off.Validate() != nil {
		t.Errorf("empty section: enabled %v, validate %v", off.Enabled(), off.Validate())
	}

	valid := func() *EtcdConfig {
		c := &EtcdConfig{Endpoints: []string{"http://10.0.0.1:2379", "10.0.0.2:2379"}, AgentID: "edge-1"}
		c.setDefaults()
		return c
	}
	if err := validate(valid()); err != nil {
		t.Fatalf("valid config: %v", err)
	}
	tests := []struct {
		name string
		edit func(*EtcdConfig)
		want string
	}{
		{"no endpoints", func(c *EtcdConfig) { c.Endpoints = nil }, "etcd.endpoints: required"},
		{"empty endpoint", func(c *EtcdConfig) { c.Endpoints[1] = "" }, "etcd.endpoints[1]: must not be empty"},
		{"no port", func(c *EtcdConfig) { c.Endpoints[1] = "etcd.local" }, "etcd.endpoints[1]: "},
		{"scheme", func(c *EtcdConfig) { c.Endpoints[0] = "grpc://x:1" }, `etcd.endpoints[0]: "grpc://x:1": unsupported scheme`},
		{"credentials in URL", func(c *EtcdConfig) { c.Endpoints[0] = "http://u:hunter2@x:1" }, "etcd.endpoints[0]: credentials in the URL"},
		{"mixed", func(c *EtcdConfig) { c.Endpoints[1] = "https://x:1" }, "etcd.endpoints: mixes plain"},
		{"tls on http", func(c *EtcdConfig) { c.TLS = config.TLSConfig{CAFile: "ca"} }, "etcd.tls: set, but endpoint http://10.0.0.1:2379 is plain"},
		{"prefix", func(c *EtcdConfig) { c.KeyPrefix = "agents" }, "etcd.key_prefix: "},
		{"id slash", func(c *EtcdConfig) { c.AgentID = "a/b" }, "etcd.agent_id: "},
		{"short ttl", func(c *EtcdConfig) { c.LeaseTTL = model.Duration(4 * time.Second) }, "etcd.lease_ttl: 4s must be at least 5s"},
		{"fractional ttl", func(c *EtcdConfig) { c.LeaseTTL = model.Duration(5500 * time.Millisecond) }, "etcd.lease_ttl: "},
		{"dial timeout", func(c *EtcdConfig) { c.DialTimeout = -1 }, "etcd.dial_timeout: must be positive"},
		{"both passwords", func(c *EtcdConfig) { c.Username, c.Password, c.PasswordFile = "u", "p", "f" }, "etcd.password_file: "},
		{"password alone", func(c *EtcdConfig) { c.Password = "p" }, "etcd.username: required"},
		{"username alone", func(c *EtcdConfig) { c.Username = "u" }, "etcd.password: required"},
	}
	for _, tc := range tests {
		c := valid()
		tc.edit(c)
		err := validate(c)
		if err == nil || !strings.HasPrefix(err.Error(), tc.want) {
			t.Errorf("%s: %v, want %q…", tc.name, err, tc.want)
		}
		if err != nil && strings.Contains(err.Error(), "hunter2") {
			t.Errorf("%s: error shows the password: %v", tc.name, err)
		}
	}
	// The error names the field below the section, for the config loader
	// to prefix with "registration." and find the line of (the agent's
	// TestRegistrationConfigErrorNamesLine).
	bad := Config{Etcd: valid()}
	bad.Etcd.Endpoints = nil
	var ce *ConfigError
	if err := bad.Validate(); !errors.As(err, &ce) || ce.Field != "etcd.endpoints" {
		t.Errorf("Validate: %v", err)
	}

	withPW := valid()
	withPW.Username, withPW.Password = "u", "hunter2"
	out, err := yaml.Marshal(withPW)
	if err != nil || strings.Contains(string(out), "hunter2") {
		t.Errorf("marshalled config shows the password (%v):\n%s", err, out)
	}
}

// validate is Config.Validate of a section holding c.
func validate(c *EtcdConfig) error { return (&Config{Etcd: c}).Validate() }

// regState is the agent's side of a test: a state the test edits.
type regState struct {
	mu sync.Mutex
	s  State
}

func (s *regState) get() State {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.s
}

func (s *regState) set(edit func(*State)) {
	s.mu.Lock()
	defer s.mu.Unlock()
	edit(&s.s)
}

func newRegState() *regState {
	return &regState{s: State{
		ListenURL: "http://127.0.0.1:9187", Version: "1.2.3", AgentID: "ignored",
		Targets:   []string{"redis-b:6379", "redis-a:6379"},
		StartedAt: time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC),
	}}
}

// regRig is one registrar, run until the test ends or stop is called.
type regRig struct {
	cfg   *EtcdConfig
	state *regState
	reg   *Registrar
	logs  *harness.LogBuffer
	stop  func() // cancels Run and waits for it to return
}

func regConfig(t *testing.T, e *harness.Etcd, ttl model.Duration) *EtcdConfig {
	t.Helper()
	cfg := &EtcdConfig{
		Endpoints: []string{e.Endpoint()}, AgentID: "agent-" + strings.ReplaceAll(t.Name(), "/", "_"),
		LeaseTTL: ttl, DialTimeout: model.Duration(time.Second),
	}
	cfg.setDefaults()
	if err := validate(cfg); err != nil {
		t.Fatal(err)
	}
	return cfg
}

func startRegistrar(t *testing.T, cfg *EtcdConfig) *regRig {
	t.Helper()
	rig := &regRig{cfg: cfg, state: newRegState(), logs: &harness.LogBuffer{}}
	log := slog.New(slog.NewTextHandler(rig.logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	rig.reg = New(&Config{Etcd: cfg}, rig.state.get, prometheus.NewRegistry(), log)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); rig.reg.Run(ctx) }()
	var once sync.Once
	rig.stop = func() {
		once.Do(func() {
			cancel()
			select {
			case <-done:
			case <-time.After(10 * time.Second):
				t.Fatalf("Run did not return within 10s of its context ending")
			}
		})
	}
	t.Cleanup(func() {
		rig.stop()
		if t.Failed() {
			t.Logf("registrar log:\n%s", rig.logs)
		}
	})
	return rig
}

// regKey reads the agent's key: nil if absent.
func regKey(t *testing.T, e *harness.Etcd, key string) (*clientv3.GetResponse, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	return e.Client().Get(ctx, key)
}

// leaseTTL is the remaining time to live of a lease, -1 once it is gone.
func leaseTTL(t *testing.T, e *harness.Etcd, id clientv3.LeaseID) (int64, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	resp, err := e.Client().TimeToLive(ctx, id)
	if err != nil {
		return 0, err
	}
	return resp.TTL, nil
}

// waitRegistered waits until the key holds want (any value if want is
// nil) and returns the lease it is under.
func waitRegistered(t *testing.T, e *harness.Etcd, key string, want func(State) error) clientv3.LeaseID {
	t.Helper()
	var lease clientv3.LeaseID
	harness.WaitFor(t, 20*time.Second, "key "+key, func() (bool, error) {
		resp, err := regKey(t, e, key)
		if err != nil {
			return false, err
		}
		if len(resp.Kvs) == 0 {
			return false, errors.New("no key")
		}
		if want != nil {
			var got State
			if err := json.Unmarshal(resp.Kvs[0].Value, &got); err != nil {
				return false, fmt.Errorf("value %s: %w", resp.Kvs[0].Value, err)
			}
			if err := want(got); err != nil {
				return false, fmt.Errorf("value %s: %w", resp.Kvs[0].Value, err)
			}
		}
		lease = clientv3.LeaseID(resp.Kvs[0].Lease)
		return lease != clientv3.NoLease, errors.New("key without a lease")
	})
	return lease
}

// TestRegistrationLifecycle: the key appears with the state as JSON under
// a lease, follows a change as soon as Changed() is called, and is gone
// the moment a graceful stop returns.
func TestRegistrationLifecycle(t *testing.T) {
	t.Parallel()
	e := harness.StartEtcd(t)
	// A long TTL puts the periodic re-check (ttl/3 = 20s) out of the way:
	// within the 10s below, only Changed() can explain an update.
	cfg := regConfig(t, e, model.Duration(time.Minute))
	cfg.KeyPrefix = "/inventory/"
	rig := startRegistrar(t, cfg)
	key := "/inventory/" + cfg.AgentID

	lease := waitRegistered(t, e, key, nil)
	resp, err := regKey(t, e, key)
	if err != nil {
		t.Fatal(err)
	}
	want := fmt.Sprintf(`{"listen_url":"http://127.0.0.1:9187","version":"1.2.3","agent_id":%q,`+
		`"targets":["redis-a:6379","redis-b:6379"],"degraded":false,"backlog_bytes":0,"started_at":"2025-01-02T03:04:05Z"}`, cfg.AgentID)
	if got := string(resp.Kvs[0].Value); got != want {
		t.Errorf("value\n got %s\nwant %s", got, want)
	}
	if ttl, err := leaseTTL(t, e, lease); err != nil || ttl < 50 || ttl > 60 {
		t.Errorf("lease TTL %d (%v), want about 60", ttl, err)
	}
	if up := testutil.ToFloat64(rig.reg.up); up != 1 {
		t.Errorf("redwire_registration_up = %v while registered", up)
	}

	rig.state.set(func(s *State) {
		s.Degraded, s.BacklogBytes, s.Targets = true, 4096, []string{"redis-c:6379"}
	})
	start := time.Now()
	rig.reg.Changed()
	rig.reg.Changed() // coalesced, never blocks
	harness.WaitFor(t, 10*time.Second, "the changed state in etcd", func() (bool, error) {
		resp, err := regKey(t, e, key)
		if err != nil || len(resp.Kvs) == 0 {
			return false, fmt.Errorf("key: %v %v", resp, err)
		}
		v := string(resp.Kvs[0].Value)
		return strings.Contains(v, `"degraded":true,"backlog_bytes":4096`) && strings.Contains(v, `"targets":["redis-c:6379"]`), errors.New(v)
	})
	t.Logf("update visible %v after Changed()", time.Since(start).Round(time.Millisecond))
	if got := rig.logs.Count("registered in etcd"); got != 1 {
		t.Errorf("%d 'registered' log lines, want 1", got)
	}

	rig.stop()
	// No waiting: a graceful stop deregisters before run returns.
	resp, err = regKey(t, e, key)
	if err != nil {
		t.Fatal(err)
	}
	if len(resp.Kvs) != 0 {
		t.Errorf("key still there after a graceful stop: %s", resp.Kvs[0].Value)
	}
	if ttl, err := leaseTTL(t, e, lease); err != nil || ttl != -1 {
		t.Errorf("lease TTL %d (%v) after a graceful stop, want -1 (revoked)", ttl, err)
	}
	if up := testutil.ToFloat64(rig.reg.up); up != 0 {
		t.Errorf("redwire_registration_up = %v after stop", up)
	}
	if rig.logs.Count("deregistered from etcd") != 1 {
		t.Errorf("no deregistration logged")
	}
}

// TestRegistrationAuth: against an etcd with auth on, a wrong password is
// logged and counted without the password, and password_file is read at
// every attempt, so fixing the file is enough to register.
func TestRegistrationAuth(t *testing.T) {
	t.Parallel()
	e := harness.StartEtcd(t)
	root := enableEtcdAuth(t, e, "redwire", "right-pw-do-not-log")
	cfg := regConfig(t, e, regTestTTL)
	cfg.Username = "redwire"
	cfg.PasswordFile = filepath.Join(t.TempDir(), "pw")
	const wrong = "wrong-pw-do-not-log"
	if err := os.WriteFile(cfg.PasswordFile, []byte(wrong+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	rig := startRegistrar(t, cfg)
	harness.WaitFor(t, 20*time.Second, "two refused logins", func() (bool, error) {
		n := testutil.ToFloat64(rig.reg.errs)
		return n >= 2, fmt.Errorf("redwire_registration_errors_total = %v", n)
	})
	if n := rig.logs.Count("level=WARN", "service registration failed", "authentication failed"); n != 1 {
		t.Errorf("%d warnings naming the refused login, want 1:\n%s", n, rig.logs)
	}

	if err := os.WriteFile(cfg.PasswordFile, []byte("right-pw-do-not-log\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	harness.WaitFor(t, 20*time.Second, "the key, written as redwire", func() (bool, error) {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		resp, err := root.Get(ctx, cfg.key())
		return err == nil && len(resp.Kvs) == 1, fmt.Errorf("%v, %v", resp, err)
	})
	rig.stop()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	if resp, err := root.Get(ctx, cfg.key()); err != nil || len(resp.Kvs) != 0 {
		t.Errorf("after a graceful stop: %v, %v; want no key", resp, err)
	}
	logs := rig.logs.String()
	for _, pw := range []string{wrong, "right-pw-do-not-log"} {
		if strings.Contains(logs, pw) {
			t.Errorf("a password is in the log:\n%s", logs)
		}
	}
}

// enableEtcdAuth creates user with password and read-write access to
// /redwire/agents/, turns auth on, and returns a root client.
func enableEtcdAuth(t *testing.T, e *harness.Etcd, user, password string) *clientv3.Client {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c := e.Client()
	const prefix = DefaultKeyPrefix + "/"
	steps := []func() error{
		func() error { _, err := c.UserAdd(ctx, "root", "root-pw"); return err },
		func() error { _, err := c.RoleAdd(ctx, "root"); return err },
		func() error { _, err := c.UserGrantRole(ctx, "root", "root"); return err },
		func() error { _, err := c.UserAdd(ctx, user, password); return err },
		func() error { _, err := c.RoleAdd(ctx, "agents"); return err },
		func() error {
			_, err := c.RoleGrantPermission(ctx, "agents", prefix, clientv3.GetPrefixRangeEnd(prefix), clientv3.PermissionType(clientv3.PermReadWrite))
			return err
		},
		func() error { _, err := c.UserGrantRole(ctx, user, "agents"); return err },
		func() error { _, err := c.AuthEnable(ctx); return err },
	}
	for i, step := range steps {
		if err := step(); err != nil {
			t.Fatalf("auth setup step %d: %v", i+1, err)
		}
	}
	root, err := clientv3.New(clientv3.Config{
		Endpoints: []string{e.Endpoint()}, Username: "root", Password: "root-pw",
		DialTimeout: 5 * time.Second, Logger: zap.NewNop(),
	})
	if err != nil {
		t.Fatalf("root client: %v", err)
	}
	t.Cleanup(func() { root.Close() })
	return root
}

// TestRegistrationTLS: endpoints given as https://host:port, or as bare
// host:port with a tls section, are reached over TLS and verified with
// tls.ca_file.
func TestRegistrationTLS(t *testing.T) {
	t.Parallel()
	e := harness.StartEtcd(t)
	front, caFile := startTLSFront(t, e)
	hostPort := strings.TrimPrefix(front.srv.URL, "https://")
	for _, ep := range []string{front.srv.URL, hostPort} {
		cfg := regConfig(t, e, regTestTTL)
		cfg.AgentID += "_" + strings.NewReplacer(":", "_", "/", "_").Replace(ep)
		cfg.Endpoints = []string{ep}
		cfg.TLS = config.TLSConfig{CAFile: caFile}
		if err := validate(cfg); err != nil {
			t.Fatal(err)
		}
		rig := startRegistrar(t, cfg)
		lease := waitRegistered(t, e, cfg.key(), nil)
		rig.stop()
		if ttl, err := leaseTTL(t, e, lease); err != nil || ttl != -1 {
			t.Errorf("%s: lease TTL %d (%v) after a graceful stop, want -1 (revoked)", ep, ttl, err)
		}
	}
	if n := front.count("/v3/lease/revoke"); n != 2 {
		t.Errorf("%d revokes over TLS, want 2", n)
	}
}
