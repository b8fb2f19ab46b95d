package registration

// A small etcd v3 client over etcd's JSON gRPC-gateway, for the registrar.
//
// Why not go.etcd.io/etcd/client/v3: it links gRPC (65 packages), zap and
// etcd's API packages into the agent for five requests every lease_ttl/3,
// which costs ~4.5 MB of binary and ~4.3 MB of resident memory. The agent's
// RSS is a performance target (at most half of redis_exporter+vmagent), and
// an edge agent has no other use for gRPC. Every etcd since 3.4 serves the
// same RPCs on its client port as JSON over HTTP under /v3/.
//
// The gateway's conventions, which this file and etcdgateway_answer.go
// (reading answers and errors) are the only ones to know:
// requests are POSTs of the RPC's message as JSON; bytes (keys, values)
// are base64 and int64s are JSON strings; a streaming RPC answers each
// message as {"result": …} and fails as {"error": {…}}, possibly in a 200;
// a unary RPC fails as {"error": "…", "code": N, "message": "…"} (a 200
// with an error field counts as failed too).

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"path"
	"strings"
	"time"

	"github.com/prometheus/common/config"
)

// gatewayMaxAnswer bounds what is read of one answer. The largest honest
// one is a range of our key, whose value etcd caps at its request limit
// (1.5 MiB by default), base64 inflates by 4/3.
const gatewayMaxAnswer = 4 << 20

// gRPC status codes that etcd's answers carry and the client acts on.
const (
	grpcUnavailable     = 14 // no leader, leader changed, timed out: another member may do
	grpcUnauthenticated = 16 // "invalid auth token": authenticate again
)

// etcdGateway talks to etcd at the endpoints of one EtcdConfig.
// It is owned by one goroutine (the registrar's session), like the token
// and the endpoint preference it keeps.
type etcdGateway struct {
	endpoints []*gatewayEndpoint
	current   int           // the endpoint that answered last, tried first
	timeout   time.Duration // dial_timeout: bounds each request to one endpoint

	username, password string
	authenticated      bool   // token is set, or etcd said auth is off
	token              string // sent as Authorization when not ""
}

// gatewayEndpoint is one configured endpoint and the client that reaches
// it (its own, since a unix socket needs its own dialer).
type gatewayEndpoint struct {
	name   string // as configured, for errors
	base   string // scheme://host:port that the /v3/… paths are appended to
	client *http.Client
}

// newEtcdGateway builds the clients of cfg's endpoints and reads the
// password; it does not connect. cfg must be valid.
func newEtcdGateway(cfg *EtcdConfig) (*etcdGateway, error) {
	g := &etcdGateway{timeout: time.Duration(cfg.DialTimeout), username: cfg.Username}
	if cfg.Username != "" {
		pw, err := cfg.password()
		if err != nil {
			return nil, err
		}
		g.password = pw
	}
	useTLS := cfg.usesTLS()
	for _, ep := range cfg.Endpoints {
		gep, err := newGatewayEndpoint(ep, useTLS, cfg.TLS)
		if err != nil {
			return nil, err
		}
		g.endpoints = append(g.endpoints, gep)
	}
	return g, nil
}

// newGatewayEndpoint reads ep the way the etcd client does:
// http(s)://host:port, host:port (https if useTLS), and unix(s)://path,
// where unix:///abs is an absolute path, unix://rel (or unix:rel) a
// relative one, TLS goes by useTLS for unix and is on for unixs, and the
// socket's file name is the server name TLS verifies unless
// tls.server_name says otherwise.
func newGatewayEndpoint(ep string, useTLS bool, tc config.TLSConfig) (*gatewayEndpoint, error) {
	scheme, rest, found := strings.Cut(ep, "://")
	if !found {
		scheme, rest = "http", ep
		if useTLS {
			scheme = "https"
		}
		// Validation takes unix:rel for host:port; the etcd client did not.
		for _, unix := range []string{"unix", "unixs"} {
			if r, ok := strings.CutPrefix(ep, unix+":"); ok {
				scheme, rest = unix, r
			}
		}
	}
	var opts []config.HTTPClientOption
	gep := &gatewayEndpoint{name: ep}
	switch scheme {
	case "http", "https":
		u, err := url.Parse(scheme + "://" + rest)
		if err != nil {
			return nil, fmt.Errorf("endpoint %s: %w", ep, err)
		}
		gep.base = scheme + "://" + u.Host // a path is ignored, as by the etcd client
	case "unix", "unixs":
		socket := rest
		if scheme == "unixs" || useTLS {
			gep.base = "https://localhost"
			if tc.ServerName == "" {
				tc.ServerName = path.Base(socket)
			}
		} else {
			gep.base = "http://localhost"
		}
		opts = append(opts, config.WithDialContextFunc(func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "unix", socket)
		}))
	default:
		return nil, fmt.Errorf("endpoint %s: unsupported scheme %q", ep, scheme)
	}
	// HTTP/1.1 (EnableHTTP2 unset), on which every etcd serves the
	// gateway; on a plain port etcd hands HTTP/2 connections to gRPC.
	client, err := config.NewClientFromConfig(config.HTTPClientConfig{TLSConfig: tc}, "etcd_registration", opts...)
	if err != nil {
		return nil, fmt.Errorf("tls: %w", err)
	}
	gep.client = client
	return gep, nil
}

// close drops the idle connections, so none outlives the session.
func (g *etcdGateway) close() {
	for _, ep := range g.endpoints {
		ep.client.CloseIdleConnections()
	}
}

// endpoint is the endpoint that answered last.
func (g *etcdGateway) endpoint() string { return g.endpoints[g.current].name }

// authenticate gets a token for username; call does it when needed. An
// etcd with auth off says so and takes requests without a token, as the
// etcd client does.
func (g *etcdGateway) authenticate(ctx context.Context) error {
	g.token, g.authenticated = "", false
	in := struct {
		Name     string `json:"name"`
		Password string `json:"password"`
	}{g.username, g.password}
	var out struct {
		Token string `json:"token"`
	}
	err := g.post(ctx, "/v3/auth/authenticate", &in, &out, false)
	var ee *etcdError
	switch {
	case errors.As(err, &ee) && ee.Message == "etcdserver: authentication is not enabled":
		// Requests go without a token.
	case err != nil:
		return fmt.Errorf("authenticate as %s: %w", g.username, err)
	case out.Token == "":
		return fmt.Errorf("authenticate as %s: %s: etcd returned no token", g.username, g.endpoint())
	}
	g.token, g.authenticated = out.Token, true
	return nil
}

// grant creates a lease of ttl seconds and returns its ID.
func (g *etcdGateway) grant(ctx context.Context, ttl int64) (int64, error) {
	in := struct {
		TTL gwInt64 `json:"TTL"`
	}{gwInt64(ttl)}
	var out struct {
		ID gwInt64 `json:"ID"`
	}
	if err := g.call(ctx, "/v3/lease/grant", &in, &out, false); err != nil {
		return 0, err
	}
	if out.ID == 0 {
		return 0, fmt.Errorf("%s: etcd granted no lease ID", g.endpoint())
	}
	return int64(out.ID), nil
}

// keepAlive renews lease once and returns its TTL in seconds; 0 means
// etcd does not know the lease (any more). It is the one message of a
// LeaseKeepAlive stream: the gateway ends the stream once the request
// body, and with it the client's side of the stream, has ended.
func (g *etcdGateway) keepAlive(ctx context.Context, lease int64) (int64, error) {
	in := struct {
		ID gwInt64 `json:"ID"`
	}{gwInt64(lease)}
	var out struct {
		TTL gwInt64 `json:"TTL"`
	}
	if err := g.call(ctx, "/v3/lease/keepalive", &in, &out, true); err != nil {
		return 0, err
	}
	return int64(out.TTL), nil
}

// gatewayKV is a key as range returns it.
type gatewayKV struct {
	Value []byte  `json:"value"`
	Lease gwInt64 `json:"lease"` // 0: no lease
}

// get reads key; nil if it does not exist.
func (g *etcdGateway) get(ctx context.Context, key string) (*gatewayKV, error) {
	in := struct {
		Key []byte `json:"key"`
	}{[]byte(key)}
	var out struct {
		Kvs []gatewayKV `json:"kvs"`
	}
	if err := g.call(ctx, "/v3/kv/range", &in, &out, false); err != nil {
		return nil, err
	}
	if len(out.Kvs) == 0 {
		return nil, nil
	}
	return &out.Kvs[0], nil
}

// put writes key under lease.
func (g *etcdGateway) put(ctx context.Context, key, value string, lease int64) error {
	in := struct {
		Key   []byte  `json:"key"`
		Value []byte  `json:"value"`
		Lease gwInt64 `json:"lease"`
	}{[]byte(key), []byte(value), gwInt64(lease)}
	return g.call(ctx, "/v3/kv/put", &in, &struct{}{}, false)
}

// revoke ends lease and deletes the keys under it.
func (g *etcdGateway) revoke(ctx context.Context, lease int64) error {
	in := struct {
		ID gwInt64 `json:"ID"`
	}{gwInt64(lease)}
	return g.call(ctx, "/v3/lease/revoke", &in, &struct{}{}, false)
}

// call is post with authentication: it gets a token first if a username
// is set, and once more if etcd refuses the token. A token dies with an
// etcd restart, after 5 idle minutes (simple tokens) and when auth is
// switched off and on; the etcd client renews it the same way.
func (g *etcdGateway) call(ctx context.Context, route string, in, out any, stream bool) error {
	if g.username == "" {
		return g.post(ctx, route, in, out, stream)
	}
	if !g.authenticated {
		if err := g.authenticate(ctx); err != nil {
			return err
		}
	}
	err := g.post(ctx, route, in, out, stream)
	if !tokenRefused(err) {
		return err
	}
	if err := g.authenticate(ctx); err != nil {
		return err
	}
	return g.post(ctx, route, in, out, stream)
}

// tokenRefused reports whether err is etcd refusing the request's token,
// which a new token fixes.
func tokenRefused(err error) bool {
	var ee *etcdError
	if !errors.As(err, &ee) {
		return false
	}
	return ee.Code == grpcUnauthenticated ||
		ee.Message == "etcdserver: user name is empty" || // the token was dropped
		ee.Message == "etcdserver: revision of auth store is old"
}

// post sends in to route at the endpoints in turn, starting with the one
// that answered last, until one answers; each try is bounded by
// dial_timeout. etcd refusing the request is an answer, except when it
// says it is unavailable (no leader): another member may do better.
// A request may thus reach two members; every request the registrar
// makes can be repeated (a second grant leaves a lease that expires
// unused).
func (g *etcdGateway) post(ctx context.Context, route string, in, out any, stream bool) error {
	body, err := json.Marshal(in)
	if err != nil {
		return fmt.Errorf("encode %s: %w", route, err)
	}
	var errs endpointErrors
	for i := range g.endpoints {
		n := (g.current + i) % len(g.endpoints)
		ep := g.endpoints[n]
		err := g.postTo(ctx, ep, route, body, out, stream)
		if err == nil {
			g.current = n
			return nil
		}
		errs = append(errs, fmt.Errorf("%s: %w", ep.name, err))
		var ee *etcdError
		if ctx.Err() != nil || errors.As(err, &ee) && ee.Code != grpcUnavailable {
			break
		}
	}
	if len(errs) == 1 {
		return errs[0]
	}
	return errs
}

// postTo is one try of post, at ep.
func (g *etcdGateway) postTo(ctx context.Context, ep *gatewayEndpoint, route string, body []byte, out any, stream bool) error {
	tctx, cancel := context.WithTimeout(ctx, g.timeout)
	defer cancel()
	err := g.exchange(tctx, ep, route, body, out, stream)
	if err != nil && ctx.Err() == nil && errors.Is(tctx.Err(), context.DeadlineExceeded) {
		return fmt.Errorf("no answer within dial_timeout (%s): %w", g.timeout, err)
	}
	return err
}

// exchange makes the HTTP request and reads the answer into out.
func (g *etcdGateway) exchange(ctx context.Context, ep *gatewayEndpoint, route string, body []byte, out any, stream bool) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, ep.base+route, bytes.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	if g.token != "" {
		req.Header.Set("Authorization", g.token)
	}
	resp, err := ep.client.Do(req)
	if err != nil {
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err // its text repeats the URL, which the caller names
		}
		return err
	}
	defer resp.Body.Close()
	// MaxBytesReader is meant for servers, but with no ResponseWriter it
	// is just a reader that fails past its limit, saying so.
	data, err := io.ReadAll(http.MaxBytesReader(nil, resp.Body, gatewayMaxAnswer))
	if err != nil {
		var tooLarge *http.MaxBytesError
		if errors.As(err, &tooLarge) {
			return fmt.Errorf("answer larger than %d bytes", tooLarge.Limit)
		}
		return fmt.Errorf("read answer: %w", err)
	}
	return decodeGatewayAnswer(route, resp.Status, resp.StatusCode, data, out, stream)
}
