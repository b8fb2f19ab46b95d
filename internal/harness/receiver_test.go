package harness

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/golang/snappy"
	"github.com/prometheus/prometheus/prompb"
)

// receiverCase is one receiver and how it shows a rejected sample.
type receiverCase struct {
	name  string
	start func(testing.TB) Receiver
	// accepted is the status of a write taken whole: Prometheus and
	// VictoriaMetrics answer 204, Thanos Receive 200.
	accepted int
	// rejected is the receiver's own counter of refused samples, pinned
	// here because Metric reads an absent name as 0.
	rejected string
	// refusable returns a sample for the test series that the receiver
	// counts in rejected, and the status it answers when pushed.
	refusable func(t0 time.Time) (prompb.Sample, int)
}

var receiverCases = []receiverCase{
	{
		name:     "prometheus",
		start:    func(t testing.TB) Receiver { return StartPrometheus(t) },
		accepted: http.StatusNoContent,
		rejected: "prometheus_tsdb_out_of_order_samples_total",
		refusable: func(t0 time.Time) (prompb.Sample, int) {
			return prompb.Sample{Value: 9, Timestamp: t0.Add(-time.Second).UnixMilli()}, http.StatusBadRequest
		},
	},
	{
		name:     "victoria-metrics",
		start:    func(t testing.TB) Receiver { return StartVictoriaMetrics(t) },
		accepted: http.StatusNoContent,
		rejected: `vm_log_messages_total{level="warn"}`,
		// VictoriaMetrics accepts out-of-order samples but drops those
		// older than its retention (1 month by default), answering 204;
		// 1.79 counts the drop only as a logged warning.
		refusable: func(t0 time.Time) (prompb.Sample, int) {
			return prompb.Sample{Value: 9, Timestamp: t0.AddDate(-1, 0, 0).UnixMilli()}, http.StatusNoContent
		},
	},
}

// TestReceivers pushes a hand-built remote-write request through the proxy
// (the first attempt answered 500 by it), reads it back exactly through
// every query method, and checks that it survives a restart.
func TestReceivers(t *testing.T) {
	for _, rc := range receiverCases {
		t.Run(rc.name, func(t *testing.T) {
			t.Parallel()
			testReceiver(t, rc)
		})
	}
}

// testReceiver is TestReceivers for one receiver.
func testReceiver(t *testing.T, rc receiverCase) {
	ctx := context.Background()
	recv := rc.start(t)
	proxy := StartProxy(t, recv.URL())
	writePath := strings.TrimPrefix(recv.WriteURL(), recv.URL())

	t0 := time.Now().Add(-time.Minute).Truncate(time.Second)
	labels := map[string]string{"__name__": "harness_test_value", "job": "harness", "instance": "a:1"}
	samples := []prompb.Sample{
		{Value: 1.5, Timestamp: t0.UnixMilli()},
		{Value: 2.25, Timestamp: t0.Add(10 * time.Second).UnixMilli()},
		{Value: 1e10 + 0.5, Timestamp: t0.Add(20 * time.Second).UnixMilli()},
	}
	wr := writeRequest(labels, samples...)

	proxy.Fail(1, http.StatusInternalServerError, http.Header{"Retry-After": {"1"}}, "injected")
	if status, body := push(t, proxy.URL()+writePath, wr); status != http.StatusInternalServerError || body != "injected" {
		t.Fatalf("first push through the failing proxy: %d %q, want 500 injected", status, body)
	}
	if status, body := push(t, proxy.URL()+writePath, wr); status != rc.accepted {
		t.Fatalf("second push: %d %q, want %d", status, body, rc.accepted)
	}
	reqs := proxy.Requests()
	if len(reqs) != 2 || reqs[0].Forwarded || reqs[0].Status != 500 || !reqs[1].Forwarded || reqs[1].Status != rc.accepted {
		t.Fatalf("proxy saw %+v", reqs)
	}
	if reqs[1].Write == nil || !reflect.DeepEqual(reqs[1].Write.Timeseries, wr.Timeseries) || reqs[1].Header.Get("X-Prometheus-Remote-Write-Version") != "0.1.0" {
		t.Errorf("proxy recorded %+v (decode error %v), want the request sent", reqs[1].Write, reqs[1].DecodeErr)
	}

	checkStored(t, recv, labels, samples)
	if n, err := recv.Metric(ctx, rc.rejected); err != nil || n != 0 {
		t.Errorf("%s = %v, %v before any bad sample", rc.rejected, n, err)
	}

	recv.Stop()
	recv.Stop()
	recv.Start()
	checkStored(t, recv, labels, samples)

	bad, wantStatus := rc.refusable(t0)
	if status, body := push(t, recv.WriteURL(), writeRequest(labels, bad)); status != wantStatus {
		t.Errorf("pushing a refusable sample: %d %q, want %d", status, body, wantStatus)
	}
	// VictoriaMetrics may answer before it has counted the drop.
	WaitFor(t, 10*time.Second, rc.rejected+" >= 1", func() (bool, error) {
		n, err := recv.Metric(ctx, rc.rejected)
		return n >= 1, err
	})
}

// checkStored reads the pushed series back through Query, Samples and
// QueryRange and wants it exactly.
func checkStored(t *testing.T, recv Receiver, labels map[string]string, samples []prompb.Sample) {
	t.Helper()
	ctx := context.Background()
	last := samples[len(samples)-1]
	vec, err := recv.Query(ctx, `harness_test_value{job="harness"}`)
	if err != nil {
		t.Fatal(err)
	}
	if len(vec) != 1 || !reflect.DeepEqual(vec[0].Labels, labels) || vec[0].Value != last.Value {
		t.Fatalf("Query = %+v, want one series %v = %v", vec, labels, last.Value)
	}

	raw, err := recv.Samples(ctx, `harness_test_value`, 5*time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	if len(raw) != 1 || !reflect.DeepEqual(raw[0].Labels, labels) || !reflect.DeepEqual(raw[0].Points, points(samples)) {
		t.Fatalf("Samples = %+v, want %v", raw, points(samples))
	}

	start := time.UnixMilli(samples[0].Timestamp)
	rng, err := recv.QueryRange(ctx, `harness_test_value`, start, time.UnixMilli(last.Timestamp), 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if len(rng) != 1 || !reflect.DeepEqual(rng[0].Points, points(samples)) {
		t.Fatalf("QueryRange = %+v, want %v", rng, points(samples))
	}
}

// points is what the query API returns for samples.
func points(samples []prompb.Sample) []Point {
	out := make([]Point, 0, len(samples))
	for _, s := range samples {
		out = append(out, Point{T: time.UnixMilli(s.Timestamp), V: s.Value})
	}
	return out
}

// writeRequest builds a one-series remote-write request.
func writeRequest(labels map[string]string, samples ...prompb.Sample) *prompb.WriteRequest {
	ts := prompb.TimeSeries{Samples: samples}
	for _, name := range []string{"__name__", "instance", "job"} {
		if v, ok := labels[name]; ok {
			ts.Labels = append(ts.Labels, prompb.Label{Name: name, Value: v})
		}
	}
	if len(ts.Labels) != len(labels) {
		panic(fmt.Sprintf("writeRequest knows only __name__, instance and job, got %v", labels))
	}
	return &prompb.WriteRequest{Timeseries: []prompb.TimeSeries{ts}}
}

// push sends wr the way a remote-write 1.0 sender does and returns the
// answer.
func push(t *testing.T, url string, wr *prompb.WriteRequest) (int, string) {
	t.Helper()
	return pushWithHeader(t, url, wr, "", "")
}

// pushWithHeader is push with one more header, unless value is empty.
func pushWithHeader(t *testing.T, url string, wr *prompb.WriteRequest, name, value string) (int, string) {
	t.Helper()
	raw, err := wr.Marshal()
	if err != nil {
		t.Fatalf("marshal write request: %v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(snappy.Encode(nil, raw)))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Encoding", "snappy")
	req.Header.Set("Content-Type", "application/x-protobuf")
	req.Header.Set("X-Prometheus-Remote-Write-Version", "0.1.0")
	if value != "" {
		req.Header.Set(name, value)
	}
	client := &http.Client{Transport: http.DefaultTransport.(*http.Transport).Clone()}
	defer client.CloseIdleConnections()
	resp, err := client.Do(req)
	if err != nil {
		t.Fatalf("push to %s: %v", url, err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(bytes.TrimSpace(body))
}
