package agent

import (
	"bytes"
	"strings"
	"testing"
	"time"
)

// TestStatusPageSaysWhenTheBufferFills: with no room left the page says
// the buffer is full now; with some, how long it lasts.
func TestStatusPageSaysWhenTheBufferFills(t *testing.T) {
	zero, ten := 0.0, 10.0
	for _, tc := range []struct {
		ttf  *float64
		want string
	}{{&zero, "full now"}, {&ten, "about 10 s at the current pace"}} {
		d := statusPageData{Now: time.Now(), Ready: true,
			Status: status{Endpoints: []endpointStatus{{Name: "x", Mode: "degraded", TimeToFull: tc.ttf}}}}
		var b bytes.Buffer
		if err := statusTemplate.Execute(&b, d); err != nil {
			t.Fatal(err)
		}
		if page := b.String(); !strings.Contains(page, "Buffer full in") || !strings.Contains(page, tc.want) {
			t.Errorf("time to full %v: the page does not say %q", *tc.ttf, tc.want)
		}
	}
}
