package agent

import (
	"testing"

	"github.com/prometheus/client_golang/prometheus"
)

// assertAccounted checks the promise after drops: every sample taken for
// endpoint ep was sent, dropped or is still pending, exactly, and every
// drop was for reason, and there were some. reg is the registry of an
// agent that has stopped, so no counter moves while they are read.
// taken, sent and pending are sampleAccount's (the one place they are
// read); a sample sent and also counted as dropped breaks the equality as
// surely as one lost.
func assertAccounted(t *testing.T, reg prometheus.Gatherer, ep, reason string) account {
	t.Helper()
	acc := sampleAccount(t, reg, map[string]string{"endpoint": ep})
	t.Logf("samples: %v", acc)
	if !acc.balanced() {
		t.Errorf("after drops as %s, the samples do not add up: %v", reason, acc)
	}
	if n := gathered(t, reg, "redwire_samples_dropped_total", map[string]string{"endpoint": ep, "reason": reason}); n == 0 || n != acc.dropped {
		t.Errorf("dropped %v samples as %s, %v in all; want all of them, and some", n, reason, acc.dropped)
	}
	return acc
}
