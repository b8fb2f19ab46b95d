package discovery

import (
	"context"
	"crypto/x509"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/common/config"

	"github.com/redwire/redwire/internal/harness"
	"github.com/redwire/redwire/sources/redis"
)

// TestSentinelOverTLS: sentinels given as rediss:// are asked over TLS
// with the group's tls settings, and every target they name (the master,
// the sentinels) is scraped over TLS with the same settings, as a
// deployment with TLS on its sentinels has it on its servers too. Without
// the CA the handshake fails, and the error names the sentinel.
func TestSentinelOverTLS(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a TLS master and a TLS sentinel")
	}
	dir := t.TempDir()
	ca := harness.NewTestCA(t, "sentinel test CA")
	caFile := ca.File(t, dir)
	srvCert, srvKey := ca.Issue(t, dir, "server", x509.ExtKeyUsageServerAuth)
	cliCert, cliKey := ca.Issue(t, dir, "client", x509.ExtKeyUsageClientAuth)
	// Both servers require client certificates (tls-auth-clients defaults
	// to yes) and the sentinel talks TLS to the master. The plain ports
	// stay open for the harness's own probes only.
	tlsArgs := func(port int) []string {
		return []string{"--tls-port", fmt.Sprint(port),
			"--tls-cert-file", srvCert, "--tls-key-file", srvKey, "--tls-ca-cert-file", caFile,
			"--tls-client-cert-file", cliCert, "--tls-client-key-file", cliKey, "--tls-replication", "yes"}
	}
	masterTLS, sentinelTLS := harness.FreePort(t), harness.FreePort(t)
	harness.StartRedis(t, harness.WithArgs(tlsArgs(masterTLS)...))
	harness.StartSentinel(t, "tlsmaster", fmt.Sprintf("127.0.0.1:%d", masterTLS), harness.WithArgs(tlsArgs(sentinelTLS)...))
	sentinelURL := fmt.Sprintf("rediss://127.0.0.1:%d", sentinelTLS)

	cfg := SentinelConfig{MasterName: "tlsmaster", Addrs: []string{sentinelURL},
		TLS: config.TLSConfig{CAFile: caFile, CertFile: cliCert, KeyFile: cliKey}}
	log, _ := testLogger(t)
	s, err := NewSentinel(cfg, time.Hour, NewSentinelMetrics(prometheus.NewRegistry()), log)
	if err != nil {
		t.Fatal(err)
	}
	up := make(chan Group, 4)
	runDiscoverer(t, s, up)
	g := nextGroup(t, up)

	want := map[string]string{
		"master":   fmt.Sprintf("rediss://127.0.0.1:%d", masterTLS),
		"sentinel": sentinelURL,
	}
	for _, tc := range g.Targets {
		role := tc.Labels[LabelSentinelRole]
		if tc.Addr != want[role] {
			t.Errorf("%s target at %s, want %s", role, tc.Addr, want[role])
			continue
		}
		delete(want, role)
		tg, err := redis.NewTarget(tc, nil)
		if err != nil {
			t.Fatalf("%s target: %v", role, err)
		}
		_, err = tg.Scrape(context.Background(), time.Now())
		tg.Close()
		if err != nil {
			t.Errorf("scraping the %s over TLS with the group's settings: %v", role, err)
		}
	}
	if len(want) > 0 {
		t.Errorf("no target for %v in %+v", want, g.Targets)
	}

	// The same sentinel without the CA: the handshake fails, and what is
	// logged names the sentinel and says why.
	noCA := cfg
	noCA.TLS = config.TLSConfig{CertFile: cliCert, KeyFile: cliKey}
	log, logs := testLogger(t)
	s, err = NewSentinel(noCA, time.Hour, NewSentinelMetrics(prometheus.NewRegistry()), log)
	if err != nil {
		t.Fatal(err)
	}
	runDiscoverer(t, s, make(chan Group, 4))
	harness.WaitFor(t, groupWait, "the failed handshake to be logged", func() (bool, error) {
		out := logs.String()
		return strings.Contains(out, "no sentinel could resolve the master") && strings.Contains(out, "certificate"), nil
	})
	if out := logs.String(); !strings.Contains(out, fmt.Sprintf("127.0.0.1:%d", sentinelTLS)) {
		t.Errorf("the error should name the sentinel 127.0.0.1:%d:\n%s", sentinelTLS, out)
	}
}
