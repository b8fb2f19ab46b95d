package harness

import "testing"

// prometheus3Args are the flags Prometheus 3.x adds to those of 2.42.
// Remote-write 2.0 is listed beside 1.0 so that the receiver is set up as
// a 3.x site that takes both would run; redwire sends 1.0
// (prometheus.WriteRequest).
var prometheus3Args = []string{
	"--web.remote-write-receiver.accepted-protobuf-messages=prometheus.WriteRequest",
	"--web.remote-write-receiver.accepted-protobuf-messages=io.prometheus.write.v2.Request",
}

// StartPrometheus3 starts Prometheus 3.x (Prometheus3Version, which make
// deps builds once into the cache) as a remote-write receiver on a free
// loopback port. It is a *Prometheus like StartPrometheus's: the same
// query API, restarts and self-metrics.
func StartPrometheus3(t testing.TB) *Prometheus {
	t.Helper()
	return StartPrometheusWith(t, PrometheusOptions{Version3: true})
}
