package harness

import (
	"context"
	"net/http"
	"reflect"
	"testing"
	"time"

	"github.com/prometheus/prometheus/prompb"
)

// Thanos Receive (built by make deps) runs the checks of TestReceivers,
// in tests of its own so that -run Thanos picks it.

var thanosCase = receiverCase{
	name:     "thanos-receive",
	start:    func(t testing.TB) Receiver { return StartThanosReceive(t) },
	accepted: http.StatusOK,
	// Receive keeps one TSDB per tenant, and its counters say which.
	// It also flushes its head into a block when stopped, so after the
	// test's restart the older sample is out of bounds (before the
	// block's end), where Prometheus, which replays its WAL, finds it
	// out of order.
	rejected: `prometheus_tsdb_out_of_bound_samples_total{tenant="` + ThanosDefaultTenant + `"}`,
	// Receive answers 409 Conflict to both, where Prometheus answers 400.
	refusable: func(t0 time.Time) (prompb.Sample, int) {
		return prompb.Sample{Value: 9, Timestamp: t0.Add(-time.Second).UnixMilli()}, http.StatusConflict
	},
}

func TestThanosReceiver(t *testing.T) {
	t.Parallel()
	testReceiver(t, thanosCase)
}

// TestThanosOutOfOrderWindow: the same through --tsdb.out-of-order.time-window.
func TestThanosOutOfOrderWindow(t *testing.T) {
	t.Parallel()
	testOutOfOrderWindow(t, StartThanosReceiveWith(t, ThanosOptions{OutOfOrderWindow: time.Hour}), http.StatusOK)
}

// TestThanosTenants: a write with the THANOS-TENANT header lands in that
// tenant, one without it in the default tenant.
func TestThanosTenants(t *testing.T) {
	t.Parallel()
	th := StartThanosReceive(t)
	t0 := time.Now().Add(-time.Minute).Truncate(time.Second)
	for _, tenant := range []string{"", "edge"} {
		labels := map[string]string{"__name__": "harness_tenant_value", "job": "harness", "instance": "tenant-" + tenant}
		wr := writeRequest(labels, prompb.Sample{Value: 1, Timestamp: t0.UnixMilli()})
		if status, body := pushWithHeader(t, th.WriteURL(), wr, ThanosTenantHeader, tenant); status != http.StatusOK {
			t.Fatalf("push for tenant %q: %d %q", tenant, status, body)
		}
	}
	got, err := th.Tenants(context.Background(), `harness_tenant_value`)
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{ThanosDefaultTenant, "edge"}; !reflect.DeepEqual(got, want) {
		t.Errorf("Tenants = %q, want %q", got, want)
	}
	got, err = th.Tenants(context.Background(), `harness_tenant_value{instance="tenant-edge"}`)
	if err != nil || !reflect.DeepEqual(got, []string{"edge"}) {
		t.Errorf("Tenants of the series written with the header = %q, %v, want [edge]", got, err)
	}
}

// TestThanosKillAndStart: data written before a crash is read back after
// Start replays the WAL, through a Query that was restarted with Receive.
func TestThanosKillAndStart(t *testing.T) {
	t.Parallel()
	th := StartThanosReceive(t)
	t0 := time.Now().Add(-time.Minute).Truncate(time.Second)
	labels := map[string]string{"__name__": "harness_test_value", "job": "harness", "instance": "a:1"}
	samples := []prompb.Sample{{Value: 1, Timestamp: t0.UnixMilli()}, {Value: 2, Timestamp: t0.Add(10 * time.Second).UnixMilli()}}
	if status, body := push(t, th.WriteURL(), writeRequest(labels, samples...)); status != http.StatusOK {
		t.Fatalf("push: %d %q", status, body)
	}
	th.Kill()
	if _, err := th.Query(context.Background(), `harness_test_value`); err == nil {
		t.Error("Query answered while Receive and Query were down")
	}
	th.Start()
	checkStored(t, th, labels, samples)
}
