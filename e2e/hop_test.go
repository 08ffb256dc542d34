package e2e

import (
	"context"
	"crypto/tls"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/registry-auth/registry-auth/e2e/harness"
)

// TestTLSHop: Traefik asks registry-auth over HTTPS with the client certificate the
// compose labels give it (the whole suite runs over this hop); registry-auth gives no
// decision to a client without a certificate (403) or with one from another CA (no
// handshake); a certificate replaced while it runs is served to new connections and
// Traefik keeps deciding through it.
func TestTLSHop(t *testing.T) {
	t.Parallel()
	s := startStack(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	if !strings.HasPrefix(s.AuthURL(), "https://") {
		t.Fatalf("registry-auth's URL is %s: docker-compose.yml no longer gives it TLS", s.AuthURL())
	}
	client := s.HTTPClient()
	throughTraefik := func(user, password string) int {
		t.Helper()
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, s.URL()+"/v2/", nil)
		req.SetBasicAuth(user, password)
		resp, err := client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	if got := throughTraefik(reader.name, reader.password); got != http.StatusOK {
		t.Fatalf("reader through Traefik: got %d, want 200", got)
	}
	if got := throughTraefik(reader.name, "wrong"); got != http.StatusUnauthorized {
		t.Fatalf("wrong password through Traefik: got %d, want 401", got)
	}

	foreign, err := harness.NewCerts(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	direct := func(cert *tls.Certificate) (*http.Response, error) {
		tc := &tls.Config{RootCAs: s.Certs.HopPool, ServerName: "auth", MinVersion: tls.VersionTLS12}
		if cert != nil {
			// Sent whatever CAs the server names, as a misconfigured proxy would.
			tc.GetClientCertificate = func(*tls.CertificateRequestInfo) (*tls.Certificate, error) { return cert, nil }
		}
		tr := &http.Transport{TLSClientConfig: tc, ForceAttemptHTTP2: true}
		defer tr.CloseIdleConnections()
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, s.AuthURL()+"/auth", nil)
		req.Header.Set("X-Forwarded-Method", "GET")
		req.Header.Set("X-Forwarded-Uri", "/v2/")
		req.SetBasicAuth(reader.name, reader.password)
		resp, err := (&http.Client{Transport: tr}).Do(req)
		if err == nil {
			resp.Body.Close()
		}
		return resp, err
	}
	if resp, err := direct(nil); err != nil || resp.StatusCode != http.StatusForbidden {
		t.Errorf("no client certificate: got %v, %v; want 403", statusOf(resp), err)
	}
	if resp, err := direct(&foreign.HopClient); err == nil {
		t.Errorf("another CA's client certificate: got %d, want a failed handshake", resp.StatusCode)
	}
	if resp, err := direct(&s.Certs.HopClient); err != nil || resp.StatusCode != http.StatusOK {
		t.Errorf("Traefik's client certificate: got %v, %v; want 200", statusOf(resp), err)
	}
	// Plain HTTP to the TLS listener is no way round it either.
	if resp, err := http.Get("http://" + s.AuthAddr + "/auth"); err == nil {
		resp.Body.Close()
		if resp.StatusCode == http.StatusOK {
			t.Errorf("plain HTTP to registry-auth: got 200")
		}
	}

	serial, err := s.Certs.RenewHopServerCert()
	if err != nil {
		t.Fatal(err)
	}
	served := func() string {
		conn, err := tls.Dial("tcp", s.AuthAddr, &tls.Config{RootCAs: s.Certs.HopPool, ServerName: "auth"})
		if err != nil {
			t.Fatalf("handshake with registry-auth after renewing its certificate: %v", err)
		}
		defer conn.Close()
		return conn.ConnectionState().PeerCertificates[0].SerialNumber.String()
	}
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	deadline := time.NewTimer(10 * time.Second)
	defer deadline.Stop()
	for got := served(); got != serial.String(); got = served() {
		select {
		case <-deadline.C:
			t.Fatalf("registry-auth still serves serial %s 10 s after %s was replaced, want %s", got, filepath.Join(s.Certs.HopDir, "auth.crt"), serial)
		case <-tick.C:
		}
	}
	if got := throughTraefik(reader.name, reader.password); got != http.StatusOK {
		t.Errorf("reader through Traefik after the renewal: got %d, want 200", got)
	}
}

func statusOf(resp *http.Response) any {
	if resp == nil {
		return "no response"
	}
	return resp.StatusCode
}
