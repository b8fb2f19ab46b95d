package harness

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"path/filepath"
	"sort"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/golang/snappy"
	"github.com/prometheus/common/model"
)

const (
	// ThanosTenantHeader is the header that names the tenant of a write
	// to Thanos Receive (its --receive.tenant-header default).
	ThanosTenantHeader = "THANOS-TENANT"
	// ThanosDefaultTenant is the tenant of a write without that header.
	ThanosDefaultTenant = "default-tenant"
	// thanosTenantLabel is the label Receive adds to every series with
	// its tenant (--receive.tenant-label-name's default).
	thanosTenantLabel = "tenant_id"
	// thanosReceiveLabel is the external label Receive refuses to start
	// without, and also adds to every series.
	thanosReceiveLabel = "receive"
)

// thanosInfoInterval is how often Thanos Query refreshes its view of
// Receive, and thanosSyncPoll how often sync looks whether it has.
const (
	thanosInfoInterval = time.Second
	thanosSyncPoll     = 50 * time.Millisecond
)

// ThanosOptions chooses how StartThanosReceiveWith runs Thanos Receive.
// The zero value is StartThanosReceive.
type ThanosOptions struct {
	// OutOfOrderWindow is --tsdb.out-of-order.time-window: how far behind
	// a series' newest sample a sample is still taken. 0 keeps Thanos's
	// default, which refuses every out-of-order sample.
	OutOfOrderWindow time.Duration
}

// ThanosReceive is Thanos Receive (ThanosVersion, built once by make
// deps) run for one test as a remote-write receiver: one ingestor with no
// hashring, which stores everything it is sent in its own TSDB.
//
// Receive has no PromQL HTTP API, so a Thanos Query runs beside it,
// reading Receive's gRPC Store API, and Query, QueryRange and Samples ask
// that Query, after waiting for it to have caught up with Receive (sync,
// a second or two). Two things make its answers read like Prometheus's:
//   - --no-query.partial-response, so that a query that could not reach
//     Receive fails instead of answering with what it has (nothing);
//   - the two labels Receive adds to every series, receive="true" and
//     tenant_id, are Query's replica labels, which it drops from answers
//     (Tenants keeps tenant_id). Series that differ only in their tenant
//     therefore read as one.
//
// Stop, Kill and Start act on both: Query is the test's window into
// Receive, and starting it afresh with Receive spares the test its gRPC
// reconnect backoff, which grows through a long outage.
type ThanosReceive struct {
	recv, query *server
	api         *apiClient // Query's HTTP API, the replica labels dropped
	tenantAPI   *apiClient // the same, keeping tenant_id
	self        *apiClient // Receive's own HTTP listener, for /metrics

	opts ThanosOptions
	// Receive's HTTP and gRPC ports belong to recv.port (its remote-write
	// port), Query's gRPC port to query.port: each is written only by
	// args, inside launch with that server's mu held, and restarts keep it.
	rwPort, httpPort, grpcPort, capnpPort int
	queryPort, queryGRPCPort              int
}

// StartThanosReceive starts Thanos Receive and a Thanos Query reading it,
// each on free loopback ports, and returns once Receive takes an empty
// write request and Query reaches its Store API.
func StartThanosReceive(t testing.TB) *ThanosReceive {
	t.Helper()
	return StartThanosReceiveWith(t, ThanosOptions{})
}

// StartThanosReceiveWith is StartThanosReceive as opts say.
func StartThanosReceiveWith(t testing.TB, opts ThanosOptions) *ThanosReceive {
	t.Helper()
	bin := cachedBinary(t, "thanos", ThanosVersion)
	th := &ThanosReceive{
		recv:      newServerAt(t, "thanos-receive", bin),
		query:     newServerAt(t, "thanos-query", bin),
		opts:      opts,
		api:       newAPIClient("", nil),
		tenantAPI: newAPIClient("", url.Values{"replicaLabels[]": {thanosReceiveLabel}}),
		self:      newAPIClient("", nil),
	}
	for _, a := range []*apiClient{th.api, th.tenantAPI, th.self} {
		t.Cleanup(a.http.CloseIdleConnections)
	}
	th.recv.args = th.receiveArgs
	th.recv.probe = th.receiveProbe
	th.query.args = th.queryArgs
	th.query.probe = th.queryProbe
	th.recv.start(FreePort(t))
	th.self.base = "http://127.0.0.1:" + strconv.Itoa(th.httpPort)
	th.query.start(FreePort(t))
	th.api.base = "http://" + th.query.hostPort()
	th.tenantAPI.base = th.api.base
	return th
}

// dataDir is Receive's TSDB (one per tenant), kept across Stop and Start.
func (th *ThanosReceive) dataDir() string { return filepath.Join(th.recv.dir, "data") }

// receiveArgs is called for every spawn of Receive. A first start that
// moves to a fresh remote-write port (port clash) takes fresh ports for
// its other listeners too, since the clash may have been on any of them.
// Every listener is named: each defaults to a fixed port on all
// interfaces, which two tests would share.
func (th *ThanosReceive) receiveArgs(port int) []string {
	if port != th.rwPort {
		th.rwPort = port
		th.httpPort, th.grpcPort, th.capnpPort = FreePort(th.recv.t), FreePort(th.recv.t), FreePort(th.recv.t)
	}
	args := []string{
		"receive",
		"--tsdb.path=" + th.dataDir(),
		"--remote-write.address=127.0.0.1:" + strconv.Itoa(th.rwPort),
		"--http-address=127.0.0.1:" + strconv.Itoa(th.httpPort),
		"--grpc-address=127.0.0.1:" + strconv.Itoa(th.grpcPort),
		// Cap'n Proto replication between receivers; unused by one.
		"--receive.capnproto-address=127.0.0.1:" + strconv.Itoa(th.capnpPort),
		"--label=" + thanosReceiveLabel + `="true"`,
		// Both default to 2 min of waiting for open requests after
		// SIGTERM; the storage is flushed either way.
		"--http-grace-period=0s",
		"--grpc-grace-period=0s",
	}
	if th.opts.OutOfOrderWindow > 0 {
		args = append(args, "--tsdb.out-of-order.time-window="+model.Duration(th.opts.OutOfOrderWindow).String())
	}
	return args
}

// receiveProbe is ready when the remote-write listener takes an empty
// write request (Receive answers 503 until its TSDB is open, then 200)
// and the child holds its ports.
func (th *ThanosReceive) receiveProbe(ctx context.Context, port, pid int) error {
	for _, p := range []int{port, th.httpPort, th.grpcPort, th.capnpPort} {
		if err := listensOn(pid, p); err != nil {
			return err
		}
	}
	write := fmt.Sprintf("http://127.0.0.1:%d/api/v1/receive", port)
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, write, bytes.NewReader(snappy.Encode(nil, nil)))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Encoding", "snappy")
	req.Header.Set("Content-Type", "application/x-protobuf")
	req.Header.Set("X-Prometheus-Remote-Write-Version", "0.1.0")
	resp, err := th.self.http.Do(req)
	if err != nil {
		return err
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if resp.StatusCode/100 != 2 {
		return fmt.Errorf("POST %s with an empty request: HTTP %d", write, resp.StatusCode)
	}
	return nil
}

// queryArgs is called for every spawn of Query; its ports move together,
// as Receive's do.
func (th *ThanosReceive) queryArgs(port int) []string {
	if port != th.queryPort {
		th.queryPort, th.queryGRPCPort = port, FreePort(th.query.t)
	}
	return []string{
		"query",
		"--http-address=127.0.0.1:" + strconv.Itoa(th.queryPort),
		"--grpc-address=127.0.0.1:" + strconv.Itoa(th.queryGRPCPort),
		"--endpoint.sd-config=endpoints: [{address: '127.0.0.1:" + strconv.Itoa(th.grpcPort) + "'}]",
		"--query.replica-label=" + thanosReceiveLabel,
		"--query.replica-label=" + thanosTenantLabel,
		"--no-query.partial-response",
		// How often Query asks Receive for its time range (see sync),
		// and how long it waits for the answer; 5 s by default.
		"--endpoint.info-timeout=" + model.Duration(thanosInfoInterval).String(),
		"--http-grace-period=0s",
		"--grpc-grace-period=0s",
	}
}

// queryProbe is ready when Query answers /-/ready, holds its ports, and
// has reached our Receive's Store API: before that, a query would find
// nothing.
func (th *ThanosReceive) queryProbe(ctx context.Context, port, pid int) error {
	for _, p := range []int{port, th.queryGRPCPort} {
		if err := listensOn(pid, p); err != nil {
			return err
		}
	}
	base := "http://127.0.0.1:" + strconv.Itoa(port)
	if _, err := th.self.fetch(ctx, base+"/-/ready"); err != nil {
		return err
	}
	_, err := th.storeChecked(ctx, base)
	return err
}

// storeChecked is when the Query at base last refreshed its view of our
// Receive (its Info call: time range, label sets) successfully.
func (th *ThanosReceive) storeChecked(ctx context.Context, base string) (time.Time, error) {
	body, err := th.self.fetch(ctx, base+"/api/v1/stores")
	if err != nil {
		return time.Time{}, err
	}
	var stores struct {
		Data map[string][]struct {
			Name      string    `json:"name"`
			LastCheck time.Time `json:"lastCheck"`
			LastError *string   `json:"lastError"`
		} `json:"data"`
	}
	if err := json.Unmarshal(body, &stores); err != nil {
		return time.Time{}, fmt.Errorf("decode %s/api/v1/stores: %w", base, err)
	}
	want := "127.0.0.1:" + strconv.Itoa(th.grpcPort)
	for _, s := range stores.Data["receive"] {
		if s.Name != want {
			continue
		}
		if s.LastError != nil {
			return time.Time{}, fmt.Errorf("%w: thanos query reaches receive %s with an error: %s", errStoreNotReached, want, *s.LastError)
		}
		return s.LastCheck, nil
	}
	return time.Time{}, fmt.Errorf("%w: thanos query on %s does not list receive %s yet: %s", errStoreNotReached, base, want, snippet(body))
}

// errStoreNotReached is a Query that answers but has not reached Receive
// in its last refresh: worth waiting for, unlike a Query that is down.
var errStoreNotReached = errors.New("receive not reached")

// sync waits until Query's view of Receive is newer than the call: Query
// picks the stores a query goes to by the time range each reported in its
// last Info call, made every --endpoint.info-timeout (1 s here), and until
// it has asked again it misses what Receive took meanwhile (a new TSDB
// reports an empty range). Two refreshes after the call are needed: the
// first one seen may have asked before the call. Query, QueryRange,
// Samples and Tenants call it, so they see every write that was answered
// before they were called.
func (th *ThanosReceive) sync(ctx context.Context) error {
	// A refresh that failed (a slow machine can make the Info call time
	// out) is waited past, but not for ever: ctx often has no deadline.
	// A Query that does not answer at all fails the call at once.
	ctx, cancel := context.WithTimeout(ctx, startTimeout)
	defer cancel()
	base := th.QueryURL()
	tick := time.NewTicker(thanosSyncPoll)
	defer tick.Stop()
	var last time.Time
	var err error
	for refreshes := -1; refreshes < 2; {
		var checked time.Time
		checked, err = th.storeChecked(ctx, base)
		if err != nil && !errors.Is(err, errStoreNotReached) {
			return err
		}
		if err == nil && checked.After(last) {
			refreshes, last = refreshes+1, checked
			continue
		}
		select {
		case <-ctx.Done():
			if err == nil {
				err = ctx.Err()
			}
			return fmt.Errorf("thanos query did not refresh its view of receive twice: %w", err)
		case <-tick.C:
		}
	}
	return nil
}

// URL is Receive's remote-write listener, "http://127.0.0.1:PORT"; it
// survives restarts.
func (th *ThanosReceive) URL() string { return "http://" + th.recv.hostPort() }

// WriteURL is the remote-write endpoint.
func (th *ThanosReceive) WriteURL() string { return th.URL() + "/api/v1/receive" }

// QueryURL is the Thanos Query beside Receive, which serves the
// Prometheus HTTP API.
func (th *ThanosReceive) QueryURL() string { return "http://" + th.query.hostPort() }

// Dir is Receive's temp dir: TSDB (data/) and thanos-receive.log.
func (th *ThanosReceive) Dir() string { return th.recv.dir }

// Query syncs, then evaluates promql now through Thanos Query.
func (th *ThanosReceive) Query(ctx context.Context, promql string) (Vector, error) {
	if err := th.sync(ctx); err != nil {
		return nil, err
	}
	return th.api.instant(ctx, promql)
}

// QueryRange syncs, then evaluates promql at every step from start to
// end.
func (th *ThanosReceive) QueryRange(ctx context.Context, promql string, start, end time.Time, step time.Duration) ([]RangeSeries, error) {
	if err := th.sync(ctx); err != nil {
		return nil, err
	}
	return th.api.rangeQuery(ctx, promql, start, end, step)
}

// Samples syncs, then returns the raw samples of selector over the last
// window, with their own timestamps.
func (th *ThanosReceive) Samples(ctx context.Context, selector string, window time.Duration) ([]RangeSeries, error) {
	if err := th.sync(ctx); err != nil {
		return nil, err
	}
	return th.api.samples(ctx, selector, window)
}

// Tenants lists, sorted, the tenants that hold series matching selector:
// the tenant_id label Receive gives every series it stores, from the
// THANOS-TENANT header of the write (ThanosDefaultTenant without one).
func (th *ThanosReceive) Tenants(ctx context.Context, selector string) ([]string, error) {
	if err := th.sync(ctx); err != nil {
		return nil, err
	}
	vec, err := th.tenantAPI.instant(ctx, fmt.Sprintf("count by (%s) (%s)", thanosTenantLabel, selector))
	if err != nil {
		return nil, err
	}
	out := make([]string, 0, len(vec))
	for _, s := range vec {
		out = append(out, s.Labels[thanosTenantLabel])
	}
	sort.Strings(out)
	return out, nil
}

// Metric sums Receive's own /metrics samples matching series, a name with
// optional required labels; absent series read 0. Its TSDB counters carry
// a tenant label, e.g.
// `prometheus_tsdb_out_of_order_samples_total{tenant="default-tenant"}`.
func (th *ThanosReceive) Metric(ctx context.Context, series string) (float64, error) {
	return th.self.metric(ctx, series)
}

// Stop shuts Receive down with SIGTERM (it flushes its TSDB) and Query
// with it, and waits; the TSDB stays for Start. A no-op when stopped.
func (th *ThanosReceive) Stop() {
	th.recv.t.Helper()
	th.query.stop(syscall.SIGTERM)
	th.recv.stop(syscall.SIGTERM)
}

// Kill ends Receive with SIGKILL, as a crash would (Start replays its
// WAL), and stops Query.
func (th *ThanosReceive) Kill() {
	th.recv.t.Helper()
	th.query.stop(syscall.SIGTERM)
	th.recv.stop(syscall.SIGKILL)
}

// Start runs Receive and Query again on the same ports and TSDB and waits
// until both are ready. A no-op while they are running.
func (th *ThanosReceive) Start() {
	th.recv.t.Helper()
	th.recv.restart()
	th.query.restart()
}

var _ Receiver = (*ThanosReceive)(nil)
