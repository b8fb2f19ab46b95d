package redis

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/common/config"

	"github.com/redwire/redwire/internal/harness"
)

// testCA issues certificates for a TLS test.
type testCA struct {
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
	pem  []byte
}

func newTestCA(t *testing.T, name string) *testCA {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: name},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, _ := x509.ParseCertificate(der)
	return &testCA{cert: cert, key: key, pem: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})}
}

// issue writes a certificate and key for 127.0.0.1 to dir/name.{crt,key}.
func (ca *testCA) issue(t *testing.T, dir, name string, usage x509.ExtKeyUsage) (certFile, keyFile string) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(time.Now().UnixNano()), Subject: pkix.Name{CommonName: name},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IPAddresses: []net.IP{net.ParseIP("127.0.0.1")}, ExtKeyUsage: []x509.ExtKeyUsage{usage},
		KeyUsage: x509.KeyUsageDigitalSignature,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, &key.PublicKey, ca.key)
	if err != nil {
		t.Fatal(err)
	}
	kder, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	certFile, keyFile = filepath.Join(dir, name+".crt"), filepath.Join(dir, name+".key")
	writeFile(t, certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}))
	writeFile(t, keyFile, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kder}))
	return certFile, keyFile
}

func writeFile(t *testing.T, path string, b []byte) {
	t.Helper()
	if err := os.WriteFile(path, b, 0o600); err != nil {
		t.Fatal(err)
	}
}

// TestTLS: rediss:// with a CA file and a client certificate against a
// real TLS redis-server that requires client certificates; a client
// certificate rotated on disk is used at the next reconnect.
func TestTLS(t *testing.T) {
	dir := t.TempDir()
	ca := newTestCA(t, "redwire test CA")
	caFile := filepath.Join(dir, "ca.crt")
	writeFile(t, caFile, ca.pem)
	srvCert, srvKey := ca.issue(t, dir, "server", x509.ExtKeyUsageServerAuth)
	cliCert, cliKey := ca.issue(t, dir, "client", x509.ExtKeyUsageClientAuth)

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
	rogue := newTestCA(t, "rogue CA")
	rogueCert, rogueKey := rogue.issue(t, t.TempDir(), "client", x509.ExtKeyUsageClientAuth)
	for src, dst := range map[string]string{rogueCert: cliCert, rogueKey: cliKey} {
		b, _ := os.ReadFile(src)
		writeFile(t, dst, b)
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
	ca.issue(t, dir, "client", x509.ExtKeyUsageClientAuth)
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
