package harness

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
)

// Etcd is a one-member etcd cluster run for one test. Its data dir is
// kept across Stop/Kill and Start, as on a real host, so keys and leases
// survive a restart.
type Etcd struct {
	srv    *server
	name   string // member name, unique to this server: the probe's identity check
	client *clientv3.Client

	// peerPort belongs to clientPort; both are written only while srv.mu
	// is held (args runs inside launch).
	clientPort, peerPort int
}

// StartEtcd starts etcd on free loopback client and peer ports with an
// empty data dir and returns once it has a leader and answers as this
// test's member.
func StartEtcd(t testing.TB) *Etcd {
	t.Helper()
	return startEtcd(t, FreePort(t))
}

// startEtcd is StartEtcd on a chosen first client port.
func startEtcd(t testing.TB, port int) *Etcd {
	t.Helper()
	e := &Etcd{srv: newServer(t, "etcd", "etcd-server")}
	// The temp dir's name is unique per test and server, so a member of
	// another test's etcd that holds our port cannot pass for ours.
	e.name = "harness-" + filepath.Base(e.srv.dir)
	e.srv.args = e.args
	e.srv.probe = e.probe
	e.srv.start(port)
	// Not blocking: the client connects on first use and reconnects by
	// itself after a restart. Its logger is off: it warns on every retry
	// while the server is down, which tests do on purpose.
	c, err := clientv3.New(clientv3.Config{
		Endpoints: []string{e.Endpoint()},
		Logger:    zap.NewNop(),
	})
	if err != nil {
		t.Fatalf("etcd client for %s: %v", e.Endpoint(), err)
	}
	e.client = c
	t.Cleanup(func() { c.Close() })
	return e
}

// dataDir holds the member's WAL and snapshot; kept across restarts.
func (e *Etcd) dataDir() string { return filepath.Join(e.srv.dir, "data") }

// args is called for every spawn. A first start that moves to a fresh
// client port (port clash) takes a fresh peer port too, since the clash
// may have been on the peer port, and starts from an empty data dir, since
// a failed bootstrap may have written the old peer URL there. A restart
// keeps both ports and the data.
func (e *Etcd) args(port int) []string {
	if port != e.clientPort {
		e.clientPort, e.peerPort = port, FreePort(e.srv.t)
		if err := os.RemoveAll(e.dataDir()); err != nil {
			e.srv.t.Fatalf("reset etcd data dir: %v", err)
		}
	}
	client := "http://127.0.0.1:" + strconv.Itoa(e.clientPort)
	peer := "http://127.0.0.1:" + strconv.Itoa(e.peerPort)
	return []string{
		"--name", e.name,
		"--data-dir", e.dataDir(),
		"--listen-client-urls", client,
		"--advertise-client-urls", client,
		"--listen-peer-urls", peer,
		"--initial-advertise-peer-urls", peer,
		"--initial-cluster", e.name + "=" + peer,
		"--initial-cluster-state", "new",
		"--initial-cluster-token", e.name,
		// capnslog, 3.4's default, prints a deprecation banner first.
		"--logger", "zap",
		"--log-outputs", "stderr",
	}
}

// probe is ready when /health reports a leader and the member list, read
// through the JSON gateway, names our member. etcd does not report its
// pid, but the member name is unique to this server.
func (e *Etcd) probe(ctx context.Context, port, _ int) error {
	base := "http://127.0.0.1:" + strconv.Itoa(port)
	var health struct {
		Health string `json:"health"`
	}
	if err := etcdHTTP(ctx, http.MethodGet, base+"/health", &health); err != nil {
		return err
	}
	if health.Health != "true" {
		return fmt.Errorf("%s/health: health %q", base, health.Health)
	}
	var members struct {
		Members []struct {
			Name string `json:"name"`
		} `json:"members"`
	}
	if err := etcdHTTP(ctx, http.MethodPost, base+"/v3/cluster/member/list", &members); err != nil {
		return err
	}
	var names []string
	for _, m := range members.Members {
		if m.Name == e.name {
			return nil
		}
		names = append(names, m.Name)
	}
	return fmt.Errorf("%s is served by etcd member(s) %v, not ours (%s)", base, names, e.name)
}

// etcdHTTP makes one request to etcd's HTTP side and decodes the JSON
// answer into v. The gateway's POST endpoints take an empty JSON object.
func etcdHTTP(ctx context.Context, method, url string, v any) error {
	var body io.Reader
	if method == http.MethodPost {
		body = strings.NewReader("{}")
	}
	req, err := http.NewRequestWithContext(ctx, method, url, body)
	if err != nil {
		return err
	}
	// A fresh connection per probe: a kept-alive one could outlive the
	// server it was opened to.
	req.Close = true
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return fmt.Errorf("%s %s: %w", method, url, err)
	}
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("%s %s: %s: %s", method, url, resp.Status, strings.TrimSpace(string(data)))
	}
	if err := json.Unmarshal(data, v); err != nil {
		return fmt.Errorf("%s %s: %w", method, url, err)
	}
	return nil
}

// Endpoint is the client URL, "http://127.0.0.1:PORT"; it survives
// restarts.
func (e *Etcd) Endpoint() string { return "http://" + e.srv.hostPort() }

// Client is an etcd client for the server, closed when the test ends. It
// reconnects by itself after Stop and Start, with gRPC's growing backoff,
// so read through it with WaitFor right after a Start. Calls on it wait
// while the server is down: give them a context with a deadline.
func (e *Etcd) Client() *clientv3.Client { return e.client }

// Dir is the server's working directory; its output is in etcd.log there.
func (e *Etcd) Dir() string { return e.srv.dir }

// Stop shuts the server down with SIGTERM and waits for it to exit. It is a
// no-op when the server is not running.
func (e *Etcd) Stop() {
	e.srv.t.Helper()
	e.srv.stop(syscall.SIGTERM)
}

// Kill ends the server with SIGKILL, as a crash would, and waits for it.
func (e *Etcd) Kill() {
	e.srv.t.Helper()
	e.srv.stop(syscall.SIGKILL)
}

// Start runs the server again on the same ports and data dir after Stop or
// Kill and waits until it has a leader. Keys survive; leases survive too,
// with their time to live reset (etcd extends every lease when a leader is
// elected). It is a no-op while the server is running.
func (e *Etcd) Start() {
	e.srv.t.Helper()
	e.srv.restart()
}
