package e2e

import (
	"crypto/tls"
	"errors"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"sync/atomic"
	"testing"

	"github.com/registry-auth/registry-auth/e2e/harness"
)

// spoofingProxy is a TLS reverse proxy on loopback in front of the stack's
// Traefik that adds forged X-Forwarded-* headers to every request, as a
// hostile client would: it claims every request is a GET of /v2/ from
// another address. Clients that cannot set headers (skopeo) push through it.
type spoofingProxy struct {
	Addr     string
	requests atomic.Int64
}

// Requests returns how many requests the proxy has forwarded.
func (p *spoofingProxy) Requests() int64 { return p.requests.Load() }

// spoofedHeaders are the forged headers: a read of the base route.
var spoofedHeaders = http.Header{
	"X-Forwarded-Method": {"GET"},
	"X-Forwarded-Uri":    {"/v2/"},
	"X-Forwarded-For":    {"10.9.8.7"},
}

func startSpoofingProxy(t testing.TB, s *harness.Stack) *spoofingProxy {
	t.Helper()
	target, err := url.Parse(s.URL())
	if err != nil {
		t.Fatal(err)
	}
	p := &spoofingProxy{}
	proxy := &httputil.ReverseProxy{
		Rewrite: func(r *httputil.ProxyRequest) {
			r.SetURL(target)
			r.Out.Host = r.In.Host
			for k, v := range spoofedHeaders {
				r.Out.Header[k] = v
			}
			p.requests.Add(1)
		},
		Transport:     s.HTTPClient().Transport,
		FlushInterval: -1,
		// Clients that give up on a refused push cancel uploads in flight;
		// the proxy's complaints about that are noise.
		ErrorLog: log.New(io.Discard, "", 0),
	}
	cert, err := tls.LoadX509KeyPair(s.Certs.CertFile, s.Certs.KeyFile)
	if err != nil {
		t.Fatal(err)
	}
	l, err := tls.Listen("tcp", "127.0.0.1:0", &tls.Config{Certificates: []tls.Certificate{cert}})
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: proxy}
	done := make(chan error, 1)
	go func() { done <- srv.Serve(l) }()
	t.Cleanup(func() {
		srv.Close()
		if err := <-done; !errors.Is(err, http.ErrServerClosed) {
			t.Errorf("spoofing proxy: %v", err)
		}
	})
	p.Addr = l.Addr().(*net.TCPAddr).String()
	return p
}

// TestForwardedHeadersFromClient sends pushes with forged X-Forwarded-Method
// and X-Forwarded-Uri headers straight to Traefik at the HTTP level: a
// read-only user's push stays denied, an anonymous one stays unauthorized,
// and the registry never sees the request.
func TestForwardedHeadersFromClient(t *testing.T) {
	s := startStack(t)
	client := s.HTTPClient()
	cases := []struct {
		name, method, path string
		as                 *account
		want               int
		code               string
	}{
		// The push sequence's first request: start an upload.
		{"upload start by a reader", "POST", "/v2/e2e/spoof/blobs/uploads/", &reader, http.StatusForbidden, "DENIED"},
		// The push sequence's last request: put the manifest.
		{"manifest put by a reader", "PUT", "/v2/e2e/spoof/manifests/v1", &reader, http.StatusForbidden, "DENIED"},
		{"delete by a reader", "DELETE", "/v2/e2e/spoof/manifests/v1", &reader, http.StatusForbidden, "DENIED"},
		{"manifest put without credentials", "PUT", "/v2/e2e/spoof/manifests/v1", nil, http.StatusUnauthorized, "UNAUTHORIZED"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			header := spoofedHeaders.Clone()
			header.Set("Content-Type", "application/vnd.oci.image.manifest.v1+json")
			registryUnreached(t, s, func() {
				status, h, body := doRequest(t, client, tc.method, s.URL()+tc.path, tc.as, header, stringsReader(testManifest))
				if status != tc.want || !containsCode(body, tc.code) {
					t.Errorf("%s %s as %s with X-Forwarded-Method: GET: got %d %q, want %d with %s", tc.method, tc.path, describe(tc.as), status, body, tc.want, tc.code)
				}
				if tc.want == http.StatusUnauthorized && h.Get("WWW-Authenticate") == "" {
					t.Errorf("401 without a WWW-Authenticate challenge")
				}
			})
		})
	}
	// The same push by the pusher, without forged headers, reaches the
	// registry: the cases above did not fail for some unrelated reason.
	t.Run("upload start by the pusher", func(t *testing.T) {
		status, _, body := doRequest(t, client, "POST", s.URL()+"/v2/e2e/spoof/blobs/uploads/", &pusher, nil, nil)
		if status != http.StatusAccepted {
			t.Errorf("POST upload as %s: got %d %q, want 202", pusher.name, status, body)
		}
	})
}
