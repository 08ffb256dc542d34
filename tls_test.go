package main

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"flag"
	"math/big"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// testCA is a certificate authority made for one test.
type testCA struct {
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
	pem  []byte
	pool *x509.CertPool
}

var serialCounter = big.NewInt(time.Now().UnixNano())

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
	ca := &testCA{cert: cert, key: key, pem: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), pool: x509.NewCertPool()}
	ca.pool.AddCert(cert)
	return ca
}

// issue signs a leaf certificate named cn, valid for the host name auth and 127.0.0.1, as
// a server or a client certificate, and returns it and its key as PEM.
func (ca *testCA) issue(t *testing.T, cn string, usage x509.ExtKeyUsage) (certPEM, keyPEM []byte) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: new(big.Int).Add(serialCounter, big.NewInt(int64(len(cn))+time.Now().UnixNano())),
		Subject:      pkix.Name{CommonName: cn},
		NotBefore:    time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{usage},
		IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)}, DNSNames: []string{"auth"}, // the service's name in the stack
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, &key.PublicKey, ca.key)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, _ := x509.MarshalPKCS8PrivateKey(key)
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER})
}

// clientPair is a client certificate as crypto/tls wants it.
func (ca *testCA) clientPair(t *testing.T, cn string) tls.Certificate {
	t.Helper()
	c, k := ca.issue(t, cn, x509.ExtKeyUsageClientAuth)
	pair, err := tls.X509KeyPair(c, k)
	if err != nil {
		t.Fatal(err)
	}
	return pair
}

// tlsService is serve over HTTPS with a server certificate from ca in dir.
type tlsService struct {
	*runningService
	ca                        *testCA
	certFile, keyFile, caFile string
	files                     testFiles
}

// startTLSService starts serve with --tls-cert and --tls-key (and --tls-client-ca, signed by
// the same CA, when clientCA is set).
func startTLSService(t *testing.T, clientCA bool, extra ...string) *tlsService {
	t.Helper()
	f := newTestFiles(t, htpasswdLines(t, "bob", "bob-secret"), "pusher: bob\n")
	s := &tlsService{ca: newTestCA(t, "test CA"), files: f,
		certFile: filepath.Join(f.dir, "tls.crt"), keyFile: filepath.Join(f.dir, "tls.key"), caFile: filepath.Join(f.dir, "ca.crt")}
	c, k := s.ca.issue(t, "auth", x509.ExtKeyUsageServerAuth)
	writeFile(t, s.certFile, string(c))
	writeFile(t, s.keyFile, string(k))
	writeFile(t, s.caFile, string(s.ca.pem))
	args := []string{"--htpasswd", f.htpasswd, "--groups", f.groups, "--tls-cert", s.certFile, "--tls-key", s.keyFile, "--poll-interval", "50ms"}
	if clientCA {
		args = append(args, "--tls-client-ca", s.caFile)
	}
	s.runningService = startService(t, nil, append(args, extra...)...)
	return s
}

// client is an HTTPS client that trusts the service's CA and presents cert (none when nil);
// h2 false limits it to HTTP/1.1.
func (s *tlsService) client(cert *tls.Certificate, h2 bool) *http.Client {
	tc := &tls.Config{RootCAs: s.ca.pool, ServerName: "auth", MinVersion: tls.VersionTLS12}
	if cert != nil {
		// Sent whatever CAs the server names: crypto/tls would otherwise keep back a
		// certificate the server's CA did not sign, and the refusal would go untested.
		tc.GetClientCertificate = func(*tls.CertificateRequestInfo) (*tls.Certificate, error) { return cert, nil }
	}
	tr := &http.Transport{TLSClientConfig: tc, ForceAttemptHTTP2: h2}
	if !h2 {
		tr.TLSNextProto = map[string]func(string, *tls.Conn) http.RoundTripper{}
	}
	return &http.Client{Transport: tr, Timeout: 10 * time.Second}
}

// TestTLSListener: with --tls-cert and --tls-key the service speaks HTTP/2 to clients that
// offer it and HTTP/1.1 to others, and refuses TLS 1.1 and plain HTTP.
func TestTLSListener(t *testing.T) {
	t.Parallel()
	s := startTLSService(t, false)
	if !strings.HasPrefix(s.url, "https://") {
		t.Fatalf("got URL %s, want https://", s.url)
	}
	for _, tt := range []struct {
		name  string
		h2    bool
		proto string
	}{
		{"client offering h2", true, "HTTP/2.0"},
		{"HTTP/1.1 only client", false, "HTTP/1.1"},
	} {
		resp, err := s.client(nil, tt.h2).Get(s.url + "/healthz")
		if err != nil {
			t.Fatalf("%s: %v", tt.name, err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK || resp.Proto != tt.proto {
			t.Errorf("%s: got %d over %s, want 200 over %s", tt.name, resp.StatusCode, resp.Proto, tt.proto)
		}
	}
	old := s.client(nil, false)
	old.Transport.(*http.Transport).TLSClientConfig.MaxVersion = tls.VersionTLS11
	if _, err := old.Get(s.url + "/healthz"); err == nil {
		t.Error("a TLS 1.1 client was served, want a handshake failure")
	}
	if resp, err := http.Get("http://" + strings.TrimPrefix(s.url, "https://") + "/healthz"); err == nil && resp.StatusCode == http.StatusOK {
		t.Error("plain HTTP got 200 from the TLS listener")
	}
}

// TestClientCertificates: with --tls-client-ca, /auth and /metrics decide only for clients
// with a certificate that CA signed; without one they get 403, with one from another CA no
// handshake; the health endpoints answer everyone.
func TestClientCertificates(t *testing.T) {
	t.Parallel()
	s := startTLSService(t, true)
	good := s.ca.clientPair(t, "traefik")
	foreign := newTestCA(t, "another CA").clientPair(t, "traefik")
	tests := []struct {
		name   string
		cert   *tls.Certificate
		path   string
		status int // 0: the handshake must fail
	}{
		{"no certificate, /auth", nil, "/auth", http.StatusForbidden},
		{"no certificate, /metrics", nil, "/metrics", http.StatusForbidden},
		{"no certificate, /healthz", nil, "/healthz", http.StatusOK},
		{"no certificate, /readyz", nil, "/readyz", http.StatusOK},
		{"another CA's certificate, /auth", &foreign, "/auth", 0},
		// Through: a request without X-Forwarded-Method is the handler's own 400.
		{"the CA's certificate, /auth", &good, "/auth", http.StatusBadRequest},
		{"the CA's certificate, /metrics", &good, "/metrics", http.StatusOK},
	}
	for _, tt := range tests {
		for _, h2 := range []bool{true, false} {
			resp, err := s.client(tt.cert, h2).Get(s.url + tt.path)
			if tt.status == 0 {
				if err == nil {
					resp.Body.Close()
					t.Errorf("%s (h2 %v): got %d, want a failed handshake", tt.name, h2, resp.StatusCode)
				}
				continue
			}
			if err != nil {
				t.Fatalf("%s (h2 %v): %v", tt.name, h2, err)
			}
			resp.Body.Close()
			if resp.StatusCode != tt.status {
				t.Errorf("%s (h2 %v): got %d, want %d", tt.name, h2, resp.StatusCode, tt.status)
			}
		}
	}
	if !strings.Contains(s.logs.String(), "give Traefik's forwardAuth middleware tls.cert and tls.key") {
		t.Errorf("no log line tells the operator how to fix a refused client:\n%s", s.logs)
	}
}

// TestCertificateReload: the certificate and key replaced while the service runs are served
// to the next connection; a pair that does not match keeps the previous one and is logged.
func TestCertificateReload(t *testing.T) {
	t.Parallel()
	s := startTLSService(t, false)
	serverCN := func() string {
		t.Helper()
		tr := &http.Transport{TLSClientConfig: &tls.Config{RootCAs: s.ca.pool, ServerName: "auth"}, DisableKeepAlives: true}
		resp, err := (&http.Client{Transport: tr, Timeout: 10 * time.Second}).Get(s.url + "/healthz")
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.TLS.PeerCertificates[0].Subject.CommonName
	}
	if got := serverCN(); got != "auth" {
		t.Fatalf("got certificate %q, want auth", got)
	}
	// A key that belongs to another certificate: refused, the old pair stays.
	_, otherKey := s.ca.issue(t, "other", x509.ExtKeyUsageServerAuth)
	writeFile(t, s.keyFile, string(otherKey))
	waitFor(t, 10*time.Second, "the mismatched pair to be logged", func() bool {
		return strings.Contains(s.logs.String(), "TLS certificate reload failed; keeping the previous certificate")
	})
	if got := serverCN(); got != "auth" {
		t.Errorf("after a mismatched key: got certificate %q, want the previous one, auth", got)
	}
	// A new good pair, each file replaced by rename as certificate tools do.
	c, k := s.ca.issue(t, "auth-renewed", x509.ExtKeyUsageServerAuth)
	for path, data := range map[string][]byte{s.certFile: c, s.keyFile: k} {
		writeFile(t, path+".new", string(data))
		if err := os.Rename(path+".new", path); err != nil {
			t.Fatal(err)
		}
	}
	waitFor(t, 10*time.Second, "the renewed certificate to be served", func() bool { return serverCN() == "auth-renewed" })
}

// TestHealthcheckOverTLS: the healthcheck's default URL is https:// when
// REGISTRY_AUTH_TLS_CERT is set, and it answers through a certificate that names the
// service, not 127.0.0.1, and without a client certificate.
func TestHealthcheckOverTLS(t *testing.T) {
	t.Parallel()
	s := startTLSService(t, true)
	_, port, _ := net.SplitHostPort(strings.TrimPrefix(s.url, "https://"))
	tests := []struct {
		name string
		env  map[string]string
		want string // error text; "" for healthy
	}{
		{"TLS variables as the container has them", map[string]string{"REGISTRY_AUTH_LISTEN": ":" + port, "REGISTRY_AUTH_TLS_CERT": s.certFile}, ""},
		{"plain HTTP to a TLS listener", map[string]string{"REGISTRY_AUTH_LISTEN": ":" + port}, "unhealthy: "},
	}
	for _, tt := range tests {
		stdout, _, err := runCLI(t, tt.env, "", "healthcheck")
		switch {
		case tt.want == "" && (err != nil || stdout != "healthy\n"):
			t.Errorf("%s: got %v, %q, want nil, \"healthy\\n\"", tt.name, err, stdout)
		case tt.want != "" && (err == nil || !strings.Contains(err.Error(), tt.want)):
			t.Errorf("%s: got %v, want an error containing %q", tt.name, err, tt.want)
		}
	}
	// Not loopback: the certificate is verified (and fails here, as the CA is not the system's).
	if _, _, err := runCLI(t, nil, "", "healthcheck", "--url", "https://localhost:"+port+"/healthz"); err == nil || !strings.Contains(err.Error(), "certificate") {
		t.Errorf("healthcheck by host name: got %v, want a certificate verification error", err)
	}
}

// TestTLSConfigErrors: TLS flags that cannot work together, and unreadable files, stop serve
// with a message that says how to fix them.
func TestTLSConfigErrors(t *testing.T) {
	t.Parallel()
	f := newTestFiles(t, htpasswdLines(t, "bob", "bob-secret"), "")
	notPEM := filepath.Join(f.dir, "not.pem")
	writeFile(t, notPEM, "hello\n")
	tests := []struct {
		name string
		args []string
		want string
	}{
		{"cert without key", []string{"--tls-cert", "/x.crt"}, "--tls-cert without --tls-key"},
		{"key without cert", []string{"--tls-key", "/x.key"}, "--tls-key without --tls-cert"},
		{"client CA without cert", []string{"--tls-client-ca", "/ca.crt"}, "--tls-client-ca needs --tls-cert"},
		{"missing cert file", []string{"--tls-cert", "/nonexistent.crt", "--tls-key", "/nonexistent.key"}, "check --tls-cert / REGISTRY_AUTH_TLS_CERT"},
		{"not a certificate", []string{"--tls-cert", notPEM, "--tls-key", notPEM}, "replace both files with a matching certificate and key"},
	}
	for _, tt := range tests {
		args := append([]string{"serve", "--htpasswd", f.htpasswd, "--groups", f.groups, "--listen", "127.0.0.1:0"}, tt.args...)
		_, _, err := runCLI(t, nil, "", args...)
		if err == nil || errors.Is(err, flag.ErrHelp) || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%s: got %v, want an error containing %q", tt.name, err, tt.want)
		}
	}
}

// TestWaitOverTLS: --wait https:// verifies the service against REGISTRY_AUTH_TLS_CLIENT_CA
// (the compose stack's one hop CA signs both certificates); --wait http:// to a TLS
// listener fails with the fix.
func TestWaitOverTLS(t *testing.T) {
	t.Parallel()
	s := startTLSService(t, true)
	env := editEnv(s.files)
	env["REGISTRY_AUTH_TLS_CLIENT_CA"] = s.caFile
	out := mustRun(t, env, "b\n", "user", "add", "--cost", "4", "--wait", s.url, "carol")
	if !strings.Contains(out, "loaded it after") {
		t.Errorf("user add --wait %s: got %q, want how long the service took", s.url, out)
	}
	plain := "http://" + strings.TrimPrefix(s.url, "https://")
	_, _, err := runCLI(t, env, "d\n", "user", "add", "--cost", "4", "--wait", plain, "--wait-timeout", "300ms", "dave")
	if err == nil || !strings.Contains(err.Error(), "give --wait "+s.url) {
		t.Errorf("user add --wait %s: got %v, want the advice to use %s", plain, err, s.url)
	}
}
