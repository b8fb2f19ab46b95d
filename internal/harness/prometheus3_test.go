package harness

import (
	"context"
	"net/http"
	"reflect"
	"testing"
	"time"

	"github.com/prometheus/prometheus/prompb"
)

// Prometheus 3.x (built by make deps) runs the checks Debian's 2.42 runs
// in TestReceivers, in tests of its own so that -run Prometheus3 picks it.

var prometheus3Case = receiverCase{
	name:     "prometheus3",
	start:    func(t testing.TB) Receiver { return StartPrometheus3(t) },
	accepted: http.StatusNoContent,
	rejected: "prometheus_tsdb_out_of_order_samples_total",
	refusable: func(t0 time.Time) (prompb.Sample, int) {
		return prompb.Sample{Value: 9, Timestamp: t0.Add(-time.Second).UnixMilli()}, http.StatusBadRequest
	},
}

func TestPrometheus3Receiver(t *testing.T) {
	t.Parallel()
	testReceiver(t, prometheus3Case)
}

// TestPrometheus3OutOfOrderWindow: with the window set, a sample older
// than the series' newest is stored, not refused.
func TestPrometheus3OutOfOrderWindow(t *testing.T) {
	t.Parallel()
	testOutOfOrderWindow(t, StartPrometheusWith(t, PrometheusOptions{Version3: true, OutOfOrderWindow: time.Hour}), http.StatusNoContent)
}

// testOutOfOrderWindow pushes a sample, then one ten minutes older, and
// wants both stored.
func testOutOfOrderWindow(t *testing.T, recv Receiver, accepted int) {
	t0 := time.Now().Add(-time.Minute).Truncate(time.Second)
	labels := map[string]string{"__name__": "harness_test_value", "job": "harness", "instance": "a:1"}
	newer := prompb.Sample{Value: 2, Timestamp: t0.UnixMilli()}
	older := prompb.Sample{Value: 1, Timestamp: t0.Add(-10 * time.Minute).UnixMilli()}
	for _, s := range []prompb.Sample{newer, older} {
		if status, body := push(t, recv.WriteURL(), writeRequest(labels, s)); status != accepted {
			t.Fatalf("push sample at %v: %d %q, want %d", time.UnixMilli(s.Timestamp), status, body, accepted)
		}
	}
	raw, err := recv.Samples(context.Background(), `harness_test_value`, 30*time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	want := points([]prompb.Sample{older, newer})
	if len(raw) != 1 || !reflect.DeepEqual(raw[0].Points, want) {
		t.Fatalf("Samples = %+v, want %v", raw, want)
	}
}
