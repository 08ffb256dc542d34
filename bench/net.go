package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"time"

	"github.com/registry-auth/registry-auth/e2e/harness"
)

// loopbackOnly refuses any URL whose host is not a loopback IP literal: the
// harness sends load, and a typo must not send it elsewhere.
func loopbackOnly(rawURL string) error {
	u, err := url.Parse(rawURL)
	if err != nil {
		return err
	}
	ip := net.ParseIP(u.Hostname())
	if ip == nil || !ip.IsLoopback() {
		return fmt.Errorf("refusing to send traffic to %s: only loopback IP addresses are allowed", rawURL)
	}
	return nil
}

// newClient returns an HTTP client for the harness's own requests (warm-up,
// checks, polls): it trusts roots (nil: the system's), keeps up to conns
// idle connections per host, and dials loopback only.
func newClient(roots *x509.CertPool, conns int) *http.Client {
	return &http.Client{Transport: newTransport(roots, conns), Timeout: 30 * time.Second}
}

// newHopClient is a loopback client for the auth servers themselves: it
// trusts the hop CA of certs and presents Traefik's client certificate.
func newHopClient(certs *harness.Certs, conns int) *http.Client {
	tr := newTransport(certs.HopPool, conns)
	tr.TLSClientConfig = certs.HopTLSConfig()
	return &http.Client{Transport: tr, Timeout: 30 * time.Second}
}

// newTransport is newClient's transport.
func newTransport(roots *x509.CertPool, conns int) *http.Transport {
	dialer := &net.Dialer{Timeout: 5 * time.Second}
	return &http.Transport{
		DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			host, _, err := net.SplitHostPort(addr)
			if err != nil {
				return nil, err
			}
			if ip := net.ParseIP(host); ip == nil || !ip.IsLoopback() {
				return nil, fmt.Errorf("refusing to dial %s: not a loopback address", addr)
			}
			return dialer.DialContext(ctx, network, addr)
		},
		TLSClientConfig:     &tls.Config{RootCAs: roots, MinVersion: tls.VersionTLS12},
		MaxIdleConns:        conns,
		MaxIdleConnsPerHost: conns,
		ForceAttemptHTTP2:   false, // wrk and docker speak HTTP/1.1 to the proxy
	}
}

// get sends one GET with the given Authorization (none if empty) and
// headers, drains the body and returns the status.
func get(ctx context.Context, client *http.Client, rawURL, authorization string, headers map[string]string) (int, error) {
	if err := loopbackOnly(rawURL); err != nil {
		return 0, err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, rawURL, nil)
	if err != nil {
		return 0, err
	}
	if authorization != "" {
		req.Header.Set("Authorization", authorization)
	}
	for k, v := range headers {
		req.Header.Set(k, v)
	}
	resp, err := client.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	if _, err := io.Copy(io.Discard, resp.Body); err != nil {
		return 0, err
	}
	return resp.StatusCode, nil
}
