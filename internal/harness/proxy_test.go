package harness

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/prometheus/prompb"
)

// upstream is a stand-in receiver answering 204 and counting requests; the
// receivers themselves are exercised through the proxy in TestReceivers.
func upstream(t *testing.T) (*httptest.Server, *atomic.Int64) {
	t.Helper()
	var n atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n.Add(1)
		if r.URL.Path != "/api/v1/write" || r.URL.RawQuery != "x=1" {
			http.Error(w, "wrong path "+r.URL.RequestURI(), http.StatusNotFound)
			return
		}
		w.WriteHeader(http.StatusNoContent)
	}))
	t.Cleanup(srv.Close)
	return srv, &n
}

var oneSample = writeRequest(map[string]string{"__name__": "x"}, prompb.Sample{Value: 1, Timestamp: 1})

func TestProxyFaultQueue(t *testing.T) {
	t.Parallel()
	up, forwarded := upstream(t)
	p := StartProxy(t, up.URL)
	url := p.URL() + "/api/v1/write?x=1"

	p.Fail(1, 500, nil, "boom")
	p.Fail(2, 429, http.Header{"Retry-After": {"7"}}, "")
	p.Fail(0, 400, nil, "") // nothing queued
	var got []string
	for range 4 {
		status, body := push(t, url, oneSample)
		got = append(got, fmt.Sprintf("%d%s", status, body))
	}
	p.Fail(-1, 503, nil, "")
	for range 3 {
		status, _ := push(t, url, oneSample)
		got = append(got, fmt.Sprint(status))
	}
	p.Clear()
	status, body := push(t, url, oneSample)
	got = append(got, fmt.Sprintf("%d%s", status, body))

	want := "500boom 429 429 204 503 503 503 204"
	if strings.Join(got, " ") != want {
		t.Errorf("answers %q, want %q", strings.Join(got, " "), want)
	}
	if n := forwarded.Load(); n != 2 {
		t.Errorf("upstream got %d requests, want 2", n)
	}
	reqs := p.Requests()
	if len(reqs) != 8 {
		t.Fatalf("%d requests recorded, want 8", len(reqs))
	}
	for i, r := range reqs {
		wantFwd := i == 3 || i == 7
		if r.Forwarded != wantFwd || r.Write == nil || r.DecodeErr != nil || r.Path != "/api/v1/write" {
			t.Errorf("request %d: forwarded %v write %v decode error %v path %q", i, r.Forwarded, r.Write, r.DecodeErr, r.Path)
		}
	}
}

func TestProxyRetryAfterHeader(t *testing.T) {
	t.Parallel()
	up, _ := upstream(t)
	p := StartProxy(t, up.URL)
	p.Fail(1, 429, http.Header{"Retry-After": {"7"}}, "slow down")
	resp, err := http.Post(p.URL()+"/api/v1/write", "application/x-protobuf", strings.NewReader("not snappy"))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 429 || resp.Header.Get("Retry-After") != "7" || string(body) != "slow down" {
		t.Errorf("answer %d %v %q", resp.StatusCode, resp.Header, body)
	}
	r := p.Requests()[0]
	if r.Write != nil || r.DecodeErr == nil || string(r.Body) != "not snappy" {
		t.Errorf("undecodable body recorded as write %v, error %v, body %q", r.Write, r.DecodeErr, r.Body)
	}
}

// TestProxyDelayHonoursClientTimeout: a client that gives up ends the
// delay at once, and the request is not forwarded. The delay is far
// longer than the wait for the request to be recorded, so its being
// recorded at all shows the client's leaving ended it.
func TestProxyDelayHonoursClientTimeout(t *testing.T) {
	t.Parallel()
	up, forwarded := upstream(t)
	p := StartProxy(t, up.URL)
	p.Delay(time.Hour)

	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodPost, p.URL()+"/api/v1/write?x=1", strings.NewReader(""))
	if resp, err := http.DefaultClient.Do(req); err == nil {
		resp.Body.Close()
		t.Fatalf("delayed request answered %d", resp.StatusCode)
	}
	WaitFor(t, time.Minute, "the abandoned request to be recorded", func() (bool, error) {
		return len(p.Requests()) == 1, nil
	})
	r := p.Requests()[0]
	if r.Forwarded || r.Status != 0 || !errors.Is(r.Err, context.Canceled) {
		t.Errorf("abandoned request recorded as forwarded %v status %d error %v", r.Forwarded, r.Status, r.Err)
	}
	if r.Write != nil || r.DecodeErr != nil {
		t.Errorf("empty body recorded as write %v, error %v", r.Write, r.DecodeErr)
	}

	p.Delay(50 * time.Millisecond)
	if status, _ := push(t, p.URL()+"/api/v1/write?x=1", oneSample); status != 204 {
		t.Errorf("short delay: %d", status)
	}
	if n := forwarded.Load(); n != 1 {
		t.Errorf("upstream got %d requests, want 1", n)
	}
}

func TestProxyUpstreamDown(t *testing.T) {
	t.Parallel()
	p := StartProxy(t, fmt.Sprintf("http://127.0.0.1:%d", FreePort(t)))
	if status, _ := push(t, p.URL()+"/api/v1/write", oneSample); status != http.StatusBadGateway {
		t.Errorf("status %d, want 502", status)
	}
	if r := p.Requests()[0]; r.Forwarded || r.Status != 502 || r.Err == nil {
		t.Errorf("recorded forwarded %v status %d error %v", r.Forwarded, r.Status, r.Err)
	}
}
