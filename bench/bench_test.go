package main

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/registry-auth/registry-auth/e2e/harness"
)

// TestMain lets the test binary play the ceiling server, as the bench
// binary does: the harness starts os.Executable() with ceilingEnv set.
func TestMain(m *testing.M) {
	if addr := os.Getenv(ceilingEnv); addr != "" {
		ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
		err := serveCeiling(ctx, addr, os.Getenv(ceilingTLSEnv), os.Stdout)
		stop()
		if err != nil {
			fmt.Fprintln(os.Stderr, "ceiling:", err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// needTools stops the test when a program the harness drives is not installed:
// a failure in CI, a skip elsewhere (harness.Unavailable).
func needTools(t *testing.T) {
	t.Helper()
	if testing.Short() {
		t.Skip("starts Traefik, Apache and the registry: skipped in -short mode")
	}
	for _, tool := range []struct{ name, pkg string }{
		{"wrk", "wrk"}, {"apache2", "apache2"}, {"htpasswd", "apache2-utils"}, {"gnuplot", "gnuplot-nox"}, {"go", "golang-go"},
	} {
		harness.RequireTool(t, tool.name, tool.pkg)
	}
}

// syncBuffer is a bytes.Buffer safe for the harness's writers and a reader.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// TestSmoke runs the whole harness in a tiny mode: the Apache recipe, the
// ceiling and registry-auth, both with LDAP too, every workload, one-second
// loads, and checks that each measurement was taken without failures (the
// robot tokens' on registry-auth's htpasswd setups too), that slapd's binds
// were counted, and that the report and chart were written.
// It asserts nothing about speed.
func TestSmoke(t *testing.T) {
	needTools(t)
	// Setups 10 and 11's directory.
	harness.RequireTool(t, "slapd", "slapd")
	harness.RequireTool(t, "ldapadd", "ldap-utils")
	ctx, cancel := context.WithTimeout(context.Background(), 8*time.Minute)
	defer cancel()
	docs := t.TempDir()
	o, err := parseOptions([]string{
		"--setups=1,4,5,8,9,10,11",
		// Four connections: the Apache recipe at bcrypt cost 10 then answers
		// within the one-second runs.
		"--duration=1s", "--min-cycles=0", "--connections=4",
		"--pulls=1", "--push-mib=16", "--reloads=2",
		"--memory-users=300", "--logins=20",
		"--docs", docs,
	}, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	var out syncBuffer
	res, err := bench(ctx, o, &out)
	t.Logf("harness output:\n%s", out.String())
	if err != nil {
		t.Fatalf("bench: %v", err)
	}

	if got := len(res.Setups); got != 7 {
		t.Fatalf("got %d setups, want 7", got)
	}
	var withTokens []setupID
	for _, s := range res.Setups {
		if s.Manifest[tokens64] != nil {
			withTokens = append(withTokens, s.Setup)
		}
	}
	if want := []setupID{traefikRegistryAuth, traefikRegistryAuthTLS, traefikRegistryAuthPolicy}; !slices.Equal(withTokens, want) {
		t.Errorf("got the tokens workload on setups %v, want %v", withTokens, want)
	}
	for _, s := range res.Setups {
		if len(s.Errors) > 0 {
			t.Errorf("setup %d: errors %v", s.Setup, s.Errors)
		}
		if len(s.Checks) == 0 {
			t.Errorf("setup %d: no check passed", s.Setup)
		}
		for _, w := range s.Setup.workloads() {
			r := s.Manifest[w]
			switch {
			case r == nil:
				t.Errorf("setup %d, %s: not measured", s.Setup, w)
			case r.Requests == 0:
				t.Errorf("setup %d, %s: wrk completed no request", s.Setup, w)
			case r.StatusErr != 0 || r.TimeoutErr != 0:
				// A status of 400 or more means a misconfigured setup.
				t.Errorf("setup %d, %s: %s failed requests, want no error status and no timeout", s.Setup, w, r.failures())
			case r.errors()*100 > r.Requests:
				// Apache now and then resets a keep-alive connection
				// under wrk (a read error); more than 1% is a fault.
				t.Errorf("setup %d, %s: %s failed of %d requests, want under 1%%", s.Setup, w, r.failures(), r.Requests)
			}
		}
		if len(s.Pulls) != 1 {
			t.Errorf("setup %d: got %d pulls, want 1", s.Setup, len(s.Pulls))
		}
		if s.Push == nil || s.Push.Size != 16<<20 || s.Push.ProxyPeak <= 0 {
			t.Errorf("setup %d: push result %+v, want a 16 MiB push with the proxy's peak memory", s.Setup, s.Push)
		}
		apache := s.Setup == apacheRecipe || s.Setup == apacheLDAP
		if !apache && (s.Push == nil || s.Push.AuthPeak <= 0) {
			t.Errorf("setup %d: no peak memory of the auth process", s.Setup)
		}
		wantReloads := 0
		if s.Setup.measuresReload() {
			wantReloads = 2
		}
		if len(s.Reload) != wantReloads {
			t.Errorf("setup %d: %d reload samples, want %d", s.Setup, len(s.Reload), wantReloads)
		}
		// Over plain HTTP each manifest load opens connections to the auth
		// server; over HTTP/2 Traefik keeps the one it opened for the checks
		// and the warm-up, so a load may open none. Apache has no auth server.
		for _, w := range s.Setup.workloads() {
			n, ok := s.Connections[w]
			switch {
			case apache:
				if ok {
					t.Errorf("setup %d, %s: %d auth connections counted, want none (no auth server)", s.Setup, w, n)
				}
			case s.Setup.tlsHop():
				if !ok || n < 0 || n > 4 {
					t.Errorf("setup %d, %s: %d auth connections (counted %v), want 0 to 4 over HTTP/2", s.Setup, w, n, ok)
				}
			case !ok || n < 1:
				t.Errorf("setup %d, %s: %d auth connections (counted %v), want at least 1", s.Setup, w, n, ok)
			}
		}
		checkBinds(t, s)
		if s.Setup.measuresEdit() {
			if e := s.Edit; e == nil || e.Users != editUsers || e.AfterEditHashes != 0 || e.WarmP99 <= 0 {
				t.Errorf("setup %d: edit under load %+v, want %d users and 0 hashes after the edit", s.Setup, e, editUsers)
			}
		}
	}
	// Two servers, each loaded by wrk and at a fixed rate.
	if len(res.AuthAlone) != 4 {
		t.Errorf("got %d /auth-alone rows, want 4", len(res.AuthAlone))
	}
	for _, a := range res.AuthAlone {
		if a.Res.Requests == 0 || a.Res.errors() != 0 {
			t.Errorf("/auth alone, %s: %d requests, %s failed; want some and none failed", a.Name, a.Res.Requests, a.Res.failures())
		}
	}
	if m := res.Memory; m == nil || m.AfterLoad.RSS <= 0 || m.Users != 300 || m.Logins != 20 {
		t.Errorf("memory result %+v, want RSS for 300 users and 20 logins", m)
	}

	md, err := os.ReadFile(filepath.Join(docs, "BENCHMARKS.md"))
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		"## Machine", "## GET manifest, 64 users, bcrypt cost 10", "## GET manifest, 1 user, bcrypt cost 10",
		"## Pull of a 20-layer image", "## Push of a 16 MiB layer", "## The /auth endpoint alone",
		"| 1 | Apache recipe |", "| 5 | Traefik + registry-auth |", "| 8 | Traefik + registry-auth, TLS/HTTP/2 + client cert |",
		"## GET manifest, 64 tokens", "64 tokens vs 64 cached htpasswd users (cost 10), in this run: setup 5 ",
		"## GET manifest, 64 directory users (LDAP)", "| 10 | Apache recipe with mod_authnz_ldap |", "| 11 | Traefik + registry-auth with LDAP, TLS/HTTP/2 |",
		"## Edit under load", chartName,
	} {
		if !strings.Contains(string(md), want) {
			t.Errorf("BENCHMARKS.md lacks %q", want)
		}
	}
	svg, err := os.ReadFile(filepath.Join(docs, chartName))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Contains(svg, []byte("<svg")) || !bytes.Contains(svg, []byte("1 Apache")) || !bytes.Contains(svg, []byte("registry-auth")) || !bytes.Contains(svg, []byte("mod_authnz_ldap")) {
		t.Errorf("%s is not an SVG bar chart naming the setups:\n%.300s", chartName, svg)
	}
	if left := harness.Descendants(os.Getpid()); len(left) > 0 {
		t.Errorf("processes left running after the harness returned: %v", left)
	}
}

// checkBinds checks the bind counts of a directory setup (and that the
// others have none): present, over the whole directory, with the run's
// requests, and counting something (the warm-up's users are not all
// cached by the checks). For registry-auth it checks the cache's promise too,
// which is no speed: at most one user bind per credential per cache TTL.
func checkBinds(t *testing.T, s *setupResult) {
	t.Helper()
	b := s.Binds
	switch {
	case !s.Setup.directory():
		if b != nil {
			t.Errorf("setup %d: bind counts %+v, want none (no directory)", s.Setup, b)
		}
	case b == nil:
		t.Errorf("setup %d: no bind counts", s.Setup)
	case b.Credentials != directoryPeople || b.CacheTTL <= 0 || b.Session <= 0:
		t.Errorf("setup %d: bind counts %+v, want %d credentials, a cache TTL and a session length", s.Setup, b, directoryPeople)
	case s.Manifest[users64Directory] == nil || b.RunRequests != s.Manifest[users64Directory].Requests || b.RunRequests == 0:
		t.Errorf("setup %d: bind counts for %d requests, want the run's (%+v)", s.Setup, b.RunRequests, s.Manifest[users64Directory])
	case b.WarmUpUser < 1:
		t.Errorf("setup %d: %d user binds in the warm-up, want at least 1 (no user was cached before)", s.Setup, b.WarmUpUser)
	case s.Setup.usesRegistryAuth() && b.userBinds() > b.allowedUserBinds():
		t.Errorf("setup %d: %d user binds for %d credentials in %v with a cache TTL of %v, want at most %d", s.Setup, b.userBinds(), b.Credentials, b.Session, b.CacheTTL, b.allowedUserBinds())
	}
}

// cancelAfter is a writer that cancels a context a while after a line
// containing marker is written: an interrupt in the middle of whatever the
// harness is doing then.
type cancelAfter struct {
	syncBuffer
	marker string
	delay  time.Duration
	cancel context.CancelFunc
	once   sync.Once
}

func (c *cancelAfter) Write(p []byte) (int, error) {
	n, err := c.syncBuffer.Write(p)
	if strings.Contains(c.String(), c.marker) {
		c.once.Do(func() { time.AfterFunc(c.delay, c.cancel) })
	}
	return n, err
}

// TestInterruptStopsEverything cancels the run (as Ctrl-C does) while a
// setup runs and checks that the harness returns the cancellation
// and leaves no process of its own behind.
func TestInterruptStopsEverything(t *testing.T) {
	needTools(t)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	runCtx, interrupt := context.WithCancel(ctx)
	defer interrupt()
	o, err := parseOptions([]string{"--setups=1,5", "--workloads=manifest", "--duration=20s", "--docs", t.TempDir()}, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	// Six seconds into the Apache setup: it is starting, warming up its 64
	// users at bcrypt cost 10, or under wrk's load; all its processes run.
	out := &cancelAfter{marker: "setup 1:", delay: 6 * time.Second, cancel: interrupt}
	start := time.Now()
	_, err = bench(runCtx, o, out)
	t.Logf("harness output:\n%s", out.String())
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("bench returned %v, want context.Canceled", err)
	}
	if d := time.Since(start); d > 2*time.Minute {
		t.Errorf("bench took %v to return after the interrupt", d)
	}
	if left := harness.Descendants(os.Getpid()); len(left) > 0 {
		t.Errorf("processes left running after the interrupt: %v", left)
	}
	if _, err := os.Stat(filepath.Join(o.docsDir, "BENCHMARKS.md")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("an interrupted run wrote a report (stat: %v), want none", err)
	}
}

// TestBigLayer checks the pushed blob's reader: the right length, stamped
// blocks that differ between seeds, and the digest announced up front.
func TestBigLayer(t *testing.T) {
	tests := []struct {
		name string
		size int64
	}{
		{"one byte", 1},
		{"exactly one block", bigBlock},
		{"blocks and a partial one", 3*bigBlock + 12345},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a, err := newBigLayer(tt.size, 1)
			if err != nil {
				t.Fatal(err)
			}
			rc, err := a.Compressed()
			if err != nil {
				t.Fatal(err)
			}
			h := sha256.New()
			n, err := io.Copy(h, rc)
			if err != nil {
				t.Fatal(err)
			}
			if n != tt.size {
				t.Errorf("got %d bytes, want %d", n, tt.size)
			}
			d, _ := a.Digest()
			if got := fmt.Sprintf("%x", h.Sum(nil)); got != d.Hex {
				t.Errorf("content hashes to %s, digest says %s", got, d.Hex)
			}
			b, err := newBigLayer(tt.size, 2)
			if err != nil {
				t.Fatal(err)
			}
			if db, _ := b.Digest(); db == d {
				t.Errorf("seeds 1 and 2 give the same blob %s", d)
			}
		})
	}
}

// TestParseWrk reads the summary line the Lua script prints.
func TestParseWrk(t *testing.T) {
	out := []byte("Running 1s test @ https://127.0.0.1:1\n" +
		`WRKJSON {"requests":1200,"duration_us":2000000,"connect_err":0,"read_err":1,"write_err":0,"status_err":2,"timeout_err":0,"p50_us":1500,"p90_us":2000,"p99_us":4100,"max_us":9000}` + "\n")
	r, err := parseWrk(out)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := r.RPS(), 600.0; got != want {
		t.Errorf("RPS: got %v, want %v", got, want)
	}
	if got, want := r.P99(), 4100*time.Microsecond; got != want {
		t.Errorf("P99: got %v, want %v", got, want)
	}
	if got, want := r.failures(), "3 (read 1, status≥400 2)"; got != want {
		t.Errorf("failures: got %q, want %q", got, want)
	}
	if _, err := parseWrk([]byte("Running 1s test\n")); err == nil {
		t.Error("no summary line: got no error, want one")
	}
}

// TestLoopbackOnly is the guard every load goes through.
func TestLoopbackOnly(t *testing.T) {
	tests := []struct {
		url  string
		want bool
	}{
		{"https://127.0.0.1:5043/v2/", true},
		{"http://127.0.1.9:80/auth", true},
		{"http://[::1]:8080/auth", true},
		{"https://localhost:5043/v2/", false}, // a name could resolve anywhere
		{"https://10.0.0.1:5043/v2/", false},
		{"https://example.com/v2/", false},
	}
	for _, tt := range tests {
		if got := loopbackOnly(tt.url) == nil; got != tt.want {
			t.Errorf("loopbackOnly(%q) allowed=%v, want %v", tt.url, got, tt.want)
		}
	}
}

// TestBindResult checks the bound of the bind target and the rate per
// 1,000 requests.
func TestBindResult(t *testing.T) {
	tests := []struct {
		name        string
		b           bindResult
		wantAllowed int
		wantPerK    float64 // of 5 binds
	}{
		{"session shorter than the TTL: one per credential", bindResult{Credentials: 64, CacheTTL: 5 * time.Minute, Session: 20 * time.Second, RunRequests: 10000}, 64, 0.5},
		{"session of exactly one TTL", bindResult{Credentials: 64, CacheTTL: time.Minute, Session: time.Minute, RunRequests: 1000}, 64, 5},
		{"session into a second TTL", bindResult{Credentials: 10, CacheTTL: time.Minute, Session: 61 * time.Second, RunRequests: 1000}, 20, 5},
		{"no cache: no bind is free", bindResult{Credentials: 64, Session: time.Second}, 0, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := tt.b.allowedUserBinds(); got != tt.wantAllowed {
				t.Errorf("allowedUserBinds: got %d, want %d", got, tt.wantAllowed)
			}
			if got := tt.b.perThousand(5); got != tt.wantPerK {
				t.Errorf("perThousand(5): got %v, want %v", got, tt.wantPerK)
			}
		})
	}
}
