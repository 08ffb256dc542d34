package main

import (
	"bufio"
	"context"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/registry-auth/registry-auth/internal/cli"
)

// runningService is `registry-auth serve` started through run, as main would.
type runningService struct {
	url  string
	logs *lockedBuffer
	stop func() error // cancels the context and returns run's error
}

// startService runs serve with args until the test ends, and waits for its listening line.
func startService(t *testing.T, env map[string]string, args ...string) *runningService {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	pr, pw := io.Pipe()
	logs := &lockedBuffer{}
	addr := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(pr)
		for sc.Scan() {
			logs.Write(append(sc.Bytes(), '\n'))
			var line struct {
				Msg, Addr string
				TLS       bool `json:"tls"`
			}
			if json.Unmarshal(sc.Bytes(), &line) == nil && line.Msg == "listening" {
				if line.TLS {
					addr <- "https://" + line.Addr
				} else {
					addr <- "http://" + line.Addr
				}
			}
		}
	}()
	done := make(chan error, 1)
	lookup := func(k string) (string, bool) { v, ok := env[k]; return v, ok }
	go func() {
		done <- program.Run(ctx, cli.Env{LookupEnv: lookup, Stdin: strings.NewReader(""), Stdout: io.Discard, Stderr: pw}, append([]string{"serve", "--listen", "127.0.0.1:0"}, args...))
		pw.Close()
	}()
	s := &runningService{logs: logs}
	stopped := false
	var runErr error
	s.stop = func() error {
		if !stopped {
			stopped = true
			cancel()
			runErr = <-done
		}
		return runErr
	}
	t.Cleanup(func() { s.stop() })
	select {
	case a := <-addr:
		s.url = a
	case err := <-done:
		stopped = true
		t.Fatalf("serve ended before listening: %v\n%s", err, logs)
	case <-time.After(10 * time.Second):
		t.Fatalf("serve did not listen within 10s\n%s", logs)
	}
	return s
}

func (s *runningService) auth(t *testing.T, method, uri, user, password string) int {
	t.Helper()
	req, _ := http.NewRequest("GET", s.url+"/auth", nil)
	req.Header.Set("X-Forwarded-Method", method)
	req.Header.Set("X-Forwarded-Uri", uri)
	req.SetBasicAuth(user, password)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return resp.StatusCode
}

// TestServeEndToEnd drives the real run: flags and environment, files, decisions, health,
// metrics, a live edit, and a graceful stop.
func TestServeEndToEnd(t *testing.T) {
	t.Parallel()
	f := newTestFiles(t, htpasswdLines(t, "alice", "alice-secret", "bob", "bob-secret"), "builders: alice\n")
	env := map[string]string{
		"REGISTRY_AUTH_HTPASSWD":   f.htpasswd,
		"REGISTRY_AUTH_GROUPS":     f.groups,
		"REGISTRY_AUTH_PUSH_GROUP": "builders", // from the environment
		"REGISTRY_AUTH_REALM":      "overridden by the flag",
	}
	s := startService(t, env, "--realm", "Flag Realm", "--log-level", "debug")

	if got := s.auth(t, "PUT", "/v2/app/manifests/1", "alice", "alice-secret"); got != 200 {
		t.Errorf("builder push: got %d, want 200", got)
	}
	if got := s.auth(t, "PUT", "/v2/app/manifests/1", "bob", "bob-secret"); got != 403 {
		t.Errorf("reader push: got %d, want 403", got)
	}
	req, _ := http.NewRequest("GET", s.url+"/auth", nil)
	req.Header.Set("X-Forwarded-Method", "GET")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if got := resp.Header.Get("WWW-Authenticate"); got != `Basic realm="Flag Realm"` {
		t.Errorf("got challenge %q, want the flag's realm", got)
	}

	// Users edited while it runs: the new one gets in, the removed one is refused.
	writeFile(t, f.htpasswd+".tmp", htpasswdLines(t, "alice", "alice-secret", "carol", "carol-secret"))
	must(t, os.Rename(f.htpasswd+".tmp", f.htpasswd))
	waitFor(t, reloadDeadline, "carol to be accepted", func() bool {
		return s.auth(t, "GET", "/v2/", "carol", "carol-secret") == 200
	})
	if got := s.auth(t, "GET", "/v2/", "bob", "bob-secret"); got != 401 {
		t.Errorf("removed user: got %d, want 401", got)
	}

	for path, want := range map[string]string{
		"/healthz": "ok",
		"/readyz":  "ready",
		"/metrics": `registry_auth_decisions_total{reason="granted",result="allowed"} 1`,
	} {
		resp, err := http.Get(s.url + path)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 || !strings.Contains(string(body), want) {
			t.Errorf("%s: got %d, want 200 with %q", path, resp.StatusCode, want)
		}
	}
	if err := s.stop(); err != nil {
		t.Errorf("stop: got %v, want nil", err)
	}
	if _, err := http.Get(s.url + "/healthz"); err == nil {
		t.Error("still serving after stop")
	}
	for _, secret := range []string{"alice-secret", "bob-secret", "carol-secret"} {
		if strings.Contains(s.logs.String(), secret) {
			t.Errorf("log holds %q", secret)
		}
	}
}

// TestServeStartErrors: what stops the service at start, and that the message says how to fix it.
func TestServeStartErrors(t *testing.T) {
	t.Parallel()
	good := newTestFiles(t, htpasswdLines(t, "bob", "bob-secret"), "pusher: bob\n")
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { busy.Close() }) // not defer: the parallel subtests run after this function returns
	unusable := filepath.Join(good.dir, "unusable")
	writeFile(t, unusable, "# only lines the service skips\nalice\nbob:not-a-hash\n")
	tests := []struct {
		name   string
		args   []string
		want   string
		refuse string // must not be in the error
	}{
		{"missing htpasswd", []string{"--htpasswd", good.dir + "/nope"}, "cannot start: reading the htpasswd file", ""},
		// The users are fine: the message must not blame them.
		{"missing groups", []string{"--htpasswd", good.htpasswd, "--groups", good.dir + "/nope"}, "cannot start: reading the groups file", "without users"},
		// The lines skipped are named, as check names them.
		{"no usable line", []string{"--htpasswd", unusable, "--groups", good.groups}, "no usable users; skipped line 2: ", ""},
		{"busy port", []string{"--htpasswd", good.htpasswd, "--groups", good.groups, "--listen", busy.Addr().String()}, "cannot listen", ""},
		{"bad listen", []string{"--htpasswd", good.htpasswd, "--listen", "8080"}, "want host:port", ""},
		{"unknown flag", []string{"--nope"}, "flag provided but not defined", ""},
		{"stray argument", []string{"--htpasswd", good.htpasswd, "extra"}, "unexpected argument", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			lookup := func(string) (string, bool) { return "", false }
			err := program.Run(ctx, cli.Env{LookupEnv: lookup, Stdin: strings.NewReader(""), Stdout: io.Discard, Stderr: io.Discard}, append([]string{"serve"}, tt.args...))
			if err == nil || !strings.Contains(err.Error(), tt.want) || (tt.refuse != "" && strings.Contains(err.Error(), tt.refuse)) {
				t.Errorf("got %v, want an error containing %q (and not %q)", err, tt.want, tt.refuse)
			}
		})
	}
}

// TestServeWithoutGroupsWarns: an empty --groups runs, warns, and lets nobody push.
func TestServeWithoutGroupsWarns(t *testing.T) {
	t.Parallel()
	f := newTestFiles(t, htpasswdLines(t, "bob", "bob-secret"), "")
	s := startService(t, map[string]string{"REGISTRY_AUTH_GROUPS": ""}, "--htpasswd", f.htpasswd)
	if !strings.Contains(s.logs.String(), "nobody can push") {
		t.Errorf("no warning about the missing groups file in:\n%s", s.logs)
	}
	if got := s.auth(t, "POST", "/v2/app/blobs/uploads/", "bob", "bob-secret"); got != 403 {
		t.Errorf("push without groups: got %d, want 403", got)
	}
}

// TestShutdownDelay: with --shutdown-delay, a stopping service first answers /readyz 503 (a
// load balancer that checks it leaves the instance out) while it still decides /auth, and
// stops only after the delay.
func TestShutdownDelay(t *testing.T) {
	t.Parallel()
	f := newTestFiles(t, htpasswdLines(t, "alice", "alice-secret"), "pusher: alice\n")
	const delay = 3 * time.Second
	s := startService(t, nil, "--htpasswd", f.htpasswd, "--groups", f.groups, "--shutdown-delay", delay.String())
	readyz := func() int {
		resp, err := http.Get(s.url + "/readyz")
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	if got := readyz(); got != http.StatusOK {
		t.Fatalf("/readyz before the stop: got %d, want 200", got)
	}
	stopped := make(chan error, 1)
	began := time.Now()
	go func() { stopped <- s.stop() }()
	waitFor(t, 2*time.Second, "/readyz to answer 503", func() bool { return readyz() == http.StatusServiceUnavailable })
	if got := s.auth(t, "GET", "/v2/app/manifests/1", "alice", "alice-secret"); got != http.StatusOK {
		t.Errorf("/auth while draining: got %d, want 200", got)
	}
	if err := <-stopped; err != nil {
		t.Errorf("serve: %v", err)
	}
	if took := time.Since(began); took < delay {
		t.Errorf("stopped after %v, want no sooner than --shutdown-delay %v", took, delay)
	}
	if !strings.Contains(s.logs.String(), `"msg":"draining`) {
		t.Errorf("no draining line in the log:\n%s", s.logs)
	}
}
