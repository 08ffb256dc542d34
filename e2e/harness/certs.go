package harness

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"time"
)

// Certs is a certificate authority made for one test and a server
// certificate it signed for 127.0.0.1, ::1 and localhost, written as PEM
// files in Dir under the names the repository's stack uses.
type Certs struct {
	Dir      string // holds domain.crt, domain.key and ca.crt
	CertFile string // Dir/domain.crt: the server certificate
	KeyFile  string // Dir/domain.key: its private key
	CAFile   string // Dir/ca.crt: the CA certificate clients trust
	// CADir holds only the CA certificate as ca.crt, the layout skopeo's
	// --dest-cert-dir and /etc/docker/certs.d expect.
	CADir string
	Pool  *x509.CertPool // holds the CA certificate
}

// NewCerts makes a CA and a server certificate valid for a day and writes
// them under dir, which must exist.
func NewCerts(dir string) (*Certs, error) {
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	now := time.Now()
	caTmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "registry-auth e2e test CA"},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(24 * time.Hour),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		return nil, err
	}
	ca, err := x509.ParseCertificate(caDER)
	if err != nil {
		return nil, err
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(2),
		Subject:      pkix.Name{CommonName: "127.0.0.1"},
		NotBefore:    now.Add(-time.Hour),
		NotAfter:     now.Add(24 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		IPAddresses:  []net.IP{net.IPv4(127, 0, 0, 1), net.IPv6loopback},
		DNSNames:     []string{"localhost"},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
	if err != nil {
		return nil, err
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, err
	}

	c := &Certs{
		Dir:      dir,
		CertFile: filepath.Join(dir, "domain.crt"),
		KeyFile:  filepath.Join(dir, "domain.key"),
		CAFile:   filepath.Join(dir, "ca.crt"),
		CADir:    filepath.Join(dir, "ca"),
		Pool:     x509.NewCertPool(),
	}
	c.Pool.AddCert(ca)
	if err := os.MkdirAll(c.CADir, 0o755); err != nil {
		return nil, err
	}
	files := []struct {
		path, kind string
		der        []byte
		mode       os.FileMode
	}{
		{c.CertFile, "CERTIFICATE", der, 0o644},
		{c.KeyFile, "PRIVATE KEY", keyDER, 0o600},
		{c.CAFile, "CERTIFICATE", caDER, 0o644},
		{filepath.Join(c.CADir, "ca.crt"), "CERTIFICATE", caDER, 0o644},
	}
	for _, f := range files {
		data := pem.EncodeToMemory(&pem.Block{Type: f.kind, Bytes: f.der})
		if err := os.WriteFile(f.path, data, f.mode); err != nil {
			return nil, fmt.Errorf("write %s: %w", f.path, err)
		}
	}
	return c, nil
}

// TLSConfig returns a client configuration that trusts only the test CA.
func (c *Certs) TLSConfig() *tls.Config {
	return &tls.Config{RootCAs: c.Pool, MinVersion: tls.VersionTLS12}
}
