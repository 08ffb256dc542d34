package e2e

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/registry-auth/registry-auth/e2e/harness"
)

// authMetric reads one sample (name with its labels, as in the exposition
// format) from registry-auth's /metrics, or fails the test.
func authMetric(t testing.TB, s *harness.Stack, sample string) float64 {
	t.Helper()
	lines, err := authMetricLines(s.AuthClient(), s.AuthURL())
	if err != nil {
		t.Fatal(err)
	}
	v, ok, err := metricSample(lines, sample)
	if err != nil || !ok {
		t.Fatalf("registry-auth metrics: no %s (%v)", sample, err)
	}
	return v
}

// hashesRun is how many password checks registry-auth has run: one hash each.
func hashesRun(t testing.TB, s *harness.Stack) int {
	return int(authMetric(t, s, "registry_auth_verify_duration_seconds_count"))
}

// transportFrom is a transport to the stack that connects from the loopback
// address local, so that Traefik sees another client address, over at most
// one connection (HTTP/2 multiplexes every request on it).
func transportFrom(s *harness.Stack, local string) *http.Transport {
	tr := s.Transport()
	tr.MaxConnsPerHost = 1
	dialer := &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(local)}, Timeout: 10 * time.Second}
	tr.DialContext = dialer.DialContext
	return tr
}

// TestGuessBurstOverHTTP2 plays the attack the throttle must hold: 150
// guesses at once on one HTTP/2 connection through Traefik, first at one
// name, then at 150 names. registry-auth's own metric counts the hashes:
// at most the per-name limit (30) for one name, the per-address limit (50)
// for many; every other answer is 429 and none is a 5xx. A valid uncached
// login from another loopback address during the burst gets 200; its time
// is reported, not asserted.
func TestGuessBurstOverHTTP2(t *testing.T) {
	s := startStack(t)
	burst := &http.Client{Transport: transportFrom(s, "127.0.0.1")}
	if resp, err := burst.Get(s.URL() + "/v2/"); err != nil {
		t.Fatal(err)
	} else if resp.Body.Close(); resp.ProtoMajor != 2 {
		t.Fatalf("got %s from Traefik, want HTTP/2", resp.Proto)
	}
	const guesses = 150
	for _, tc := range []struct {
		name  string
		user  func(i int) string
		limit int
		valid string // the valid login's address: a new one, so that it is not cached
	}{
		{"one name", func(int) string { return pusher.name }, 30, "127.0.0.2"},
		{"150 names", func(i int) string { return fmt.Sprint("guess-name-", i) }, 50, "127.0.0.3"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			other := &http.Client{Transport: transportFrom(s, tc.valid)}
			before := hashesRun(t, s)
			statuses := make(chan int, guesses)
			start := make(chan struct{})
			var wg sync.WaitGroup
			for i := range guesses {
				wg.Go(func() {
					<-start
					ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
					defer cancel()
					req, _ := http.NewRequestWithContext(ctx, "GET", s.URL()+"/v2/", nil)
					req.SetBasicAuth(tc.user(i), fmt.Sprint("wrong-", i))
					resp, err := burst.Do(req)
					if err != nil {
						t.Errorf("guess %d: %v", i, err)
						statuses <- 0
						return
					}
					resp.Body.Close()
					statuses <- resp.StatusCode
				})
			}
			close(start)
			// The valid login, once the burst has started to be answered.
			first := <-statuses
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			req, _ := http.NewRequestWithContext(ctx, "GET", s.URL()+"/v2/", nil)
			req.SetBasicAuth(reader.name, reader.password)
			sent := time.Now()
			resp, err := other.Do(req)
			took := time.Since(sent)
			if err != nil {
				t.Fatalf("valid login from %s during the burst: %v", tc.valid, err)
			}
			resp.Body.Close()
			if resp.StatusCode != http.StatusOK {
				t.Errorf("valid login from %s during the burst: got %d, want 200", tc.valid, resp.StatusCode)
			}
			wg.Wait()
			close(statuses)
			count := map[int]int{first: 1}
			for st := range statuses {
				count[st]++
			}
			hashed := hashesRun(t, s) - before - 1 // the valid login's own check
			t.Logf("%s: %d guesses at once over one HTTP/2 connection: statuses %v, %d hashed (limit %d); a valid login from another address meanwhile took %v",
				tc.name, guesses, count, hashed, tc.limit, took.Round(time.Millisecond))
			if hashed > tc.limit {
				t.Errorf("got %d guesses hashed, want at most %d", hashed, tc.limit)
			}
			if count[http.StatusUnauthorized]+count[http.StatusTooManyRequests] != guesses || count[http.StatusTooManyRequests] < guesses-tc.limit {
				t.Errorf("got statuses %v, want only 401 and 429, at least %d of them 429", count, guesses-tc.limit)
			}
		})
	}
}

// TestMalformedDigestReachesRegistry: a manifest path whose digest the
// registry's own routes accept but cannot parse is decided as the route, so a
// caller who may use the repository gets the registry's 400 DIGEST_INVALID
// (as the OCI conformance suite expects), while a caller who may not still
// gets our 401 or 403 and the registry never sees the request.
func TestMalformedDigestReachesRegistry(t *testing.T) {
	s := startStack(t)
	client := s.HTTPClient()
	path := "/v2/e2e/digest/manifests/sha256:baddigeststring"
	header := http.Header{"Content-Type": {"application/vnd.oci.image.manifest.v1+json"}}
	for _, tc := range []struct {
		method   string
		as       *account
		want     int
		code     string
		registry bool // the answer is the registry's
	}{
		{"GET", &reader, http.StatusBadRequest, "DIGEST_INVALID", true},
		{"PUT", &pusher, http.StatusBadRequest, "DIGEST_INVALID", true},
		{"PUT", &reader, http.StatusForbidden, "DENIED", false},
		{"GET", nil, http.StatusUnauthorized, "UNAUTHORIZED", false},
	} {
		registryUnreachedIf(t, s, !tc.registry, func() {
			status, _, body := doRequest(t, client, tc.method, s.URL()+path, tc.as, header, stringsReader(testManifest))
			if status != tc.want || !containsCode(body, tc.code) {
				t.Errorf("%s %s as %s: got %d %q, want %d with %s", tc.method, path, describe(tc.as), status, body, tc.want, tc.code)
			}
		})
	}
}

// TestForwardedHeaderAliases sends, straight to Traefik, the headers the
// Traefik advisories since v3.6.12 are about: underscore and dot spellings of
// the forwarded and identity headers, and X-Forwarded-Prefix and
// X-Forwarded-Port. None moves a decision: a reader's push stays 403 and an
// anonymous one 401, without reaching the registry, and a reader's pull is
// still a pull.
func TestForwardedHeaderAliases(t *testing.T) {
	s := startStack(t)
	client := s.HTTPClient()
	aliases := http.Header{
		"X_forwarded_method": {"GET"}, "X.forwarded.method": {"GET"},
		"X_forwarded_uri": {"/v2/"}, "X.forwarded.uri": {"/v2/"},
		"X_forwarded_user": {pusher.name}, "X.forwarded.user": {pusher.name}, "X-Forwarded-User": {pusher.name},
		"X_forwarded_for": {"10.9.8.7"}, "X-Forwarded-Prefix": {"/v2/e2e/alias/manifests/v1"},
		"X-Forwarded-Port": {"1"}, "X_forwarded_proto": {"http"}, "X_forwarded_host": {"evil.example"},
		"Content-Type": {"application/vnd.oci.image.manifest.v1+json"},
	}
	for _, tc := range []struct {
		name, method, path string
		as                 *account
		want               int
		code               string
	}{
		{"manifest put by a reader", "PUT", "/v2/e2e/alias/manifests/v1", &reader, http.StatusForbidden, "DENIED"},
		{"upload start by a reader", "POST", "/v2/e2e/alias/blobs/uploads/", &reader, http.StatusForbidden, "DENIED"},
		{"manifest put without credentials", "PUT", "/v2/e2e/alias/manifests/v1", nil, http.StatusUnauthorized, "UNAUTHORIZED"},
		{"delete by a reader", "DELETE", "/v2/e2e/alias/manifests/v1", &reader, http.StatusForbidden, "DENIED"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			registryUnreached(t, s, func() {
				status, _, body := doRequest(t, client, tc.method, s.URL()+tc.path, tc.as, aliases, stringsReader(testManifest))
				if status != tc.want || !containsCode(body, tc.code) {
					t.Errorf("%s %s as %s with alias headers: got %d %q, want %d with %s", tc.method, tc.path, describe(tc.as), status, body, tc.want, tc.code)
				}
			})
		})
	}
	// Not refused for some unrelated reason: with the same headers, the
	// reader's pull reaches the registry (which has no such manifest).
	status, _, body := doRequest(t, client, "GET", s.URL()+"/v2/e2e/alias/manifests/v1", &reader, aliases, nil)
	if status != http.StatusNotFound || !containsCode(body, "MANIFEST_UNKNOWN") {
		t.Errorf("GET as %s with alias headers: got %d %q, want the registry's 404 MANIFEST_UNKNOWN", describe(&reader), status, body)
	}
}

// TestOversizedHeaders: request headers too large for the chain (one of 70
// KB or 200 KB, or 2,000 small ones) are refused by Traefik's entry point
// (http.maxHeaderBytes in traefik/traefik.yml), over HTTP/2 and HTTP/1.1,
// with credentials or without, and never become a 5xx: left at Traefik's
// default of 1 MiB they reached forwardAuth, whose HTTP/2 request to
// registry-auth broke on registry-auth's smaller limit ("request header list
// larger than peer's advertised limit") and came back as Traefik's 500.
// HTTP/1.1 gets 431 (2,000 short header lines, 28 KB, pass: the registry's
// 404 or our 401); over HTTP/2, where each field counts 32 bytes more, Go's
// server ends the connection (COMPRESSION_ERROR, PROTOCOL_ERROR) or answers
// 431, and Go's client may refuse to send what the server's settings forbid:
// no response is a 5xx.
func TestOversizedHeaders(t *testing.T) {
	s := startStack(t)
	h1tr := s.Transport()
	h1tr.ForceAttemptHTTP2 = false
	h1tr.TLSClientConfig.NextProtos = []string{"http/1.1"}
	many := http.Header{}
	for i := range 2000 {
		many.Set(fmt.Sprint("X-Pad-", i), "v")
	}
	for _, client := range []struct {
		name string
		tr   func() *http.Transport
	}{{"HTTP/2", s.Transport}, {"HTTP/1.1", func() *http.Transport { return h1tr }}} {
		for _, tc := range []struct {
			name      string
			header    http.Header
			oversized bool // for HTTP/1.1: 2,000 short lines are 28 KB, under the limit
		}{
			{"one 70 KB header", http.Header{"X-Pad": {strings.Repeat("a", 70<<10)}}, true},
			{"one 200 KB header", http.Header{"X-Pad": {strings.Repeat("a", 200<<10)}}, true},
			{"2,000 headers", many, client.name == "HTTP/2"},
		} {
			for _, as := range []*account{&reader, nil} {
				registryUnreachedIf(t, s, tc.oversized, func() {
					// A fresh connection each time: an HTTP/2 one may be ended by the refusal.
					c := &http.Client{Transport: client.tr()}
					req, _ := http.NewRequest("GET", s.URL()+"/v2/e2e/big/manifests/v1", nil)
					req.Header = tc.header.Clone()
					if as != nil {
						req.SetBasicAuth(as.name, as.password)
					}
					resp, err := c.Do(req)
					switch {
					case err != nil && client.name == "HTTP/2" && (strings.Contains(err.Error(), "COMPRESSION_ERROR") || strings.Contains(err.Error(), "PROTOCOL_ERROR") || strings.Contains(err.Error(), "larger than peer's advertised limit")):
						t.Logf("%s, %s, as %s: refused without a response: %v", client.name, tc.name, describe(as), err)
					case err != nil:
						t.Errorf("%s, %s, as %s: %v", client.name, tc.name, describe(as), err)
					default:
						resp.Body.Close()
						want := http.StatusRequestHeaderFieldsTooLarge
						if !tc.oversized {
							want = map[bool]int{true: http.StatusNotFound, false: http.StatusUnauthorized}[as != nil]
						}
						if resp.StatusCode != want {
							t.Errorf("%s, %s, as %s: got %d, want %d", client.name, tc.name, describe(as), resp.StatusCode, want)
						}
					}
				})
			}
		}
	}
	// Headers of a size real clients send still work.
	status, _, body := doRequest(t, s.HTTPClient(), "GET", s.URL()+"/v2/e2e/big/manifests/v1", &reader, http.Header{"X-Pad": {strings.Repeat("a", 8<<10)}}, nil)
	if status != http.StatusNotFound || !containsCode(body, "MANIFEST_UNKNOWN") {
		t.Errorf("an 8 KB header: got %d %q, want the registry's 404 MANIFEST_UNKNOWN", status, body)
	}
}

// TestEncodedCharactersRefusedAtTraefik: a path holding an encoded slash,
// backslash, NUL, semicolon, percent, question mark or hash (none of which a
// registry name, tag or digest has) is refused by Traefik's entry point
// (http.encodedCharacters in traefik/traefik.yml) before forwardAuth, even for
// the pusher, and the registry never sees it.
func TestEncodedCharactersRefusedAtTraefik(t *testing.T) {
	s := startStack(t)
	client := s.HTTPClient()
	for _, enc := range []string{"%2F", "%2f", "%5C", "%00", "%3B", "%25", "%3F", "%23"} {
		path := "/v2/e2e/enc" + enc + "x/manifests/v1"
		registryUnreached(t, s, func() {
			if status, _, body := doRequest(t, client, "GET", s.URL()+path, &pusher, nil, nil); status != http.StatusBadRequest {
				t.Errorf("GET %s as %s: got %d %q, want Traefik's 400", path, describe(&pusher), status, body)
			}
		})
	}
}
