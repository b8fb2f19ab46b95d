package remotewrite

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/golang/snappy"
	"github.com/prometheus/common/config"
)

// maxErrorBody bounds how much of a receiver's error answer is read, so a
// hostile or broken receiver cannot make the agent buffer a huge body.
const maxErrorBody = 1 << 10

// maxRedirects bounds a chain of 307/308 redirects.
const maxRedirects = 3

// Client sends encoded write requests to one endpoint. It is safe for
// concurrent use, but the agent sends one request at a time per endpoint so
// that per-series order holds.
type Client struct {
	url     string
	label   string
	hc      *http.Client
	headers map[string]string
	timeout time.Duration
	ua      string
}

// NewClient builds the HTTP client for cfg (auth, TLS, proxy exactly as
// Prometheus' own remote_write). version goes into the User-Agent.
func NewClient(cfg EndpointConfig, version string) (*Client, error) {
	hc, err := config.NewClientFromConfig(cfg.HTTPClientConfig, "remote_write")
	if err != nil {
		return nil, fmt.Errorf("endpoint %s: %w", cfg.Label(), err)
	}
	// A POST redirected with 301, 302 or 303 comes back as a GET without
	// the body: a landing page answering 200 would swallow every batch,
	// and a receiver answering 405 would get it dropped as rejected. Only
	// 307 and 308, which repeat the POST with its body, are followed (if
	// follow_redirects allows), at most maxRedirects times; any other
	// redirect is an answer to retry, naming the Location.
	follow := cfg.HTTPClientConfig.FollowRedirects
	hc.CheckRedirect = func(req *http.Request, via []*http.Request) error {
		if !follow || req.Method != http.MethodPost || len(via) > maxRedirects {
			return http.ErrUseLastResponse
		}
		return nil
	}
	return &Client{
		url:     cfg.URL.String(),
		label:   cfg.Label(),
		hc:      hc,
		headers: cfg.Headers,
		timeout: time.Duration(cfg.RemoteTimeout),
		ua:      "redwire/" + version,
	}, nil
}

// Endpoint is the endpoint's label (name or redacted URL).
func (c *Client) Endpoint() string { return c.label }

// Send posts one snappy-compressed 1.0 WriteRequest. A nil error means
// the receiver accepted it (2xx). Otherwise the error is an *Error whose
// Class says what the caller should do with the batch.
func (c *Client) Send(ctx context.Context, body []byte) error {
	_, err := c.SendMessage(ctx, MessageV1, body)
	return err
}

// SendMessage posts one snappy-compressed request of message m, as Send
// does. To a 2.0 request it also returns what the receiver said it wrote
// (Written.Reported false if it said nothing); an *Error carries the same
// in its Written.
func (c *Client) SendMessage(ctx context.Context, m Message, body []byte) (Written, error) {
	if c.timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, c.timeout)
		defer cancel()
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, c.url, bytes.NewReader(body))
	if err != nil {
		return Written{}, &Error{Class: Reject, Err: err}
	}
	for k, v := range c.headers {
		req.Header.Set(k, v)
	}
	req.Header.Set("Content-Encoding", "snappy")
	req.Header.Set("Content-Type", m.contentType())
	req.Header.Set("User-Agent", c.ua)
	req.Header.Set("X-Prometheus-Remote-Write-Version", m.version())

	resp, err := c.hc.Do(req)
	if err != nil {
		return Written{}, &Error{Class: Retry, Err: err}
	}
	defer func() {
		// Drain a little so the connection can be reused, but never much.
		_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, maxErrorBody))
		resp.Body.Close()
	}()
	var w Written
	if m == MessageV2 {
		w = writtenOf(resp.Header)
	}
	if resp.StatusCode/100 == 2 {
		return w, nil
	}
	msg, _ := io.ReadAll(io.LimitReader(resp.Body, maxErrorBody))
	e := &Error{
		StatusCode: resp.StatusCode,
		Class:      classify(resp.StatusCode),
		Body:       strings.ToValidUTF8(strings.TrimSpace(string(msg)), "?"),
	}
	if w.Reported {
		e.Written = &w
	}
	if loc := resp.Header.Get("Location"); resp.StatusCode/100 == 3 && loc != "" {
		if u, err := url.Parse(loc); err == nil {
			loc = u.Redacted()
		}
		e.Body = fmt.Sprintf("redirect to %.200s not followed (only 307/308 keep the POST); fix the URL", loc)
	}
	if e.Class == RateLimited || e.Class == Retry {
		// Honoured on 429 and on 5xx (503 with Retry-After is a
		// receiver asking for a pause), as Prometheus' own client does.
		e.RetryAfter = retryAfter(resp.Header.Get("Retry-After"), time.Now())
	}
	return w, e
}

// ProbeBody is an empty write request: a receiver that answers it 2xx
// is up and taking requests, whatever it thinks of a batch. A sender
// probes a down receiver with it instead of resending a large batch.
var ProbeBody = snappy.Encode(nil, nil)

// DecodedLen is the length of the protobuf a request body compresses:
// what it would cost uncompressed. 0 if body is not a snappy block.
func DecodedLen(body []byte) int {
	n, err := snappy.DecodedLen(body)
	if err != nil {
		return 0
	}
	return n
}

// Class says what to do with a batch a receiver did not accept.
type Class int

const (
	// Retry: network error, timeout or 5xx; send the same batch again
	// after a backoff. Counts toward declaring the endpoint down.
	Retry Class = iota
	// RateLimited: 429; retry after Retry-After, never with more
	// concurrency.
	RateLimited
	// Reject: 400, 409, 415 and other 4xx; the receiver will never take
	// this batch, so it is dropped and counted.
	Reject
	// TooLarge: 413; split the batch and send the halves.
	TooLarge
	// Unauthorized: 401, 403, 404; a credential or URL problem that an
	// operator must fix. Keep the data, pause sending.
	Unauthorized
	// Unsupported: the receiver does not take remote write 2.0 (415, or
	// a 2xx without the Written headers). Only the policy makes this
	// class, and sends the same samples again as 1.0; Handler.Request
	// is the only one to hear it.
	Unsupported
)

func (c Class) String() string {
	switch c {
	case Retry:
		return "retry"
	case RateLimited:
		return "rate_limited"
	case Reject:
		return "rejected"
	case TooLarge:
		return "too_large"
	case Unauthorized:
		return "unauthorized"
	case Unsupported:
		return "unsupported_message"
	}
	return "unknown"
}

func classify(status int) Class {
	switch {
	case status == http.StatusTooManyRequests:
		return RateLimited
	case status == http.StatusRequestEntityTooLarge:
		return TooLarge
	case status == http.StatusUnauthorized, status == http.StatusForbidden, status == http.StatusNotFound:
		return Unauthorized
	case status >= 500, status < 400:
		// 5xx, and odd answers such as an unfollowed 3xx: the batch
		// itself is not known to be bad.
		return Retry
	}
	return Reject
}

// Error is a send that did not succeed.
type Error struct {
	StatusCode int // 0 for network errors
	Class      Class
	RetryAfter time.Duration // from a 429's Retry-After; 0 if absent
	Body       string        // first KiB of the receiver's answer
	Err        error         // the transport error, if any
	// Written is what a 2.0 receiver said it wrote of the request
	// despite the error; nil if it said nothing.
	Written *Written
}

func (e *Error) Error() string {
	if e.Err != nil {
		return e.Err.Error()
	}
	if e.Body != "" {
		return fmt.Sprintf("server returned HTTP %d: %s", e.StatusCode, e.Body)
	}
	return fmt.Sprintf("server returned HTTP %d", e.StatusCode)
}

func (e *Error) Unwrap() error { return e.Err }

// ClassOf returns the class of a Send error; errors that are not *Error
// (which Send never returns) are treated as retryable.
func ClassOf(err error) Class {
	var e *Error
	if errors.As(err, &e) {
		return e.Class
	}
	return Retry
}

// retryAfter parses a Retry-After header: delay-seconds or an HTTP date.
func retryAfter(v string, now time.Time) time.Duration {
	if v == "" {
		return 0
	}
	if s, err := strconv.Atoi(strings.TrimSpace(v)); err == nil {
		if s < 0 {
			return 0
		}
		return time.Duration(s) * time.Second
	}
	if t, err := http.ParseTime(v); err == nil {
		if d := t.Sub(now); d > 0 {
			return d
		}
	}
	return 0
}
