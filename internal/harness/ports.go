package harness

import (
	"net"
	"strings"
	"testing"
)

// FreePort returns a loopback TCP port that was free a moment ago.
//
// Nothing reserves the port between this call and the server's bind, so
// another process may take it first; the starters in this package detect
// that bind failure and retry with a new port, and callers that hand the
// port to something else (the agent's own listener) accept the same small
// risk.
func FreePort(t testing.TB) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("find a free loopback port: %v", err)
	}
	port := l.Addr().(*net.TCPAddr).Port
	if err := l.Close(); err != nil {
		t.Fatalf("release probe listener on port %d: %v", port, err)
	}
	return port
}

// portClash reports whether a server's output says it could not bind its
// port. redis-server, prometheus and victoria-metrics all print the
// kernel's EADDRINUSE text, in varying case.
func portClash(output string) bool {
	return strings.Contains(strings.ToLower(output), "address already in use")
}
