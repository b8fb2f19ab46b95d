package harness

import (
	"context"
	"net"
	"net/url"
	"strconv"
	"strings"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
)

// TestEtcdStopStartKill: keys and leases survive both a clean stop and a
// crash, since the data dir is kept, and the same client reconnects.
func TestEtcdStopStartKill(t *testing.T) {
	t.Parallel()
	e := StartEtcd(t)
	c := e.Client()
	call := func() (context.Context, context.CancelFunc) {
		return context.WithTimeout(context.Background(), 5*time.Second)
	}
	ctx, cancel := call()
	defer cancel()
	lease, err := c.Grant(ctx, 60)
	if err != nil {
		t.Fatalf("grant: %v", err)
	}
	if _, err := c.Put(ctx, "k", "v", clientv3.WithLease(lease.ID)); err != nil {
		t.Fatalf("put: %v", err)
	}

	e.Stop()
	e.Stop() // idempotent
	u, _ := url.Parse(e.Endpoint())
	if conn, err := net.Dial("tcp", u.Host); err == nil {
		conn.Close()
		t.Fatal("something still listens on the client port after Stop")
	}
	e.Start()
	e.Kill()
	e.Start()
	e.Start() // no-op while running
	WaitFor(t, 20*time.Second, "the key after Stop, Start, Kill, Start", func() (bool, error) {
		ctx, cancel := call()
		defer cancel()
		resp, err := c.Get(ctx, "k")
		if err != nil {
			return false, err
		}
		if len(resp.Kvs) != 1 || string(resp.Kvs[0].Value) != "v" || clientv3.LeaseID(resp.Kvs[0].Lease) != lease.ID {
			t.Fatalf("after restarts: %v, want k=v under lease %x", resp.Kvs, lease.ID)
		}
		return true, nil
	})
}

// TestEtcdPortClash: a second server asked for the first one's client
// port must not take the first for itself and must move on.
func TestEtcdPortClash(t *testing.T) {
	t.Parallel()
	a := StartEtcd(t)
	u, _ := url.Parse(a.Endpoint())
	port, _ := strconv.Atoi(u.Port())
	b := startEtcd(t, port)
	if a.Endpoint() == b.Endpoint() {
		t.Fatalf("both servers on %s", a.Endpoint())
	}
	if out := b.srv.output(0); !portClash(out) {
		t.Errorf("second server's output shows no bind failure:\n%s", tail(out))
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	resp, err := b.Client().MemberList(ctx)
	if err != nil {
		t.Fatalf("member list: %v", err)
	}
	if len(resp.Members) != 1 || resp.Members[0].Name != b.name || !strings.HasPrefix(b.name, "harness-") {
		t.Errorf("second server's members %v, want only %s", resp.Members, b.name)
	}
}
