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
// files in Dir under the names the repository's stack uses; and, in
// Dir/auth-hop, the files scripts/make-certs.sh makes for the TLS hop between
// Traefik and registry-auth, from a second CA: ca.crt, auth.crt and auth.key
// (for auth, 127.0.0.1 and localhost), traefik.crt and traefik.key (client).
type Certs struct {
	Dir      string // holds domain.crt, domain.key and ca.crt
	CertFile string // Dir/domain.crt: the server certificate
	KeyFile  string // Dir/domain.key: its private key
	CAFile   string // Dir/ca.crt: the CA certificate clients trust
	// CADir holds only the CA certificate as ca.crt, the layout skopeo's
	// --dest-cert-dir and /etc/docker/certs.d expect.
	CADir string
	Pool  *x509.CertPool // holds the CA certificate

	HopDir    string          // Dir/auth-hop
	HopCAFile string          // Dir/auth-hop/ca.crt: signs both hop certificates
	HopPool   *x509.CertPool  // holds the hop CA certificate
	HopClient tls.Certificate // Traefik's client certificate (traefik.crt, traefik.key)

	hopCA     *x509.Certificate
	hopCAKey  *ecdsa.PrivateKey
	hopSerial int64
}

// leaf signs a certificate for key with ca and returns its DER form.
func leaf(serial int64, cn string, usage x509.ExtKeyUsage, dnsNames []string, key *ecdsa.PrivateKey, ca *x509.Certificate, caKey *ecdsa.PrivateKey) ([]byte, error) {
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(serial),
		Subject:      pkix.Name{CommonName: cn},
		NotBefore:    now.Add(-time.Hour),
		NotAfter:     now.Add(24 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{usage},
	}
	if usage == x509.ExtKeyUsageServerAuth {
		tmpl.IPAddresses = []net.IP{net.IPv4(127, 0, 0, 1), net.IPv6loopback}
		tmpl.DNSNames = dnsNames
	}
	return x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
}

// newCA makes a self-signed CA certificate named cn.
func newCA(cn string) (*x509.Certificate, []byte, *ecdsa.PrivateKey, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, nil, err
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: cn},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(24 * time.Hour),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, nil, nil, err
	}
	ca, err := x509.ParseCertificate(der)
	return ca, der, key, err
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
	return c, c.writeHop()
}

// writeHop makes the hop CA and its two certificates in Dir/auth-hop.
func (c *Certs) writeHop() error {
	c.HopDir = filepath.Join(c.Dir, "auth-hop")
	c.HopCAFile = filepath.Join(c.HopDir, "ca.crt")
	if err := os.MkdirAll(c.HopDir, 0o755); err != nil {
		return err
	}
	ca, caDER, caKey, err := newCA("registry-auth e2e hop CA")
	if err != nil {
		return err
	}
	c.HopPool = x509.NewCertPool()
	c.HopPool.AddCert(ca)
	c.hopCA, c.hopCAKey, c.hopSerial = ca, caKey, 3
	if err := os.WriteFile(c.HopCAFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: caDER}), 0o644); err != nil {
		return err
	}
	for i, l := range []struct {
		name  string
		usage x509.ExtKeyUsage
	}{{"auth", x509.ExtKeyUsageServerAuth}, {"traefik", x509.ExtKeyUsageClientAuth}} {
		key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			return err
		}
		der, err := leaf(int64(i+2), l.name, l.usage, []string{"auth", "localhost"}, key, ca, caKey)
		if err != nil {
			return err
		}
		keyDER, err := x509.MarshalPKCS8PrivateKey(key)
		if err != nil {
			return err
		}
		certPEM := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
		keyPEM := pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER})
		if err := os.WriteFile(filepath.Join(c.HopDir, l.name+".crt"), certPEM, 0o644); err != nil {
			return err
		}
		if err := os.WriteFile(filepath.Join(c.HopDir, l.name+".key"), keyPEM, 0o600); err != nil {
			return err
		}
		if l.name == "traefik" {
			if c.HopClient, err = tls.X509KeyPair(certPEM, keyPEM); err != nil {
				return err
			}
		}
	}
	return nil
}

// RenewHopServerCert replaces auth.crt and auth.key in HopDir by a new pair
// from the hop CA, each file by rename as certificate tools do, and returns
// the new certificate's serial number. It is not safe for concurrent use.
func (c *Certs) RenewHopServerCert() (*big.Int, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	c.hopSerial++
	der, err := leaf(c.hopSerial, "auth", x509.ExtKeyUsageServerAuth, []string{"auth", "localhost"}, key, c.hopCA, c.hopCAKey)
	if err != nil {
		return nil, err
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, err
	}
	for name, data := range map[string][]byte{
		"auth.crt": pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
		"auth.key": pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER}),
	} {
		path := filepath.Join(c.HopDir, name)
		if err := os.WriteFile(path+".new", data, 0o600); err != nil {
			return nil, err
		}
		if err := os.Rename(path+".new", path); err != nil {
			return nil, err
		}
	}
	return big.NewInt(c.hopSerial), nil
}

// HopTLSConfig returns a client configuration for registry-auth's listener:
// it trusts the hop CA and presents Traefik's client certificate.
func (c *Certs) HopTLSConfig() *tls.Config {
	return &tls.Config{RootCAs: c.HopPool, Certificates: []tls.Certificate{c.HopClient}, MinVersion: tls.VersionTLS12}
}

// TLSConfig returns a client configuration that trusts only the test CA.
func (c *Certs) TLSConfig() *tls.Config {
	return &tls.Config{RootCAs: c.Pool, MinVersion: tls.VersionTLS12}
}
