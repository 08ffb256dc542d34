package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"sync/atomic"
	"time"
)

// ceilingEnv, when set in the environment, turns this program into the
// "answers 200 at once" forwardAuth server of setup 4, listening on the
// variable's value. The harness starts it as a separate process (itself,
// re-executed), so that it is measured like registry-auth: its own
// process, its own Go runtime, never sharing a scheduler or garbage
// collector with the harness's clients.
const ceilingEnv = "REGISTRY_AUTH_BENCH_CEILING"

// ceilingTLSEnv, when set, makes the ceiling server speak TLS (HTTP/2 and
// HTTP/1.1, TLS 1.2 minimum) as registry-auth does: its value is the
// certificate, key and client CA files, joined by the path list separator.
// Client certificates are asked for and verified the way registry-auth
// does, so the handshakes cost the same.
const ceilingTLSEnv = "REGISTRY_AUTH_BENCH_CEILING_TLS"

// ceilingConnectionsPath answers the number of TCP connections the ceiling
// server has accepted, as a decimal number.
const ceilingConnectionsPath = "/connections"

// serveCeiling answers every request with 200 and an empty body until ctx
// ends. It prints the address it bound on stdout (one line), which is how
// its parent learns the port.
func serveCeiling(ctx context.Context, addr, tlsFiles string, stdout io.Writer) error {
	l, err := net.Listen("tcp", addr)
	if err != nil {
		return err
	}
	var accepted atomic.Int64
	srv := &http.Server{
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.URL.Path == ceilingConnectionsPath {
				fmt.Fprintln(w, accepted.Load())
				return
			}
			w.WriteHeader(http.StatusOK)
		}),
		ReadHeaderTimeout: 10 * time.Second,
		ConnState: func(_ net.Conn, state http.ConnState) {
			if state == http.StateNew {
				accepted.Add(1)
			}
		},
	}
	if tlsFiles != "" {
		if srv.TLSConfig, err = ceilingTLSConfig(filepath.SplitList(tlsFiles)); err != nil {
			return err
		}
	}
	fmt.Fprintln(stdout, l.Addr().String())
	errc := make(chan error, 1)
	go func() {
		if srv.TLSConfig != nil {
			errc <- srv.ServeTLS(l, "", "")
			return
		}
		errc <- srv.Serve(l)
	}()
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
	}
	shutdownCtx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := srv.Shutdown(shutdownCtx); err != nil {
		return err
	}
	if err := <-errc; !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}

// ceilingTLSConfig is registry-auth's TLS configuration for files
// (certificate, key, client CA).
func ceilingTLSConfig(files []string) (*tls.Config, error) {
	if len(files) != 3 {
		return nil, fmt.Errorf("%s: want certificate, key and client CA, got %q", ceilingTLSEnv, files)
	}
	cert, err := tls.LoadX509KeyPair(files[0], files[1])
	if err != nil {
		return nil, err
	}
	ca, err := os.ReadFile(files[2])
	if err != nil {
		return nil, err
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(ca) {
		return nil, fmt.Errorf("%s: no certificate", files[2])
	}
	return &tls.Config{
		MinVersion:   tls.VersionTLS12,
		Certificates: []tls.Certificate{cert},
		NextProtos:   []string{"h2", "http/1.1"},
		ClientCAs:    pool,
		ClientAuth:   tls.VerifyClientCertIfGiven,
	}, nil
}
