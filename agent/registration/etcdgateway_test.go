package registration

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/common/config"
	"github.com/prometheus/common/model"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/redwire/redwire/internal/harness"
)

// The gateway client's tests: what it makes of every answer shape the
// gateway has, unit-tested on canned bodies; failover, TLS, unix sockets
// and authentication against a real etcd, behind a proxy where a test
// needs a misbehaving one.

// etcdFront stands in front of a real etcd's client port: it forwards the
// gateway's requests there, except on routes given a fault, which it
// answers itself, as a misbehaving etcd or proxy would. It is not
// started: the test starts srv plain, with TLS or on another listener.
type etcdFront struct {
	srv    *httptest.Server
	mu     sync.Mutex
	faults map[string]etcdFault // by route, e.g. "/v3/kv/put"
	calls  map[string]int       // requests by route, faulted or not
}

type etcdFault struct {
	status int
	body   string
}

func newEtcdFront(t *testing.T, upstream string) *etcdFront {
	t.Helper()
	u, err := url.Parse(upstream)
	if err != nil {
		t.Fatal(err)
	}
	proxy := httputil.NewSingleHostReverseProxy(u)
	proxy.FlushInterval = -1 // stream answers as they come
	f := &etcdFront{faults: map[string]etcdFault{}, calls: map[string]int{}}
	f.srv = httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		f.mu.Lock()
		f.calls[r.URL.Path]++
		fault, faulty := f.faults[r.URL.Path]
		f.mu.Unlock()
		if !faulty {
			proxy.ServeHTTP(w, r)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(fault.status)
		io.WriteString(w, fault.body)
	}))
	// Refused TLS handshakes are what some tests are about.
	f.srv.Config.ErrorLog = log.New(io.Discard, "", 0)
	t.Cleanup(f.srv.Close)
	return f
}

// fail answers every request for route with status and body until clear.
func (f *etcdFront) fail(route string, status int, body string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.faults[route] = etcdFault{status, body}
}

func (f *etcdFront) clear(route string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	delete(f.faults, route)
}

func (f *etcdFront) count(route string) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.calls[route]
}

// closingEndpoint is host:port of a listener that accepts connections
// and closes them at once, like a dead member behind a load balancer.
// Unlike a closed port, no other test can take it over meanwhile.
func closingEndpoint(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			c.Close()
		}
	}()
	return l.Addr().String()
}

// silentEndpoint is host:port of a listener that accepts connections and
// never answers, like a member behind a firewall that drops packets.
func silentEndpoint(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var conns []net.Conn
	t.Cleanup(func() {
		l.Close()
		mu.Lock()
		defer mu.Unlock()
		for _, c := range conns {
			c.Close()
		}
	})
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
		}
	}()
	return l.Addr().String()
}

// gatewayFor is a gateway client of endpoints with cfg's other settings
// (nil: defaults, a one-second dial_timeout).
func gatewayFor(t *testing.T, cfg *EtcdConfig, endpoints ...string) *etcdGateway {
	t.Helper()
	if cfg == nil {
		cfg = &EtcdConfig{AgentID: "gw", DialTimeout: model.Duration(time.Second)}
	}
	cfg.Endpoints = endpoints
	cfg.setDefaults()
	if err := validate(cfg); err != nil {
		t.Fatal(err)
	}
	gw, err := newEtcdGateway(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(gw.close)
	return gw
}

func testCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// TestEtcdGatewayAnswers: every shape of answer the gateway gives, and
// the ones it should not, decode to a value or to an error that says
// what etcd said; an error in a 200 is an error.
func TestEtcdGatewayAnswers(t *testing.T) {
	type lease struct {
		ID  gwInt64 `json:"ID"`
		TTL gwInt64 `json:"TTL"`
	}
	tests := []struct {
		name     string
		status   int
		body     string
		stream   bool
		want     lease  // when no error is expected
		wantErr  string // substring of the error
		etcd     bool   // the error is an *etcdError…
		wantCode int    // …with this code
	}{
		{name: "unary", status: 200, body: `{"header":{"revision":"3"},"ID":"7587869422463513734","TTL":"5"}`,
			want: lease{7587869422463513734, 5}},
		{name: "bare numbers", status: 200, body: `{"ID":12,"TTL":5}`, want: lease{12, 5}},
		{name: "stream result", status: 200, stream: true, body: `{"result":{"header":{},"ID":"12","TTL":"5"}}` + "\n",
			want: lease{12, 5}},
		{name: "stream, lease unknown", status: 200, stream: true, body: `{"result":{"header":{},"ID":"12"}}`, want: lease{12, 0}},
		{name: "stream, no result", status: 200, stream: true, body: `{}`, want: lease{}},
		{name: "unary error in 200", status: 200, body: `{"error":"etcdserver: injected","message":"etcdserver: injected","code":9}`,
			wantErr: "etcdserver: injected (gRPC code 9)", etcd: true, wantCode: 9},
		{name: "error field of LeaseGrantResponse", status: 200, body: `{"header":{},"ID":"0","error":"lease refused"}`,
			wantErr: "lease refused", etcd: true, wantCode: 0},
		{name: "stream error in 200 (grpc-gateway v1)", status: 200, stream: true,
			body:    `{"error":{"grpc_code":14,"http_code":503,"message":"etcdserver: no leader","http_status":"Service Unavailable"}}`,
			wantErr: "etcdserver: no leader", etcd: true, wantCode: 14},
		{name: "stream error in 200 (grpc-gateway v2)", status: 200, stream: true,
			body: `{"error":{"code":13,"message":"etcdserver: boom","details":[]}}`, wantErr: "etcdserver: boom", etcd: true, wantCode: 13},
		{name: "unary error (grpc-gateway v1)", status: 404,
			body:    `{"error":"etcdserver: requested lease not found","message":"etcdserver: requested lease not found","code":5}`,
			wantErr: "etcdserver: requested lease not found", etcd: true, wantCode: 5},
		{name: "unary error (grpc-gateway v2)", status: 400, body: `{"code":3,"message":"etcdserver: bad","details":[]}`,
			wantErr: "etcdserver: bad", etcd: true, wantCode: 3},
		{name: "a proxy's error page", status: 502, body: "<html>bad gateway</html>", wantErr: `/v3/lease/grant: HTTP 502 Bad Gateway: "<html>bad gateway</html>"`},
		{name: "not etcd", status: 404, body: "404 page not found", wantErr: "HTTP 404 Not Found"},
		{name: "empty 200", status: 200, body: "", wantErr: "empty answer"},
		{name: "garbage 200", status: 200, body: "hello", wantErr: "answer is not a JSON object"},
	}
	for _, tc := range tests {
		var got lease
		status := fmt.Sprintf("%d %s", tc.status, http.StatusText(tc.status)) // as resp.Status
		err := decodeGatewayAnswer("/v3/lease/grant", status, tc.status, []byte(tc.body), &got, tc.stream)
		if tc.wantErr == "" {
			if err != nil || got != tc.want {
				t.Errorf("%s: %+v, %v; want %+v", tc.name, got, err, tc.want)
			}
			continue
		}
		if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
			t.Errorf("%s: error %v, want one containing %q", tc.name, err, tc.wantErr)
			continue
		}
		var ee *etcdError
		if isEtcd := errors.As(err, &ee); isEtcd != tc.etcd {
			t.Errorf("%s: %v (%T): etcd error %v, want %v", tc.name, err, err, isEtcd, tc.etcd)
		} else if isEtcd && ee.Code != tc.wantCode {
			t.Errorf("%s: code %d, want %d", tc.name, ee.Code, tc.wantCode)
		}
	}
}

func TestEtcdGatewayInt64(t *testing.T) {
	b, err := json.Marshal(struct {
		ID gwInt64 `json:"ID"`
	}{7587869422463513734})
	if err != nil || string(b) != `{"ID":"7587869422463513734"}` {
		t.Errorf("marshal: %s, %v", b, err)
	}
	var n gwInt64
	for _, tc := range []struct {
		in   string
		want gwInt64
	}{{`"9223372036854775807"`, 1<<63 - 1}, {`42`, 42}, {`null`, 42}} { // null leaves it as it was
		if err := json.Unmarshal([]byte(tc.in), &n); err != nil || n != tc.want {
			t.Errorf("unmarshal %s: %d, %v", tc.in, n, err)
		}
	}
	if err := json.Unmarshal([]byte(`"x1"`), &n); err == nil {
		t.Errorf(`unmarshal "x1": no error`)
	}
}

// TestEtcdGatewayEndpoints: every endpoint form the config accepts is
// reached the way the etcd client reached it.
func TestEtcdGatewayEndpoints(t *testing.T) {
	tests := []struct {
		ep   string
		tls  bool
		base string
	}{
		{"http://10.0.0.1:2379", false, "http://10.0.0.1:2379"},
		{"https://etcd.example:2379/ignored", true, "https://etcd.example:2379"},
		{"10.0.0.1:2379", false, "http://10.0.0.1:2379"},
		{"10.0.0.1:2379", true, "https://10.0.0.1:2379"},
		{"[::1]:2379", false, "http://[::1]:2379"},
		{"unix:///run/etcd.sock", false, "http://localhost"},
		{"unix:///run/etcd.sock", true, "https://localhost"},
		{"unixs://etcd.sock", true, "https://localhost"},
		{"unix:etcd.sock", false, "http://localhost"},
	}
	for _, tc := range tests {
		ep, err := newGatewayEndpoint(tc.ep, tc.tls, config.TLSConfig{})
		if err != nil {
			t.Errorf("%s: %v", tc.ep, err)
			continue
		}
		if ep.base != tc.base || ep.name != tc.ep {
			t.Errorf("%s (tls %v): base %q, name %q; want %q", tc.ep, tc.tls, ep.base, ep.name, tc.base)
		}
	}
}

// TestEtcdGatewayUnixSocket: an etcd reached over a unix socket.
func TestEtcdGatewayUnixSocket(t *testing.T) {
	t.Parallel()
	e := harness.StartEtcd(t)
	front := newEtcdFront(t, e.Endpoint())
	sock := filepath.Join(t.TempDir(), "etcd.sock")
	l, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	front.srv.Listener.Close()
	front.srv.Listener = l
	front.srv.Start()

	gw := gatewayFor(t, nil, "unix://"+sock)
	ctx := testCtx(t)
	lease, err := gw.grant(ctx, 60)
	if err != nil {
		t.Fatalf("grant over %s: %v", sock, err)
	}
	if ttl, err := leaseTTL(t, e, clientv3.LeaseID(lease)); err != nil || ttl <= 0 {
		t.Errorf("the lease granted over the socket: TTL %d, %v", ttl, err)
	}
	if n := front.count("/v3/lease/grant"); n != 1 {
		t.Errorf("%d grants through the socket, want 1", n)
	}
}

// TestEtcdGatewayTLS: an https endpoint is verified against tls.ca_file;
// without it the server's certificate is refused.
func TestEtcdGatewayTLS(t *testing.T) {
	t.Parallel()
	e := harness.StartEtcd(t)
	front, caFile := startTLSFront(t, e)

	gw := gatewayFor(t, &EtcdConfig{AgentID: "gw", DialTimeout: model.Duration(time.Second),
		TLS: config.TLSConfig{CAFile: caFile}}, front.srv.URL)
	ctx := testCtx(t)
	if _, err := gw.grant(ctx, 60); err != nil {
		t.Fatalf("grant over TLS with the CA: %v", err)
	}
	untrusting := gatewayFor(t, nil, front.srv.URL)
	if _, err := untrusting.grant(ctx, 60); err == nil || !strings.Contains(err.Error(), "certificate") || !strings.Contains(err.Error(), front.srv.URL) {
		t.Errorf("grant over TLS without the CA: %v, want a certificate error naming %s", err, front.srv.URL)
	}
}

// startTLSFront is an etcdFront serving TLS with a certificate for
// 127.0.0.1 from a test CA, whose file it returns.
func startTLSFront(t *testing.T, e *harness.Etcd) (*etcdFront, string) {
	t.Helper()
	dir := t.TempDir()
	ca := harness.NewTestCA(t, "etcd test CA")
	caFile := ca.File(t, dir)
	certFile, keyFile := ca.Issue(t, dir, "etcd", x509.ExtKeyUsageServerAuth)
	cert, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		t.Fatal(err)
	}
	front := newEtcdFront(t, e.Endpoint())
	front.srv.TLS = &tls.Config{Certificates: []tls.Certificate{cert}}
	front.srv.StartTLS()
	return front, caFile
}

// TestEtcdGatewayFailover: a member that says it is unavailable, or does
// not answer, is skipped for the next; one that refuses the request is
// not (the next would refuse it too); when all fail, each is named.
func TestEtcdGatewayFailover(t *testing.T) {
	t.Parallel()
	e := harness.StartEtcd(t)
	sick, healthy := newEtcdFront(t, e.Endpoint()), newEtcdFront(t, e.Endpoint())
	sick.srv.Start()
	healthy.srv.Start()
	ctx := testCtx(t)

	sick.fail("/v3/lease/keepalive", 200, `{"error":{"grpc_code":14,"http_code":503,"message":"etcdserver: no leader","http_status":"Service Unavailable"}}`)
	gw := gatewayFor(t, nil, sick.srv.URL, healthy.srv.URL)
	lease, err := gw.grant(ctx, 60)
	if err != nil {
		t.Fatal(err)
	}
	if gw.endpoint() != sick.srv.URL {
		t.Fatalf("the grant was answered by %s, want the first endpoint", gw.endpoint())
	}
	if ttl, err := gw.keepAlive(ctx, lease); err != nil || ttl != 60 {
		t.Errorf("keepalive with the first member without a leader: TTL %d, %v; want 60 from the second", ttl, err)
	}
	if gw.endpoint() != healthy.srv.URL || healthy.count("/v3/lease/keepalive") != 1 {
		t.Errorf("keepalive answered by %s, %d at the healthy member", gw.endpoint(), healthy.count("/v3/lease/keepalive"))
	}

	// A refusal is final: the other member is not asked.
	sick.fail("/v3/kv/put", 200, `{"error":"etcdserver: injected refusal","message":"etcdserver: injected refusal","code":9}`)
	gw = gatewayFor(t, nil, sick.srv.URL, healthy.srv.URL)
	err = gw.put(ctx, "/k", "v", 0)
	var ee *etcdError
	if !errors.As(err, &ee) || ee.Code != 9 || !strings.Contains(err.Error(), sick.srv.URL+": etcdserver: injected refusal") {
		t.Errorf("put refused in a 200: %v, want the etcd error naming %s", err, sick.srv.URL)
	}
	if n := healthy.count("/v3/kv/put"); n != 0 {
		t.Errorf("a refused put was tried at the next member too (%d)", n)
	}

	dead, silent := closingEndpoint(t), silentEndpoint(t)
	gw = gatewayFor(t, nil, dead, silent)
	_, err = gw.grant(ctx, 60)
	if err == nil || !strings.Contains(err.Error(), dead+": ") ||
		!strings.Contains(err.Error(), silent+": no answer within dial_timeout (1s)") ||
		!errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("grant with no member answering: %v; want each endpoint named", err)
	}
}

// TestEtcdGatewayAnswerBound: an answer is read up to a bound, and one
// beyond it is an error rather than memory.
func TestEtcdGatewayAnswerBound(t *testing.T) {
	t.Parallel()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Write([]byte(`{"kvs":[{"value":"`))
		chunk := []byte(strings.Repeat("A", 1<<16))
		for range gatewayMaxAnswer / len(chunk) {
			if _, err := w.Write(chunk); err != nil {
				return
			}
		}
		w.Write([]byte(`"}]}`))
	}))
	t.Cleanup(srv.Close)
	gw := gatewayFor(t, nil, srv.URL)
	if _, err := gw.get(testCtx(t), "/k"); err == nil || !strings.Contains(err.Error(), "answer larger than") {
		t.Errorf("a %d-byte answer: %v", gatewayMaxAnswer, err)
	}
}

// TestEtcdGatewayReauthenticates: a token etcd no longer knows (auth
// switched off and on here; an etcd restart or 5 idle minutes in the
// field) is replaced without failing the request; a username against an
// etcd without auth works without a token, as with the etcd client.
func TestEtcdGatewayReauthenticates(t *testing.T) {
	t.Parallel()
	e := harness.StartEtcd(t)
	ctx := testCtx(t)

	noAuth := gatewayFor(t, &EtcdConfig{AgentID: "gw", DialTimeout: model.Duration(time.Second),
		Username: "redwire", Password: "pw"}, e.Endpoint())
	if err := noAuth.put(ctx, DefaultKeyPrefix+"/a", "1", 0); err != nil {
		t.Fatalf("put with a username, auth off: %v", err)
	}

	root := enableEtcdAuth(t, e, "redwire", "pw")
	gw := gatewayFor(t, &EtcdConfig{AgentID: "gw", DialTimeout: model.Duration(time.Second),
		Username: "redwire", Password: "pw"}, e.Endpoint())
	key := DefaultKeyPrefix + "/b"
	if err := gw.put(ctx, key, "1", 0); err != nil {
		t.Fatalf("put with auth: %v", err)
	}
	first := gw.token
	if first == "" {
		t.Fatal("no token after a put with auth on")
	}
	if _, err := root.AuthDisable(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := e.Client().AuthEnable(ctx); err != nil {
		t.Fatal(err)
	}
	if err := gw.put(ctx, key, "2", 0); err != nil {
		t.Fatalf("put after the token was dropped: %v", err)
	}
	if gw.token == first {
		t.Errorf("token unchanged across auth off and on")
	}
	resp, err := root.Get(ctx, key)
	if err != nil || len(resp.Kvs) != 1 || string(resp.Kvs[0].Value) != "2" {
		t.Errorf("key after the second put: %v, %v", resp, err)
	}

	// A key outside the role's prefix: refused, not retried forever.
	if err := gw.put(ctx, "/elsewhere", "x", 0); err == nil || !strings.Contains(err.Error(), "permission denied") {
		t.Errorf("put outside the granted prefix: %v", err)
	}
}
