package main

// Hostile input end to end: every request here goes over TCP to the real `run`, as bytes on
// the wire, so that Go's HTTP server, the router and the handler all take part.

import (
	"bufio"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"go/ast"
	"go/parser"
	"go/token"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/registry-auth/registry-auth/internal/cli"
	"github.com/registry-auth/registry-auth/internal/registry/registrytest"
)

// rawExchange writes request on a new connection and reads one response. The write runs
// beside the read, so a server that answers before it has read everything (431) is heard.
func rawExchange(t *testing.T, addr, request string) (*http.Response, string) {
	t.Helper()
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(20 * time.Second))
	go io.WriteString(conn, request) // its error shows up as the read's
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		t.Fatalf("no response to %.200q: %v", request, err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	return resp, string(body)
}

// authRequest is the raw bytes of a forwardAuth request with the given header lines.
func authRequest(headerLines ...string) string {
	var b strings.Builder
	b.WriteString("GET /auth HTTP/1.1\r\nHost: auth:8080\r\n")
	for _, l := range headerLines {
		b.WriteString(l + "\r\n")
	}
	b.WriteString("Connection: close\r\n\r\n")
	return b.String()
}

// basicLine is an Authorization header line carrying raw (any bytes) as Basic credentials.
func basicLine(raw string) string {
	return "Authorization: Basic " + base64.StdEncoding.EncodeToString([]byte(raw))
}

// serviceMetric reads one sample from a running service's /metrics, 0 when it is absent (a
// labelled counter appears at its first increment).
func serviceMetric(t *testing.T, s *runningService, sample string) float64 {
	t.Helper()
	resp, err := http.Get(s.url + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		if rest, ok := strings.CutPrefix(sc.Text(), sample+" "); ok {
			v, err := strconv.ParseFloat(rest, 64)
			if err != nil {
				t.Fatal(err)
			}
			return v
		}
	}
	return 0
}

// decisionSample names the decision counter of a status and reason.
func decisionSample(status int, reason string) string {
	result := map[int]string{400: "bad_request", 401: "unauthorized", 403: "denied", 429: "throttled"}[status]
	return fmt.Sprintf(`registry_auth_decisions_total{reason=%q,result=%q}`, reason, result)
}

// startHostileTarget runs the service over alice (reader) and bob (pusher).
func startHostileTarget(t *testing.T, args ...string) (*runningService, string) {
	t.Helper()
	f := newTestFiles(t, htpasswdLines(t, "alice", "alice-secret", "bob", "bob-secret"), "pusher: bob\n")
	s := startService(t, nil, append([]string{"--htpasswd", f.htpasswd, "--groups", f.groups, "--realm", "Hostile"}, args...)...)
	return s, strings.TrimPrefix(s.url, "http://")
}

// TestHostileRequests: each malformed or hostile request gets its defined answer, never a
// 200, never a 5xx, and the service keeps serving. reason is the decision counted in the
// metrics; an empty one means Go's HTTP server answers before the handler runs.
func TestHostileRequests(t *testing.T) {
	t.Parallel()
	s, addr := startHostileTarget(t, "--throttle-per-client", "0", "--throttle-per-user", "0")
	const fwd = "X-Forwarded-Method: GET\r\nX-Forwarded-Uri: /v2/app/manifests/latest\r\nX-Forwarded-For: 203.0.113.7"
	alice := basicLine("alice:alice-secret")
	over72 := "alice:" + strings.Repeat("p", 80)
	tests := []struct {
		name    string
		request string
		status  int
		reason  string
	}{
		// Credentials that are absent or not Basic.
		{"no Authorization", authRequest(fwd), 401, "missing_credentials"},
		{"Proxy-Authorization instead", authRequest(fwd, "Proxy-Authorization: Basic "+base64.StdEncoding.EncodeToString([]byte("alice:alice-secret"))), 401, "missing_credentials"},
		{"Bearer token", authRequest(fwd, "Authorization: Bearer eyJhbGciOiJub25lIn0.e30."), 401, "not_basic_credentials"},
		{"Digest", authRequest(fwd, `Authorization: Digest username="alice", response="x"`), 401, "not_basic_credentials"},
		{"Basic alone", authRequest(fwd, "Authorization: Basic"), 401, "not_basic_credentials"},
		{"Basic and a tab", authRequest(fwd, "Authorization: Basic\t"+base64.StdEncoding.EncodeToString([]byte("alice:alice-secret"))), 401, "not_basic_credentials"},
		{"empty Authorization", authRequest(fwd, "Authorization:"), 401, "not_basic_credentials"},
		// Basic, but broken.
		{"bad base64", authRequest(fwd, "Authorization: Basic !!!!"), 401, "malformed_credentials"},
		{"URL-safe base64", authRequest(fwd, "Authorization: Basic "+base64.URLEncoding.EncodeToString([]byte("alice:?>?>?>"))), 401, "malformed_credentials"},
		{"base64 without padding", authRequest(fwd, "Authorization: Basic "+base64.RawStdEncoding.EncodeToString([]byte("alice:alice-secre"))), 401, "malformed_credentials"},
		{"no colon", authRequest(fwd, basicLine("alicealice-secret")), 401, "malformed_credentials"},
		{"empty user", authRequest(fwd, basicLine(":alice-secret")), 401, "empty_user"},
		{"empty user and password: anonymous, and challenged", authRequest(fwd, basicLine(":")), 401, "missing_credentials"},
		{"NUL in user", authRequest(fwd, basicLine("ali\x00ce:alice-secret")), 401, "malformed_user"},
		{"NUL after user", authRequest(fwd, basicLine("alice\x00:alice-secret")), 401, "malformed_user"},
		{"escape in user", authRequest(fwd, basicLine("\x1b[31malice:alice-secret")), 401, "malformed_user"},
		{"DEL in user", authRequest(fwd, basicLine("alice\x7f:alice-secret")), 401, "malformed_user"},
		{"non-UTF-8 user", authRequest(fwd, basicLine("al\xffice:alice-secret")), 401, "malformed_user"},
		// Apache's C strings would stop at the NUL and accept this; we refuse it.
		{"right password, NUL, more", authRequest(fwd, basicLine("alice:alice-secret\x00anything")), 401, "malformed_password"},
		{"non-UTF-8 password", authRequest(fwd, basicLine("alice:alice-secr\xe9t")), 401, "wrong_password"},
		{"empty password", authRequest(fwd, basicLine("alice:")), 401, "wrong_password"},
		{"password over 72 bytes", authRequest(fwd, basicLine(over72)), 401, "wrong_password"},
		{"unknown user", authRequest(fwd, basicLine("mallory:alice-secret")), 401, "unknown_user"},
		{"user name case", authRequest(fwd, basicLine("Alice:alice-secret")), 401, "unknown_user"},
		{"user with trailing space", authRequest(fwd, basicLine("alice :alice-secret")), 401, "unknown_user"},
		{"user of 45,000 bytes", authRequest(fwd, basicLine(strings.Repeat("a", 45000)+":x")), 401, "unknown_user"},
		// Bytes on the wire that HTTP forbids or Go rejects before the handler.
		{"raw NUL in the header", authRequest(fwd, "Authorization: Basic YWxp\x00Y2U6"), 400, ""},
		{"raw DEL in the header", authRequest(fwd, "Authorization: Basic \x7f"), 400, ""},
		{"raw non-UTF-8 in the header", authRequest(fwd, "Authorization: Basic \xff\xfe"), 401, "malformed_credentials"},
		{"header name with a space", authRequest(fwd, "Authori zation: "+alice[len("Authorization: "):]), 400, ""},
		{"a 1 MiB header", authRequest(fwd, "Authorization: Basic "+strings.Repeat("A", 1<<20)), 431, ""},
		{"a 1 MiB header of many lines", authRequest(append([]string{fwd}, strings.Split(strings.Repeat("X-Pad: "+strings.Repeat("p", 1000)+"\n", 1024), "\n")[:1024]...)...), 431, ""},
		// Repeated headers.
		{"two Authorization headers", authRequest(fwd, alice, alice), 401, "several_authorization_headers"},
		{"Authorization twice, one empty", authRequest(fwd, alice, "Authorization:"), 401, "several_authorization_headers"},
		{"two X-Forwarded-Method", authRequest("X-Forwarded-Method: GET", "X-Forwarded-Method: PUT", "X-Forwarded-Uri: /v2/", alice), 400, "several_forwarded_methods"},
		{"X-Forwarded-Method twice the same", authRequest("X-Forwarded-Method: GET", "X-Forwarded-Method: GET", "X-Forwarded-Uri: /v2/", alice), 400, "several_forwarded_methods"},
		{"two X-Forwarded-Uri", authRequest("X-Forwarded-Method: GET", "X-Forwarded-Uri: /v2/", "X-Forwarded-Uri: /v2/app/manifests/1", alice), 400, "several_forwarded_uris"},
		{"no X-Forwarded-Method", authRequest("X-Forwarded-Uri: /v2/", alice), 400, "missing_forwarded_method"},
		// Methods outside distribution's mapping, for a valid user: 403, whatever the case.
		{"lower-case get", authRequest("X-Forwarded-Method: get", "X-Forwarded-Uri: /v2/", alice), 403, "unsupported_method"},
		{"mixed-case Put", authRequest("X-Forwarded-Method: Put", "X-Forwarded-Uri: /v2/app/manifests/1", alice), 403, "unsupported_method"},
		{"empty method", authRequest("X-Forwarded-Method:", "X-Forwarded-Uri: /v2/", alice), 403, "unsupported_method"},
		{"TRACE", authRequest("X-Forwarded-Method: TRACE", "X-Forwarded-Uri: /v2/", alice), 403, "unsupported_method"},
		{"CONNECT", authRequest("X-Forwarded-Method: CONNECT", "X-Forwarded-Uri: /v2/", alice), 403, "unsupported_method"},
		{"OPTIONS", authRequest("X-Forwarded-Method: OPTIONS", "X-Forwarded-Uri: /v2/", alice), 403, "unsupported_method"},
		{"PROPFIND", authRequest("X-Forwarded-Method: PROPFIND", "X-Forwarded-Uri: /v2/", alice), 403, "unsupported_method"},
		{"two methods in one value", authRequest("X-Forwarded-Method: GET, PUT", "X-Forwarded-Uri: /v2/", alice), 403, "unsupported_method"},
		{"method with a space inside", authRequest("X-Forwarded-Method: GE T", "X-Forwarded-Uri: /v2/", alice), 403, "unsupported_method"},
		{"non-UTF-8 method", authRequest("X-Forwarded-Method: G\xc9T", "X-Forwarded-Uri: /v2/", alice), 403, "unsupported_method"},
		{"method of 8 KiB", authRequest("X-Forwarded-Method: "+strings.Repeat("G", 8192), "X-Forwarded-Uri: /v2/", alice), 403, "unsupported_method"},
		// Bad credentials still come first: a bad method with them is a 401.
		{"odd method, no credentials", authRequest("X-Forwarded-Method: get", "X-Forwarded-Uri: /v2/"), 401, "missing_credentials"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			// Not parallel: each case checks the counter of its own reason.
			sample := decisionSample(tt.status, tt.reason)
			before := serviceMetric(t, s, sample)
			resp, body := rawExchange(t, addr, tt.request)
			if resp.StatusCode != tt.status {
				t.Fatalf("got %d %q, want %d", resp.StatusCode, body, tt.status)
			}
			if tt.reason == "" {
				return
			}
			checkRegistryError(t, resp, body, "Hostile")
			waitFor(t, 5*time.Second, sample+" to count the request", func() bool {
				return serviceMetric(t, s, sample) == before+1
			})
		})
	}
	for _, secret := range []string{"alice-secret", "alice-secr", "YWxpY2U6YWxpY2Utc2VjcmV0"} {
		if strings.Contains(s.logs.String(), secret) {
			t.Errorf("log holds %q", secret)
		}
	}
	stillServing(t, s)
}

// checkRegistryError checks the headers and JSON body of one of our own refusals.
func checkRegistryError(t *testing.T, resp *http.Response, body, realm string) {
	t.Helper()
	code := map[int]string{400: "UNSUPPORTED", 401: "UNAUTHORIZED", 403: "DENIED", 429: "TOOMANYREQUESTS"}[resp.StatusCode]
	var parsed struct{ Errors []struct{ Code string } }
	if err := json.Unmarshal([]byte(body), &parsed); err != nil || len(parsed.Errors) != 1 || parsed.Errors[0].Code != code {
		t.Errorf("got body %q, want one error with code %s", body, code)
	}
	if got := resp.Header.Get("Docker-Distribution-Api-Version"); got != "registry/2.0" {
		t.Errorf("got Docker-Distribution-Api-Version %q, want registry/2.0", got)
	}
	wantChallenge := ""
	if resp.StatusCode == 401 {
		wantChallenge = `Basic realm="` + realm + `"`
	}
	if got := resp.Header.Get("WWW-Authenticate"); got != wantChallenge {
		t.Errorf("got WWW-Authenticate %q, want %q", got, wantChallenge)
	}
	if got := resp.Header.Get("X-Forwarded-User"); got != "" {
		t.Errorf("got X-Forwarded-User %q on a refusal", got)
	}
}

// stillServing checks that the service answers, and that nothing went wrong inside it.
func stillServing(t *testing.T, s *runningService) {
	t.Helper()
	resp, err := http.Get(s.url + "/healthz")
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("healthz after the hostile requests: %v %v", resp, err)
	}
	resp.Body.Close()
	for _, bad := range []string{"panic", `"level":"ERROR"`} {
		if strings.Contains(s.logs.String(), bad) {
			t.Errorf("log shows %s:\n%s", bad, s.logs)
		}
	}
}

// TestGoodRequestsStillPass is the control for the tables around it: the same service and
// the same raw requests, well formed, are allowed, so "never 200" above means something.
func TestGoodRequestsStillPass(t *testing.T) {
	t.Parallel()
	_, addr := startHostileTarget(t)
	for _, tt := range []struct {
		request, user string
	}{
		{authRequest("X-Forwarded-Method: GET", "X-Forwarded-Uri: /v2/app/manifests/latest", basicLine("alice:alice-secret")), "alice"},
		{authRequest("X-Forwarded-Method: PUT", "X-Forwarded-Uri: /v2/app/manifests/latest", basicLine("bob:bob-secret")), "bob"},
		{authRequest("X-Forwarded-Method: POST", "X-Forwarded-Uri: /v2/app/blobs/uploads/?mount="+registrytest.Digest+"&from=team/base", basicLine("bob:bob-secret")), "bob"},
		{authRequest("X-Forwarded-Method: GET", "X-Forwarded-Uri: /v2/%61pp/tags/list", "Authorization: basic "+base64.StdEncoding.EncodeToString([]byte("alice:alice-secret"))), "alice"},
	} {
		resp, body := rawExchange(t, addr, tt.request)
		if resp.StatusCode != 200 || resp.Header.Get("X-Forwarded-User") != tt.user {
			t.Errorf("got %d %q user %q, want 200 for %s", resp.StatusCode, body, resp.Header.Get("X-Forwarded-User"), tt.user)
		}
	}
}

// TestHostilePathsEndToEnd: no hostile X-Forwarded-Uri lets a reader write, or anyone do
// anything: every one is a 403 for both users and every method. The few holding bytes that
// cannot stand in an HTTP header get Go's 400, or ours when CR LF smuggles in a second
// X-Forwarded-Method.
func TestHostilePathsEndToEnd(t *testing.T) {
	t.Parallel()
	s, addr := startHostileTarget(t)
	users := map[string]string{"alice": basicLine("alice:alice-secret"), "bob": basicLine("bob:bob-secret")}
	for _, tt := range registrytest.Hostile() {
		for user, auth := range users {
			for _, method := range []string{"GET", "HEAD", "PUT", "POST", "PATCH", "DELETE"} {
				resp, body := rawExchange(t, addr, authRequest("X-Forwarded-Method: "+method, "X-Forwarded-Uri: "+tt.URI, auth))
				want := 403
				if strings.ContainsAny(tt.URI, "\x00\r\n") {
					want = 400
				}
				if resp.StatusCode != want {
					t.Errorf("%s: %s %s as %s: got %d %q, want %d", tt.Name, method, tt.URI, user, resp.StatusCode, body, want)
				}
			}
		}
	}
	stillServing(t, s)
}

// TestClientAddress: X-Forwarded-For is believed only from a peer allowed to set it, and
// only its last entry, which Traefik appends, or with --trusted-proxies the rightmost entry
// that is no trusted proxy (a load-balancing hop inside Traefik appends 127.0.0.1).
func TestClientAddress(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		trusted bool
		xff     []string
		want    string
	}{
		{"trusted peer, no header", true, nil, "10.0.0.2"},
		{"trusted peer, one entry", true, []string{"203.0.113.9"}, "203.0.113.9"},
		{"trusted peer, client-sent entries first", true, []string{"198.51.100.1, 192.0.2.66,203.0.113.9"}, "203.0.113.9"},
		{"trusted peer, several headers: the last", true, []string{"198.51.100.1", "203.0.113.9"}, "203.0.113.9"},
		{"trusted peer, IPv6", true, []string{"2001:db8::7"}, "2001:db8::7"},
		{"trusted peer, garbage last", true, []string{"203.0.113.9, evil"}, "10.0.0.2"},
		{"trusted peer, address with port", true, []string{"203.0.113.9:4000"}, "10.0.0.2"},
		{"trusted peer, empty last", true, []string{"203.0.113.9,"}, "10.0.0.2"},
		{"untrusted peer: header ignored", false, []string{"203.0.113.9"}, "10.0.0.2"},
	}
	for _, tt := range tests {
		if got := clientAddress("10.0.0.2", tt.trusted, nil, tt.xff); got != tt.want {
			t.Errorf("%s: got %q, want %q", tt.name, got, tt.want)
		}
	}
	proxies, err := parseCIDRList("10.0.0.0/24,127.0.0.1/32")
	if err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		name string
		xff  []string
		want string
	}{
		{"Traefik's entry last", []string{"203.0.113.9"}, "203.0.113.9"},
		{"the load-balancing hop skipped", []string{"203.0.113.9, 127.0.0.1"}, "203.0.113.9"},
		{"two trusted hops skipped", []string{"203.0.113.9", "10.0.0.7, 127.0.0.1"}, "203.0.113.9"},
		{"a client-sent entry left of the client stays unbelieved", []string{"198.51.100.1, 203.0.113.9, 127.0.0.1"}, "203.0.113.9"},
		{"a client in a trusted range, leftmost", []string{"127.0.0.1"}, "127.0.0.1"},
		{"garbage before the trusted hop", []string{"evil, 127.0.0.1"}, "10.0.0.2"},
	} {
		if got := clientAddress("10.0.0.2", true, proxies, tt.xff); got != tt.want {
			t.Errorf("with trusted proxies, %s: got %q, want %q", tt.name, got, tt.want)
		}
	}
}

// decisionLines returns the decision log lines of s.
func decisionLines(s *runningService) []map[string]any {
	var lines []map[string]any
	for _, l := range strings.Split(s.logs.String(), "\n") {
		var m map[string]any
		if json.Unmarshal([]byte(l), &m) == nil && m["msg"] == "decision" {
			lines = append(lines, m)
		}
	}
	return lines
}

// TestTrustedProxies: with --trusted-proxies, a peer outside the list gets 403 and a
// warning naming it, hashes nothing, and its X-Forwarded-For is not believed; a peer inside
// is served, and the client address in logs and throttle is its X-Forwarded-For.
func TestTrustedProxies(t *testing.T) {
	t.Parallel()
	const xff = "X-Forwarded-For: 198.51.100.1, 203.0.113.9"
	ask := func(t *testing.T, addr, password string) (*http.Response, string) {
		return rawExchange(t, addr, authRequest("X-Forwarded-Method: GET", "X-Forwarded-Uri: /v2/", xff, basicLine("alice:"+password)))
	}

	// Both ways of giving the list: a list that is not in effect would pass every case below
	// the same as no list, since all these requests come from 127.0.0.1.
	for _, tc := range []struct {
		name string
		args []string
		env  map[string]string
	}{
		{"outside the list (flag)", []string{"--trusted-proxies", "192.0.2.0/24, 2001:db8::/32"}, nil},
		{"outside the list (variable)", nil, map[string]string{"REGISTRY_AUTH_TRUSTED_PROXIES": "192.0.2.0/24"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			f := newTestFiles(t, htpasswdLines(t, "alice", "alice-secret"), "pusher: alice\n")
			s := startService(t, tc.env, append([]string{"--htpasswd", f.htpasswd, "--groups", f.groups, "--realm", "Hostile"}, tc.args...)...)
			testUntrustedPeer(t, s, ask)
		})
	}

	for _, tc := range []struct {
		name string
		args []string
		env  map[string]string
	}{
		{"inside the list (flag)", []string{"--trusted-proxies", "10.0.0.0/8,127.0.0.1"}, nil},
		{"inside the list (variable)", nil, map[string]string{"REGISTRY_AUTH_TRUSTED_PROXIES": "127.0.0.0/8"}},
		{"no list", nil, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			f := newTestFiles(t, htpasswdLines(t, "alice", "alice-secret"), "pusher: alice\n")
			s := startService(t, tc.env, append([]string{"--htpasswd", f.htpasswd, "--groups", f.groups, "--throttle-per-client", "2"}, tc.args...)...)
			addr := strings.TrimPrefix(s.url, "http://")
			if resp, body := ask(t, addr, "alice-secret"); resp.StatusCode != 200 {
				t.Fatalf("trusted peer: got %d %q, want 200", resp.StatusCode, body)
			}
			// Two failures from 203.0.113.9 use up its limit; 192.0.2.1 is another client.
			for _, password := range []string{"guess-1", "guess-2"} {
				ask(t, addr, password)
			}
			if resp, _ := ask(t, addr, "guess-3"); resp.StatusCode != 429 {
				t.Errorf("third failure from 203.0.113.9: got %d, want 429", resp.StatusCode)
			}
			other := authRequest("X-Forwarded-Method: GET", "X-Forwarded-Uri: /v2/", "X-Forwarded-For: 192.0.2.1", basicLine("alice:guess-4"))
			if resp, _ := rawExchange(t, addr, other); resp.StatusCode != 401 {
				t.Errorf("failure from 192.0.2.1: got %d, want 401", resp.StatusCode)
			}
			waitFor(t, 5*time.Second, "five decision lines", func() bool { return len(decisionLines(s)) == 5 })
			if l := decisionLines(s)[0]; l["client"] != "203.0.113.9" || l["decision"] != "allowed" {
				t.Errorf("got log line %v, want client 203.0.113.9 allowed", l)
			}
		})
	}

	t.Run("bad list", func(t *testing.T) {
		t.Parallel()
		f := newTestFiles(t, htpasswdLines(t, "alice", "alice-secret"), "")
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		err := program.Run(ctx, cli.Env{LookupEnv: func(string) (string, bool) { return "", false }, Stdin: strings.NewReader(""), Stdout: io.Discard, Stderr: io.Discard}, []string{"serve", "--htpasswd", f.htpasswd, "--trusted-proxies", "10.0.0.0/33"})
		if err == nil || !strings.Contains(err.Error(), "--trusted-proxies") {
			t.Errorf("got %v, want an error naming --trusted-proxies", err)
		}
	})
}

// testUntrustedPeer checks what a peer outside --trusted-proxies gets: 403 and a warning
// naming it, no hash, and its X-Forwarded-For not believed.
func testUntrustedPeer(t *testing.T, s *runningService, ask func(t *testing.T, addr, password string) (*http.Response, string)) {
	t.Helper()
	addr := strings.TrimPrefix(s.url, "http://")
	for _, password := range []string{"alice-secret", "wrong"} {
		resp, body := ask(t, addr, password)
		if resp.StatusCode != 403 {
			t.Fatalf("untrusted peer: got %d %q, want 403", resp.StatusCode, body)
		}
		checkRegistryError(t, resp, body, "Hostile")
	}
	waitFor(t, 5*time.Second, "two decision lines", func() bool { return len(decisionLines(s)) == 2 })
	for _, l := range decisionLines(s) {
		if l["level"] != "WARN" || l["reason"] != "untrusted_peer" || l["client"] != "127.0.0.1" {
			t.Errorf("got log line %v, want a WARN with reason untrusted_peer and client 127.0.0.1", l)
		}
	}
	if got := serviceMetric(t, s, "registry_auth_verify_duration_seconds_count"); got != 0 {
		t.Errorf("got %v hashes for untrusted peers, want 0", got)
	}
	stillServing(t, s) // health checks come from inside the container and are not gated
}

// TestSlowHeadersAreCut: a client that sends its headers slower than --read-header-timeout
// (slowloris) has its connection closed by the server once that timeout has passed, well
// before the whole request's read timeout (maxReadHeaderTimeout) would close it anyway, while
// one that is quick is served.
func TestSlowHeadersAreCut(t *testing.T) {
	t.Parallel()
	const headerTimeout = 300 * time.Millisecond
	// Cut by then, or the connection was closed by something other than the header timeout;
	// half the whole-request timeout leaves a loaded machine seconds of margin either way.
	cutBy := maxReadHeaderTimeout / 2
	s, addr := startHostileTarget(t, "--read-header-timeout", headerTimeout.String())

	start := time.Now() // before the dial: the server's clock starts after it accepts
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	conn.SetDeadline(start.Add(cutBy))
	if _, err := io.WriteString(conn, "GET /auth HTTP/1.1\r\nHost: auth\r\nX-Forwarded-Method: GET\r\n"); err != nil {
		t.Fatal(err)
	}
	// Trickle one more header byte every 50 ms, as slowloris does to look alive.
	stop := make(chan struct{})
	defer close(stop)
	go func() {
		tick := time.NewTicker(50 * time.Millisecond)
		defer tick.Stop()
		io.WriteString(conn, "X-Slow: ")
		for {
			select {
			case <-stop:
				return
			case <-tick.C:
				if _, err := io.WriteString(conn, "a"); err != nil {
					return
				}
			}
		}
	}()
	got, err := io.ReadAll(conn)
	took := time.Since(start)
	switch {
	case errors.Is(err, os.ErrDeadlineExceeded):
		t.Fatalf("slow client still connected after %v: got no cut, want one soon after --read-header-timeout %v (the whole-request timeout is %v)", took, headerTimeout, maxReadHeaderTimeout)
	case took < headerTimeout:
		t.Fatalf("slow client cut after %v (err %v, %q): want the cut no sooner than --read-header-timeout %v", took, err, got, headerTimeout)
	case strings.HasPrefix(string(got), "HTTP/1.1 200"):
		t.Fatalf("slow client served: %q", got)
	}
	t.Logf("slow client cut after %v (err %v, %d bytes)", took, err, len(got))

	// The same request, sent at once, is answered.
	resp, _ := rawExchange(t, addr, authRequest("X-Forwarded-Method: GET", "X-Forwarded-Uri: /v2/", basicLine("alice:alice-secret")))
	if resp.StatusCode != 200 {
		t.Errorf("quick client: got %d, want 200", resp.StatusCode)
	}
	stillServing(t, s)
}

// TestLongPasswordsAsApache: bcrypt reads the first 72 bytes of a password. The service
// accepts what Apache accepts (checked with Apache's own `htpasswd -v` on a hash made by
// `htpasswd -B` from a 100-byte password), and `registry-auth hash` refuses to make a hash
// of such a password, since its end would be ignored.
func TestLongPasswordsAsApache(t *testing.T) {
	t.Parallel()
	htpasswd, err := exec.LookPath("htpasswd")
	if err != nil {
		t.Fatalf("Apache's htpasswd is needed (Debian: apt-get install apache2-utils): %v", err)
	}
	password := strings.Repeat("0123456789", 10) // 100 bytes
	dir := t.TempDir()
	file := filepath.Join(dir, "htpasswd")
	if out, err := exec.Command(htpasswd, "-cbB", "-C", "4", file, "long", password).CombinedOutput(); err != nil {
		t.Fatalf("htpasswd -cbB: %v\n%s", err, out)
	}
	writeFile(t, filepath.Join(dir, "groups"), "")
	s := startService(t, nil, "--htpasswd", file, "--groups", filepath.Join(dir, "groups"))
	for _, tt := range []struct {
		name, password string
		want           int
	}{
		{"the whole password", password, 200},
		{"its first 72 bytes", password[:72], 200},
		{"72 bytes and another end", password[:72] + "something else", 200},
		{"its first 71 bytes", password[:71], 401},
		{"a change in byte 72", password[:71] + "x" + password[72:], 401},
	} {
		apache := exec.Command(htpasswd, "-vb", file, "long", tt.password).Run() == nil
		got := s.auth(t, "GET", "/v2/", "long", tt.password)
		if got != tt.want || apache != (tt.want == 200) {
			t.Errorf("%s: got %d (Apache accepts: %v), want %d as Apache", tt.name, got, apache, tt.want)
		}
	}
	var out strings.Builder
	err = program.Run(context.Background(), cli.Env{LookupEnv: func(string) (string, bool) { return "", false }, Stdin: strings.NewReader(password + "\n"), Stdout: &out, Stderr: io.Discard}, []string{"hash", "--cost", "4", "long"})
	if err == nil || !strings.Contains(err.Error(), "72") {
		t.Errorf("hash of a 100-byte password: got %v and %q, want a refusal naming the 72-byte limit", err, out.String())
	}
}

// TestServiceOnlyReadsFiles: no code of the binary can write, create, rename, remove or
// change a file (checked on the source of every package of the module it is built from:
// tests run as root here, so a read-only file would prove nothing), and a running service
// leaves its directory as it found it. The one writer, internal/editcmd/file.go, serves the
// user and group commands; its editor is unexported, so no other package can reach it.
func TestServiceOnlyReadsFiles(t *testing.T) {
	t.Parallel()
	writers := map[string]bool{
		"Create": true, "CreateTemp": true, "OpenFile": true, "WriteFile": true, "Remove": true,
		"RemoveAll": true, "Rename": true, "Chmod": true, "Chown": true, "Lchown": true,
		"Chtimes": true, "Truncate": true, "Mkdir": true, "MkdirAll": true, "MkdirTemp": true,
		"Symlink": true, "Link": true,
	}
	// The module's packages the binary imports, as the go command sees them.
	out, err := exec.Command("go", "list", "-deps", "-f", "{{if not .Standard}}{{.Module}} {{.Dir}}{{end}}", ".").Output()
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	var sources []string
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		if module, dir, _ := strings.Cut(line, " "); module == "github.com/registry-auth/registry-auth" {
			files, _ := filepath.Glob(filepath.Join(dir, "*.go"))
			sources = append(sources, files...)
		}
	}
	writer, err := filepath.Abs(filepath.Join("internal", "editcmd", "file.go"))
	if err != nil {
		t.Fatal(err)
	}
	checked := 0
	for _, name := range sources {
		if strings.HasSuffix(name, "_test.go") || name == writer {
			continue
		}
		file, err := parser.ParseFile(token.NewFileSet(), name, nil, 0)
		if err != nil {
			t.Fatal(err)
		}
		checked++
		ast.Inspect(file, func(n ast.Node) bool {
			sel, ok := n.(*ast.SelectorExpr)
			if !ok {
				return true
			}
			if pkg, ok := sel.X.(*ast.Ident); ok && (pkg.Name == "os" || pkg.Name == "ioutil") && writers[sel.Sel.Name] {
				t.Errorf("%s uses %s.%s: the service must only read files", name, pkg.Name, sel.Sel.Name)
			}
			return true
		})
	}
	if checked < 40 {
		t.Fatalf("checked only %d source files", checked)
	}

	f := newTestFiles(t, htpasswdLines(t, "alice", "alice-secret"), "pusher: alice\n")
	must(t, os.Chmod(f.htpasswd, 0o440))
	must(t, os.Chmod(f.groups, 0o440))
	before := snapshotDir(t, f.dir)
	s := startService(t, nil, "--htpasswd", f.htpasswd, "--groups", f.groups)
	if got := s.auth(t, "GET", "/v2/", "alice", "alice-secret"); got != 200 {
		t.Fatalf("got %d, want 200", got)
	}
	if got := s.auth(t, "GET", "/v2/", "alice", "wrong"); got != 401 {
		t.Fatalf("got %d, want 401", got)
	}
	if err := s.stop(); err != nil {
		t.Fatal(err)
	}
	if after := snapshotDir(t, f.dir); after != before {
		t.Errorf("the service changed its directory:\nbefore %s\nafter  %s", before, after)
	}
}

// snapshotDir describes every entry of dir: name, mode, size, modification time, content.
func snapshotDir(t *testing.T, dir string) string {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var b strings.Builder
	for _, e := range entries {
		info, err := e.Info()
		if err != nil {
			t.Fatal(err)
		}
		data, _ := os.ReadFile(filepath.Join(dir, e.Name()))
		fmt.Fprintf(&b, "%s %v %d %d %q; ", e.Name(), info.Mode(), info.Size(), info.ModTime().UnixNano(), data)
	}
	return b.String()
}

// TestFilePermissionWarnings: `check` and the service at start warn when other users may read
// or write the htpasswd file, and are silent when they may not.
func TestFilePermissionWarnings(t *testing.T) {
	t.Parallel()
	tests := []struct {
		mode         os.FileMode
		wantReadable bool
		wantWritable bool
	}{
		{0o600, false, false},
		{0o640, false, false},
		{0o660, false, false},
		{0o644, true, false},
		{0o604, true, false},
		{0o602, false, true},
		{0o666, true, true},
	}
	for _, tt := range tests {
		t.Run(tt.mode.String(), func(t *testing.T) {
			t.Parallel()
			f := newTestFiles(t, htpasswdLines(t, "alice", "alice-secret"), "pusher: alice\n")
			must(t, os.Chmod(f.htpasswd, tt.mode))

			var out strings.Builder
			lookup := func(string) (string, bool) { return "", false }
			err := program.Run(context.Background(), cli.Env{LookupEnv: lookup, Stdin: strings.NewReader(""), Stdout: &out, Stderr: io.Discard}, []string{"check", "--htpasswd", f.htpasswd, "--groups", f.groups})
			if err != nil {
				t.Fatalf("check: %v\n%s", err, out.String())
			}
			s := startService(t, nil, "--htpasswd", f.htpasswd, "--groups", f.groups)
			for where, text := range map[string]string{"check": out.String(), "start": s.logs.String()} {
				if got := strings.Contains(text, "readable by every user"); got != tt.wantReadable {
					t.Errorf("%s: got a readable warning %v, want %v:\n%s", where, got, tt.wantReadable, text)
				}
				if got := strings.Contains(text, "writable by every user"); got != tt.wantWritable {
					t.Errorf("%s: got a writable warning %v, want %v:\n%s", where, got, tt.wantWritable, text)
				}
			}
		})
	}
}
