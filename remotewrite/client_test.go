package remotewrite

import (
	"net/http"
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

func TestClassesWithRetryAfter(t *testing.T) {
	// Only classes that are retried carry a Retry-After; a rejected batch
	// is never retried, whatever the receiver says.
	for status, want := range map[int]bool{429: true, 503: true, 500: true, 400: false, 401: false, 413: false} {
		c := classify(status)
		got := c == RateLimited || c == Retry
		if got != want {
			t.Errorf("status %d (%s): honours Retry-After = %v, want %v", status, c, got, want)
		}
	}
}
