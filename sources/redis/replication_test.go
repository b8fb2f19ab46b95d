package redis

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/common/model"

	"github.com/redwire/redwire/internal/harness"
	"github.com/redwire/redwire/sample"
)

// replicaValue returns family{replica=replica} from sc, or -1.
func replicaValue(sc *sample.Scrape, family, replica string) float64 {
	for _, s := range sc.Samples {
		if s.Labels.Get(model.MetricNameLabel) == family && s.Labels.Get("replica") == replica {
			return s.V
		}
	}
	return -1
}

// TestReplicaLagBytes: with the replica frozen (DEBUG SLEEP) the master's
// view of its lag grows by exactly the bytes written to the replication
// stream, and the backlog ratio follows.
func TestReplicaLagBytes(t *testing.T) {
	// No periodic PINGs into the stream: they would add bytes.
	master := harness.StartRedis(t, harness.WithArgs("--repl-ping-replica-period", "3600", "--repl-backlog-size", "1mb"))
	port := strings.TrimPrefix(master.Addr(), "127.0.0.1:")
	replica := harness.StartRedis(t, harness.WithArgs("--replicaof", "127.0.0.1", port, "--enable-debug-command", "yes"))
	ctx := context.Background()
	tg, err := NewTarget(TargetConfig{Addr: master.URL()}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer tg.Close()
	replicaAddr := replica.Addr()

	// Warm up the stream (the first write also carries a SELECT), then
	// wait until the replica has acknowledged everything.
	if err := master.Client().Set(ctx, "warmup", "x", 0).Err(); err != nil {
		t.Fatal(err)
	}
	var offset0 float64
	harness.WaitFor(t, 30*time.Second, "replica online and caught up", func() (bool, error) {
		sc, err := tg.Scrape(ctx, time.Now())
		if err != nil {
			return false, err
		}
		offset0 = value(t, sc, "redis_master_repl_offset")
		return replicaValue(sc, "redis_replica_online", replicaAddr) == 1 &&
			replicaValue(sc, "redis_replica_lag_bytes", replicaAddr) == 0, nil
	})

	// Freeze the replica; DEBUG SLEEP blocks the connection that sends it.
	frozen := make(chan error, 1)
	go func() { frozen <- replica.Client().Do(ctx, "DEBUG", "SLEEP", "3").Err() }()
	harness.WaitFor(t, 10*time.Second, "replica frozen", func() (bool, error) {
		pctx, cancel := context.WithTimeout(ctx, 200*time.Millisecond)
		defer cancel()
		return replicaPingTimesOut(pctx, replica), nil
	})
	payload := strings.Repeat("v", 10000)
	if err := master.Client().Set(ctx, "k", payload, 0).Err(); err != nil {
		t.Fatal(err)
	}
	sc, err := tg.Scrape(ctx, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	// The lag is what the master appended to the replication stream since
	// the replica caught up: the SET in RESP, plus a SELECT the master may
	// send before it.
	want := value(t, sc, "redis_master_repl_offset") - offset0
	set, sel := float64(len(resp("SET", "k", payload))), float64(len(resp("SELECT", "0")))
	if want != set && want != set+sel {
		t.Fatalf("master offset grew by %v; the SET is %v bytes (+%v for a SELECT)", want, set, sel)
	}
	if got := replicaValue(sc, "redis_replica_lag_bytes", replicaAddr); got != want {
		t.Errorf("redis_replica_lag_bytes = %v, want %v", got, want)
	}
	if got := replicaValue(sc, "redis_replica_lag_backlog_ratio", replicaAddr); got != want/(1<<20) {
		t.Errorf("redis_replica_lag_backlog_ratio = %v, want %v", got, want/(1<<20))
	}
	if err := <-frozen; err != nil {
		t.Fatalf("DEBUG SLEEP: %v", err)
	}
	harness.WaitFor(t, 30*time.Second, "replica caught up again", func() (bool, error) {
		sc, err := tg.Scrape(ctx, time.Now())
		return replicaValue(sc, "redis_replica_lag_bytes", replicaAddr) == 0, err
	})
}

// replicaPingTimesOut reports whether the replica fails to answer PING in
// time, i.e. it is inside DEBUG SLEEP.
func replicaPingTimesOut(ctx context.Context, r *harness.Redis) bool {
	tg, err := NewTarget(TargetConfig{Addr: r.URL()}, nil)
	if err != nil {
		return false
	}
	defer tg.Close()
	return tg.client.Ping(ctx).Err() != nil
}

func resp(args ...string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "*%d\r\n", len(args))
	for _, a := range args {
		b.WriteString("$" + strconv.Itoa(len(a)) + "\r\n" + a + "\r\n")
	}
	return b.String()
}

// TestTopologyEvents: a restart (new run_id) and a role change are counted;
// the first scrape is only the baseline.
func TestTopologyEvents(t *testing.T) {
	r := harness.StartRedis(t)
	other := harness.StartRedis(t)
	tg, err := NewTarget(TargetConfig{Addr: r.URL()}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer tg.Close()
	ctx := context.Background()
	scrape := func() *sample.Scrape {
		t.Helper()
		var sc *sample.Scrape
		harness.WaitFor(t, 30*time.Second, "a successful scrape", func() (bool, error) {
			var err error
			sc, err = tg.Scrape(ctx, time.Now())
			return err == nil, err
		})
		return sc
	}
	counts := func(sc *sample.Scrape) string {
		return fmt.Sprintf("roles %v restarts %v replids %v", value(t, sc, "redis_role_changes_total"),
			value(t, sc, "redis_restarts_total"), value(t, sc, "redis_replid_changes_total"))
	}
	if got := counts(scrape()); got != "roles 0 restarts 0 replids 0" {
		t.Fatalf("baseline: %s", got)
	}
	r.Stop()
	r.Start()
	if got := counts(scrape()); got != "roles 0 restarts 1 replids 1" {
		t.Errorf("after a restart: %s", got)
	}
	port := strings.TrimPrefix(other.Addr(), "127.0.0.1:")
	if err := r.Client().Do(ctx, "REPLICAOF", "127.0.0.1", port).Err(); err != nil {
		t.Fatal(err)
	}
	if got := counts(scrape()); !strings.HasPrefix(got, "roles 1 restarts 1") {
		t.Errorf("after REPLICAOF: %s", got)
	}
}
