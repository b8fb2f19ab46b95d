package remotewrite

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"slices"
	"strconv"
	"testing"
	"time"
)

func TestClassify(t *testing.T) {
	cases := map[int]Class{
		400: Reject, 409: Reject, 415: Reject, 422: Reject,
		413: TooLarge,
		429: RateLimited,
		401: Unauthorized, 403: Unauthorized, 404: Unauthorized,
		500: Retry, 502: Retry, 503: Retry, 504: Retry,
		302: Retry,
	}
	for status, want := range cases {
		if got := classify(status); got != want {
			t.Errorf("classify(%d) = %s, want %s", status, got, want)
		}
	}
}

func TestRetryAfter(t *testing.T) {
	now := time.Date(2026, 11, 24, 12, 0, 0, 0, time.UTC)
	cases := map[string]time.Duration{
		"":        0,
		"7":       7 * time.Second,
		"-3":      0,
		"garbage": 0,
		now.Add(90 * time.Second).Format(http.TimeFormat): 90 * time.Second,
		now.Add(-time.Minute).Format(http.TimeFormat):     0,
	}
	for in, want := range cases {
		if got := retryAfter(in, now); got != want {
			t.Errorf("retryAfter(%q) = %s, want %s", in, got, want)
		}
	}
}

// retryAfterServer answers every request with code and Retry-After: 5.
func retryAfterServer(t *testing.T, code int) *httptest.Server {
	t.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Retry-After", "5")
		http.Error(w, http.StatusText(code), code)
	}))
	t.Cleanup(srv.Close)
	return srv
}

// TestSendHonoursRetryAfterOnlyWhenRetried: a receiver's Retry-After
// reaches the caller on 429 and 5xx, the answers that are retried; on a
// 400 (refused for good), 401 or 413 it is dropped, whatever the
// receiver says.
func TestSendHonoursRetryAfterOnlyWhenRetried(t *testing.T) {
	for code, want := range map[int]time.Duration{
		429: 5 * time.Second, 503: 5 * time.Second, 500: 5 * time.Second,
		400: 0, 401: 0, 413: 0,
	} {
		t.Run(strconv.Itoa(code), func(t *testing.T) {
			err := send(t, hostileClient(t, retryAfterServer(t, code).URL, false), []byte("body"))
			var e *Error
			if !errors.As(err, &e) {
				t.Fatalf("Send = %v, want an *Error", err)
			}
			if e.StatusCode != code || e.RetryAfter != want {
				t.Errorf("Send = status %d, RetryAfter %v; want status %d, RetryAfter %v", e.StatusCode, e.RetryAfter, code, want)
			}
		})
	}
}

// TestDeliverDoesNotWaitOnARefusal: a 400 carrying Retry-After, through
// the real client, is refused at once: no failed try, no wait, one
// request.
func TestDeliverDoesNotWaitOnARefusal(t *testing.T) {
	c := hostileClient(t, retryAfterServer(t, http.StatusBadRequest).URL, false)
	// Giving up on every failed try keeps a regression from retrying
	// forever: it shows up as Deliver's error and r.failures.
	r := recorder{giveUp: map[Class]bool{Retry: true, RateLimited: true, Unauthorized: true, TooLarge: true, Reject: true}}
	var enc Encoder
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := testPolicy.Deliver(ctx, c, &enc, testBatch(3), nil, &r); err != nil {
		t.Fatalf("Deliver: %v, want the batch answered for (refused)", err)
	}
	if len(r.failures) != 0 || r.requests != 1 {
		t.Errorf("%d requests, failed tries %v waiting %v; want one request, refused at once", r.requests, r.failures, r.waits)
	}
	if len(r.taken) != 0 || !slices.Equal(r.refused, []int{3}) {
		t.Errorf("taken %v refused %v, want all 3 samples refused", r.taken, r.refused)
	}
	if len(r.refusedErrs) == 1 && ClassOf(r.refusedErrs[0]) != Reject {
		t.Errorf("refused with %v, want class %s", r.refusedErrs[0], Reject)
	}
}
