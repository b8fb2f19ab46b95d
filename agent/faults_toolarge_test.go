package agent

// The receiver finds a request too large (413): the batch goes again in
// halves, and a failure part way through does not resend what was taken.

import (
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/common/model"
)

// TestFault413SplitsTheBatch: a batch the receiver finds too large is not
// dropped: it goes again in two halves, oldest half first, and every
// sample arrives.
func TestFault413SplitsTheBatch(t *testing.T) {
	rig := newFaultRig(t)
	rig.proxy.Fail(1, http.StatusRequestEntityTooLarge, nil, "too large")
	rig.start(t)

	reqs := rig.waitRequests(t, 3)
	if reqs[0].Status != http.StatusRequestEntityTooLarge {
		t.Fatalf("first request answered %d, want the queued 413", reqs[0].Status)
	}
	big := sampleKeys(reqs[0].Write)
	if len(big) < 2 {
		t.Fatalf("the 413'd request has %d samples; the test needs a batch that can be split", len(big))
	}
	first, second := sampleKeys(reqs[1].Write), sampleKeys(reqs[2].Write)
	for i, req := range reqs[1:3] {
		if !req.Forwarded || req.Status/100 != 2 {
			t.Errorf("half %d: forwarded %v, status %d, err %v; want accepted", i+1, req.Forwarded, req.Status, req.Err)
		}
	}
	if len(first) != len(big)/2 || len(second) != len(big)-len(big)/2 {
		t.Errorf("halves of %d and %d samples after a 413 of %d, want %d and %d",
			len(first), len(second), len(big), len(big)/2, len(big)-len(big)/2)
	}
	// One scrape per batch (1 s interval, 100 ms deadline) puts one sample
	// per series in the request, so request order is sample order.
	if !slices.Equal(slices.Concat(first, second), big) {
		t.Fatalf("the two requests after the 413 are not its batch's first and second halves, in that order")
	}
	rig.assertStored(t, "both halves of the 413'd batch", big)

	if v := rig.metric(t, "redwire_remote_write_requests_total", `result="too_large"`); v != 1 {
		t.Errorf(`redwire_remote_write_requests_total{result="too_large"} = %v, want 1`, v)
	}
	rig.assertNothingDropped(t)
	rig.assertNotDegraded(t)
}

// TestFault413ThenFailureSendsOnlyTheRest: after a 413 the receiver takes
// the first half and fails the second (503). The retry sends the second
// half only. A batch of several scrapes sent again whole would carry
// samples older than the receiver now holds for their series: Prometheus
// refuses such a request whole, with a 400, and the half it never had
// would be dropped with it.
func TestFault413ThenFailureSendsOnlyTheRest(t *testing.T) {
	rig := newFaultRig(t)
	// Several scrapes a batch: a series has samples at several times.
	rig.cfg.RemoteWrite[0].QueueConfig.BatchSendDeadline = model.Duration(2500 * time.Millisecond)
	rig.proxy.Fail(1, http.StatusRequestEntityTooLarge, nil, "too large")
	rig.proxy.Pass(1)
	rig.proxy.Fail(1, http.StatusServiceUnavailable, nil, "try later")
	rig.start(t)

	reqs := rig.waitRequests(t, 4)
	for i, want := range []int{http.StatusRequestEntityTooLarge, http.StatusOK, http.StatusServiceUnavailable, http.StatusOK} {
		if got := reqs[i].Status; got/100 != want/100 || (want != http.StatusOK && got != want) {
			t.Fatalf("request %d answered %d (forwarded %v, err %v), want %d", i, got, reqs[i].Forwarded, reqs[i].Err, want)
		}
	}
	big := sampleKeys(reqs[0].Write)
	if n := timestamps(big); n < 2 {
		t.Fatalf("the 413'd batch holds %d scrape(s); the test needs several", n)
	}
	first, second, retry := sampleKeys(reqs[1].Write), sampleKeys(reqs[2].Write), sampleKeys(reqs[3].Write)
	if !slices.Equal(slices.Sorted(slices.Values(slices.Concat(first, second))), slices.Sorted(slices.Values(big))) {
		t.Fatalf("requests 1 and 2 (%d and %d samples) are not the halves of the 413'd batch (%d)", len(first), len(second), len(big))
	}
	if !slices.Equal(retry, second) {
		t.Errorf("the retry carries %d samples, want exactly the failed second half's %d (the first half was taken)", len(retry), len(second))
	}
	rig.assertStored(t, "every sample of the 413'd batch", big)
	rig.assertNothingDropped(t)
}

// timestamps counts the distinct timestamps among sample keys.
func timestamps(keys []string) int {
	seen := map[string]bool{}
	for _, k := range keys {
		at := k[strings.LastIndex(k, "@"):]
		seen[at[:strings.Index(at, "=")]] = true
	}
	return len(seen)
}
