package harness

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"sync"
	"testing"
	"time"

	"github.com/golang/snappy"
	"github.com/prometheus/prometheus/prompb"
)

// Proxy is an HTTP server on loopback that forwards every request to a
// real receiver, unless told to fail or stall, and records what it saw.
// It lets tests produce a receiver's bad days (5xx, 429 with Retry-After,
// timeouts) while the data that does get through lands in a real TSDB.
type Proxy struct {
	t        testing.TB
	srv      *httptest.Server
	upstream *url.URL
	client   *http.Client
	// stopping ends in-flight delays and forwards at cleanup, so closing
	// the server does not wait for them.
	stopping context.CancelFunc

	mu       sync.Mutex
	faults   []fault       // applied front to back
	delay    time.Duration // before each forward
	requests []Request     // in completion order
}

// fault is one queued Fail or Pass (status 0); left < 0 means until
// Clear.
type fault struct {
	left   int
	status int
	header http.Header
	body   string
}

// Request is what the proxy saw of one request and what it answered.
type Request struct {
	Method string
	Path   string
	Header http.Header
	Body   []byte // as received, still compressed
	// Write is the decoded snappy+protobuf body; nil when the body is empty
	// or undecodable (then DecodeErr says why).
	Write     *prompb.WriteRequest
	DecodeErr error
	// Status is what the client was answered: a queued fault's status, the
	// upstream's, 502 when the upstream was unreachable, or 0 when the
	// client gave up (its timeout) before an answer.
	Status int
	// Forwarded reports that the upstream received the request and
	// answered; Status is then its answer.
	Forwarded bool
	// Err is why there was no upstream answer, if there was none.
	Err      error
	Received time.Time
}

// StartProxy starts a proxy forwarding to upstream, a base URL such as
// Prometheus.URL(); a request for /api/v1/write goes to upstream's
// /api/v1/write. It is closed when the test ends.
func StartProxy(t testing.TB, upstream string) *Proxy {
	t.Helper()
	u, err := url.Parse(upstream)
	if err != nil || u.Scheme == "" || u.Host == "" {
		t.Fatalf("proxy upstream %q: want a base URL like http://127.0.0.1:9090 (parse error: %v)", upstream, err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	p := &Proxy{
		t:        t,
		upstream: u,
		client:   &http.Client{Transport: http.DefaultTransport.(*http.Transport).Clone()},
		stopping: cancel,
	}
	p.srv = httptest.NewUnstartedServer(http.HandlerFunc(p.serve))
	// Every request's context derives from ctx, so cancel reaches them all.
	p.srv.Config.BaseContext = func(net.Listener) context.Context { return ctx }
	p.srv.Start()
	t.Cleanup(func() {
		cancel()
		p.srv.Close()
		p.client.CloseIdleConnections()
	})
	return p
}

// URL is the proxy's base URL; URL()+"/api/v1/write" is where the agent
// writes.
func (p *Proxy) URL() string { return p.srv.URL }

// Fail answers the next n requests with status, header and body instead of
// forwarding them; n < 0 means every request until Clear. Calls queue up:
// Fail(1, 500, ...) then Fail(2, 429, ...) answers 500, 429, 429, then
// forwards again.
func (p *Proxy) Fail(n int, status int, header http.Header, body string) {
	p.t.Helper()
	if status < 100 || status > 999 {
		p.t.Fatalf("proxy Fail: status %d is not an HTTP status", status)
	}
	if n == 0 {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	p.faults = append(p.faults, fault{left: n, status: status, header: header.Clone(), body: body})
}

// Pass forwards the next n requests before the faults queued after it:
// Fail(1, 413, ...), Pass(1), Fail(1, 503, ...) answers 413, forwards
// one request, answers 503, then forwards again.
func (p *Proxy) Pass(n int) {
	if n <= 0 {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	p.faults = append(p.faults, fault{left: n})
}

// Delay holds every forwarded request for d before forwarding it. A client
// that gives up meanwhile (its timeout) ends the wait, and its request is
// never forwarded: the receiver did not get the data.
func (p *Proxy) Delay(d time.Duration) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.delay = d
}

// Clear drops queued faults and the delay; requests are forwarded at once
// again. The record of past requests stays.
func (p *Proxy) Clear() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.faults = nil
	p.delay = 0
}

// Requests returns every request finished so far, answered or abandoned
// by its client, in the order they finished.
func (p *Proxy) Requests() []Request {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]Request(nil), p.requests...)
}

// next pops the fault for one request, if any (a Pass is none), and
// returns the delay.
func (p *Proxy) next() (f fault, faulty bool, delay time.Duration) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if len(p.faults) == 0 {
		return fault{}, false, p.delay
	}
	f = p.faults[0]
	if p.faults[0].left > 0 {
		p.faults[0].left--
		if p.faults[0].left == 0 {
			p.faults = p.faults[1:]
		}
	}
	if f.status == 0 { // a Pass
		return fault{}, false, p.delay
	}
	return f, true, 0
}

// serve answers one request and records it.
func (p *Proxy) serve(w http.ResponseWriter, r *http.Request) {
	rec := Request{Method: r.Method, Path: r.URL.Path, Header: r.Header.Clone(), Received: time.Now()}
	defer func() {
		p.mu.Lock()
		defer p.mu.Unlock()
		p.requests = append(p.requests, rec)
	}()
	body, err := io.ReadAll(r.Body)
	if err != nil {
		rec.Err = fmt.Errorf("read request body: %w", err)
		rec.Status = http.StatusBadRequest
		http.Error(w, rec.Err.Error(), rec.Status)
		return
	}
	rec.Body = body
	rec.Write, rec.DecodeErr = DecodeWrite(body)

	f, faulty, delay := p.next()
	if faulty {
		for k, v := range f.header {
			w.Header()[k] = v
		}
		rec.Status = f.status
		w.WriteHeader(f.status)
		io.WriteString(w, f.body)
		return
	}
	if delay > 0 && !pause(r.Context(), delay) {
		rec.Err = fmt.Errorf("delayed %v, client gone first: %w", delay, r.Context().Err())
		return
	}
	rec.Status, rec.Forwarded, rec.Err = p.forward(w, r, body)
}

// forward sends the request upstream and relays the answer.
func (p *Proxy) forward(w http.ResponseWriter, r *http.Request, body []byte) (status int, forwarded bool, err error) {
	target := p.upstream.JoinPath(r.URL.Path)
	target.RawQuery = r.URL.RawQuery
	out, err := http.NewRequestWithContext(r.Context(), r.Method, target.String(), bytes.NewReader(body))
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadGateway)
		return http.StatusBadGateway, false, err
	}
	out.Header = r.Header.Clone()
	resp, err := p.client.Do(out)
	if err != nil {
		if r.Context().Err() != nil {
			// The client is gone; nobody reads an answer.
			return 0, false, fmt.Errorf("forward to %s: %w", target, err)
		}
		http.Error(w, err.Error(), http.StatusBadGateway)
		return http.StatusBadGateway, false, fmt.Errorf("forward to %s: %w", target, err)
	}
	defer resp.Body.Close()
	for k, v := range resp.Header {
		w.Header()[k] = v
	}
	w.WriteHeader(resp.StatusCode)
	if _, err := io.Copy(w, resp.Body); err != nil {
		return resp.StatusCode, true, fmt.Errorf("relay answer from %s: %w", target, err)
	}
	return resp.StatusCode, true, nil
}

// CountSamples decodes a remote-write 1.0 body and counts its samples.
func CountSamples(body []byte) (int, error) {
	wr, err := DecodeWrite(body)
	if err != nil || wr == nil {
		return 0, err
	}
	n := 0
	for _, ts := range wr.Timeseries {
		n += len(ts.Samples)
	}
	return n, nil
}

// DecodeWrite decodes a remote-write 1.0 body: snappy block format around
// a protobuf prompb.WriteRequest. Tests read what a sender sent with it.
func DecodeWrite(body []byte) (*prompb.WriteRequest, error) {
	if len(body) == 0 {
		return nil, nil
	}
	raw, err := snappy.Decode(nil, body)
	if err != nil {
		return nil, fmt.Errorf("snappy: %w", err)
	}
	var wr prompb.WriteRequest
	if err := wr.Unmarshal(raw); err != nil {
		return nil, fmt.Errorf("protobuf WriteRequest: %w", err)
	}
	return &wr, nil
}
