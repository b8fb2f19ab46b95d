package remotewrite

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync/atomic"
	"testing"
	"time"
	"unicode/utf8"
)

// The servers here misbehave on purpose: a broken proxy or a wrong URL in
// front of the receiver. Delivery to a real receiver is tested in agent/.

func hostileClient(t *testing.T, rawURL string, follow bool) *Client {
	t.Helper()
	u, err := url.Parse(rawURL)
	if err != nil {
		t.Fatal(err)
	}
	cfg := NewEndpointConfig(u)
	cfg.HTTPClientConfig.FollowRedirects = follow
	c, err := NewClient(cfg, "test")
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func send(t *testing.T, c *Client, body []byte) error {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	return c.Send(ctx, body)
}

// TestRedirectNeverSwallowsABatch: a 301/302/303 would turn the POST into
// a body-less GET; a landing page answering it with 200 must not count as
// delivered. 307/308 repeat the POST and are followed.
func TestRedirectNeverSwallowsABatch(t *testing.T) {
	var posted atomic.Value
	receiver := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodPost {
			io.WriteString(w, "<html>welcome</html>") // a landing page: 200 to a GET
			return
		}
		b, _ := io.ReadAll(r.Body)
		posted.Store(b)
		w.WriteHeader(http.StatusNoContent)
	}))
	defer receiver.Close()

	for _, code := range []int{301, 302, 303} {
		redirector := httptest.NewServer(http.RedirectHandler(receiver.URL+"/api/v1/write?token=x", code))
		err := send(t, hostileClient(t, redirector.URL, true), []byte("batch"))
		redirector.Close()
		if err == nil {
			t.Fatalf("%d: a redirect to a GET counted as delivered", code)
		}
		if ClassOf(err) != Retry || !strings.Contains(err.Error(), "redirect to "+receiver.URL+"/api/v1/write") {
			t.Errorf("%d: class %v, error %v; want retry naming the Location", code, ClassOf(err), err)
		}
	}
	for _, code := range []int{307, 308} {
		posted.Store([]byte(nil))
		redirector := httptest.NewServer(http.RedirectHandler(receiver.URL, code))
		err := send(t, hostileClient(t, redirector.URL, true), []byte("batch"))
		redirector.Close()
		if err != nil || !bytes.Equal(posted.Load().([]byte), []byte("batch")) {
			t.Errorf("%d: error %v, receiver got %q; want the POST repeated with its body", code, err, posted.Load())
		}
		// follow_redirects: false is honoured.
		redirector = httptest.NewServer(http.RedirectHandler(receiver.URL, code))
		err = send(t, hostileClient(t, redirector.URL, false), []byte("batch"))
		redirector.Close()
		if ClassOf(err) != Retry {
			t.Errorf("%d with follow_redirects false: %v, want a retry", code, err)
		}
	}

	// A loop of 307s ends.
	var loop *httptest.Server
	loop = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, loop.URL+"/again", http.StatusTemporaryRedirect)
	}))
	defer loop.Close()
	if err := send(t, hostileClient(t, loop.URL, true), []byte("batch")); ClassOf(err) != Retry {
		t.Errorf("redirect loop: %v, want a retry", err)
	}
}

// endlessBody answers with status and then body repeated until the client
// hangs up, counting what it managed to write.
func endlessBody(status int, written *atomic.Int64) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(status)
		chunk := bytes.Repeat([]byte("\x00\xffgarbage\n"), 6554) // 64 KiB
		for {
			n, err := w.Write(chunk)
			written.Add(int64(n))
			if err != nil {
				return
			}
		}
	})
}

// TestEndlessBodiesAreBounded: a receiver that never stops answering
// neither holds the sender nor fills its memory; an error body is cut to
// a KiB of valid text.
func TestEndlessBodiesAreBounded(t *testing.T) {
	for _, tc := range []struct {
		status int
		ok     bool
	}{{200, true}, {500, false}, {400, false}} {
		var written atomic.Int64
		srv := httptest.NewServer(endlessBody(tc.status, &written))
		err := send(t, hostileClient(t, srv.URL, true), []byte("batch"))
		srv.Close()
		if (err == nil) != tc.ok {
			t.Errorf("%d: error %v", tc.status, err)
		}
		if e, ok := err.(*Error); ok && (len(e.Body) > maxErrorBody || !utf8.ValidString(e.Body)) {
			t.Errorf("%d: body of %d bytes kept: %.80q", tc.status, len(e.Body), e.Body)
		}
		// The server can only have written what fits in the socket
		// buffers before the client hung up: megabytes, not the endless
		// body an unbounded read would take in.
		if w := written.Load(); w > 64<<20 {
			t.Errorf("%d: the client read %d bytes of an endless body", tc.status, w)
		}
	}
}
