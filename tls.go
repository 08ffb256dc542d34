package main

import (
	"bytes"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/registry-auth/registry-auth/internal/cli"
)

// tlsFiles are the listener's TLS files: with cert and key the service speaks HTTPS
// (HTTP/2 and HTTP/1.1); with clientCA too, /auth and /metrics need a client certificate
// that CA signed. All empty: plain HTTP.
type tlsFiles struct {
	cert, key string
	clientCA  string
}

// enabled reports whether the listener speaks TLS.
func (f tlsFiles) enabled() bool { return f.cert != "" }

// defineTLSFlags defines serve's TLS flags, which fill f.
func defineTLSFlags(fs *cli.FlagSet, f *tlsFiles) {
	fs.EnvString(&f.cert, "tls-cert", "", "PEM certificate (chain) to serve HTTPS with, HTTP/2 and HTTP/1.1, TLS 1.2 or newer; reloaded when the file changes; empty serves plain HTTP")
	fs.EnvString(&f.key, "tls-key", "", "PEM private key of --tls-cert; reloaded with it (a pair that does not match keeps the previous one)")
	fs.EnvString(&f.clientCA, "tls-client-ca", "", "PEM CA certificate(s): /auth and /metrics then need a client certificate they signed (answer 403 without one; one from another CA fails the handshake); /healthz and /readyz stay open; read at start")
}

// validate checks that the TLS flags make sense together.
func (f tlsFiles) validate() error {
	switch {
	case f.cert != "" && f.key == "":
		return errors.New("--tls-cert without --tls-key: give the certificate's private key too (REGISTRY_AUTH_TLS_KEY)")
	case f.cert == "" && f.key != "":
		return errors.New("--tls-key without --tls-cert: give the certificate too (REGISTRY_AUTH_TLS_CERT)")
	case f.cert == "" && f.clientCA != "":
		return errors.New("--tls-client-ca needs --tls-cert and --tls-key: client certificates are only asked for over HTTPS")
	}
	return nil
}

// serverCert is the listener's certificate and key. The handshake loads an atomic pointer;
// reload swaps it only for a pair that parses and matches, so a half-written or mismatched
// pair keeps the previous one (and is logged). It is safe for concurrent use.
type serverCert struct {
	certFile, keyFile string
	logger            *slog.Logger

	current atomic.Pointer[tls.Certificate]

	mu          sync.Mutex // serialises reloads
	sum         [sha256.Size]byte
	lastFailure string
}

// loadServerCert reads the pair for the first time; an error here stops serve.
func loadServerCert(certFile, keyFile string, logger *slog.Logger) (*serverCert, error) {
	c := &serverCert{certFile: certFile, keyFile: keyFile, logger: logger}
	if err := c.reload("start"); err != nil {
		return nil, err
	}
	return c, nil
}

// paths are the files to watch: none for a nil *serverCert (plain HTTP).
func (c *serverCert) paths() []string {
	if c == nil {
		return nil
	}
	return []string{c.certFile, c.keyFile}
}

// reload reads the pair and swaps it in if it changed and is good. A nil *serverCert does
// nothing. The same failure seen again (every poll tick) is logged once.
func (c *serverCert) reload(trigger string) error {
	if c == nil {
		return nil
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	certPEM, key, err := c.read()
	if err == nil {
		sum := sha256.Sum256(append(append(certPEM, 0), key...))
		if c.current.Load() != nil && sum == c.sum {
			c.lastFailure = ""
			return nil
		}
		var cert tls.Certificate
		if cert, err = tls.X509KeyPair(certPEM, key); err == nil {
			c.current.Store(&cert)
			c.sum, c.lastFailure = sum, ""
			c.logger.Info("loaded the TLS certificate", "trigger", trigger, "file", c.certFile,
				"subject", cert.Leaf.Subject.String(), "dns_names", cert.Leaf.DNSNames,
				"not_after", cert.Leaf.NotAfter.UTC().Format(time.RFC3339))
			if time.Now().After(cert.Leaf.NotAfter) {
				c.logger.Warn("the TLS certificate has expired: clients will refuse it; replace the files", "file", c.certFile)
			}
			return nil
		}
		err = fmt.Errorf("%s and %s: %w (replace both files with a matching certificate and key; while one of the two is being replaced this clears when the other is written)", c.certFile, c.keyFile, err)
	}
	if msg := err.Error(); msg != c.lastFailure {
		c.lastFailure = msg
		if c.current.Load() == nil {
			c.logger.Error("cannot load the TLS certificate", "trigger", trigger, "error", err)
		} else {
			c.logger.Error("TLS certificate reload failed; keeping the previous certificate", "trigger", trigger, "error", err)
		}
	}
	return err
}

func (c *serverCert) read() (certPEM, key []byte, err error) {
	if certPEM, err = os.ReadFile(c.certFile); err != nil {
		return nil, nil, fmt.Errorf("reading the TLS certificate (check --tls-cert / REGISTRY_AUTH_TLS_CERT and that the service's user may read it): %w", err)
	}
	if key, err = os.ReadFile(c.keyFile); err != nil {
		return nil, nil, fmt.Errorf("reading the TLS key (check --tls-key / REGISTRY_AUTH_TLS_KEY and that the service's user may read it): %w", err)
	}
	return certPEM, key, nil
}

// getCertificate is tls.Config.GetCertificate: the current pair, whatever the client asks.
func (c *serverCert) getCertificate(*tls.ClientHelloInfo) (*tls.Certificate, error) {
	return c.current.Load(), nil
}

// newTLSConfig is the listener's TLS configuration. With a client CA, the handshake asks for
// a client certificate and refuses one that CA did not sign, but lets a client without one
// in (tls.VerifyClientCertIfGiven): the container's health check has none, and
// requireClientCert refuses such clients on /auth and /metrics.
func newTLSConfig(f tlsFiles, cert *serverCert) (*tls.Config, error) {
	tc := &tls.Config{
		MinVersion:     tls.VersionTLS12,
		GetCertificate: cert.getCertificate,
		NextProtos:     []string{"h2", "http/1.1"},
	}
	if f.clientCA == "" {
		return tc, nil
	}
	data, err := os.ReadFile(f.clientCA)
	if err != nil {
		return nil, fmt.Errorf("reading the client CA (check --tls-client-ca / REGISTRY_AUTH_TLS_CLIENT_CA): %w", err)
	}
	pool := x509.NewCertPool()
	if !bytes.Contains(data, []byte("-----BEGIN CERTIFICATE-----")) || !pool.AppendCertsFromPEM(data) {
		return nil, fmt.Errorf("%s (--tls-client-ca): no PEM certificate in it: give the CA certificate that signed Traefik's client certificate", f.clientCA)
	}
	tc.ClientCAs = pool
	tc.ClientAuth = tls.VerifyClientCertIfGiven
	return tc, nil
}

// requireClientCert lets through only requests whose TLS connection presented a client
// certificate that verified against --tls-client-ca; others get 403 and a log line that
// says what to fix. (A certificate that does not verify never gets this far: the handshake
// fails.)
func requireClientCert(logger *slog.Logger, next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.TLS == nil || len(r.TLS.VerifiedChains) == 0 {
			logger.Warn("request without a client certificate refused: give Traefik's forwardAuth middleware tls.cert and tls.key signed by --tls-client-ca",
				"path", r.URL.Path, "peer", r.RemoteAddr)
			writeRegistryError(w, http.StatusForbidden, bodyNoClientCert)
			return
		}
		next.ServeHTTP(w, r)
	})
}

// bodyNoClientCert is the 403 body of a request without a client certificate. Only a
// misconfigured proxy sends one, but Traefik hands our answer to the registry client, so it
// is a registry error body like the others.
const bodyNoClientCert = `{"errors":[{"code":"DENIED","message":"requested access to the resource is denied","detail":"registry-auth needs a client certificate from its proxy; the operator must give Traefik's forwardAuth middleware tls.cert and tls.key"}]}` + "\n"
