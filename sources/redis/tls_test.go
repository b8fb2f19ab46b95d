package redis

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/common/config"

	"github.com/redwire/redwire/internal/harness"
)

// TestTLS: rediss:// with a CA file and a client certificate against a
// real TLS redis-server that requires client certificates; a client
// certificate rotated on disk is used at the next reconnect.
func TestTLS(t *testing.T) {
	dir := t.TempDir()
	ca := harness.NewTestCA(t, "redwire test CA")
	caFile := ca.File(t, dir)
	srvCert, srvKey := ca.Issue(t, dir, "server", x509.ExtKeyUsageServerAuth)
	cliCert, cliKey := ca.Issue(t, dir, "client", x509.ExtKeyUsageClientAuth)

	tlsPort := harness.FreePort(t)
	r := harness.StartRedis(t, harness.WithArgs("--tls-port", fmt.Sprint(tlsPort),
		"--tls-cert-file", srvCert, "--tls-key-file", srvKey, "--tls-ca-cert-file", caFile, "--tls-auth-clients", "yes"))
	addr := fmt.Sprintf("rediss://127.0.0.1:%d", tlsPort)
	ctx := context.Background()

	tg, err := NewTarget(TargetConfig{Addr: addr, TLS: config.TLSConfig{CAFile: caFile, CertFile: cliCert, KeyFile: cliKey}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer tg.Close()
	if _, err := tg.Scrape(ctx, time.Now()); err != nil {
		t.Fatalf("TLS scrape: %v", err)
	}

	// Without a client certificate the server refuses the handshake.
	noCert, err := NewTarget(TargetConfig{Addr: addr, TLS: config.TLSConfig{CAFile: caFile}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer noCert.Close()
	var se *ScrapeError
	if _, err := noCert.Scrape(ctx, time.Now()); !errors.As(err, &se) || se.Phase != PhaseConnect {
		t.Errorf("no client certificate: err = %v, want a connect-phase error", err)
	}

	// Rotate the client certificate on disk to one the server does not
	// trust, drop the connection: the next dial must use the new files.
	rogue := harness.NewTestCA(t, "rogue CA")
	rogueCert, rogueKey := rogue.Issue(t, t.TempDir(), "client", x509.ExtKeyUsageClientAuth)
	for src, dst := range map[string]string{rogueCert: cliCert, rogueKey: cliKey} {
		b, _ := os.ReadFile(src)
		harness.WriteFile(t, dst, b)
	}
	if err := r.Client().Do(ctx, "CLIENT", "KILL", "TYPE", "normal", "SKIPME", "yes").Err(); err != nil {
		t.Fatal(err)
	}
	// The first scrape may just find the killed connection; the redial
	// after it must present the rotated certificate and be refused.
	harness.WaitFor(t, 10*time.Second, "the server refuses the rotated, untrusted certificate", func() (bool, error) {
		_, err := tg.Scrape(ctx, time.Now())
		return err != nil && strings.Contains(err.Error(), "tls:"), err
	})
	// Rotate to a trusted certificate again: scraping recovers.
	ca.Issue(t, dir, "client", x509.ExtKeyUsageClientAuth)
	harness.WaitFor(t, 10*time.Second, "scrape with a trusted certificate again", func() (bool, error) {
		_, err := tg.Scrape(ctx, time.Now())
		return err == nil, err
	})
}

func TestValkeySchemes(t *testing.T) {
	for addr, tls := range map[string]bool{"valkey://h:1": false, "valkeys://h:1": true, "rediss://h:1": true, "redis://h:1": false} {
		ep, err := (&TargetConfig{Addr: addr}).endpoint()
		if err != nil || ep.tls != tls || ep.addr != "h:1" {
			t.Errorf("%s: %+v %v", addr, ep, err)
		}
	}
}
