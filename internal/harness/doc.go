// Package harness is the one way redwire's tests start real servers:
// redis-server, a Prometheus (2.42 or 3.x), Thanos Receive or
// VictoriaMetrics remote-write receiver, and a fault-injecting HTTP proxy
// in front of a receiver.
//
// Every server runs from the Debian binary in PATH, or, for Prometheus 3.x
// and Thanos, which Debian lacks, from the binary make deps builds into
// $REDWIRE_CACHE/bin (default ~/.cache/redwire/bin). Each listens on a free
// loopback port, keeps its data and its captured output in t.TempDir(), and
// is torn down by t.Cleanup. A missing binary fails the test (it never
// skips), so a green run always means the real servers were exercised.
// Nothing waits by sleeping: starters poll a readiness probe under a bounded
// deadline, and tests wait with WaitFor.
//
// Starters and the Stop/Kill/Start methods call t.Fatalf, so they must run on
// the test's goroutine; the accessors (Addr, URL, Query, ...) are safe from
// any goroutine.
package harness
