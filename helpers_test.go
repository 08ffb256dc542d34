package main

import (
	"bytes"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"

	"github.com/registry-auth/registry-auth/internal/htpasswd/htpasswdtest"
)

// waitFor polls cond until it holds or timeout passes, and returns how long it took.
func waitFor(t testing.TB, timeout time.Duration, what string, cond func() bool) time.Duration {
	t.Helper()
	start := time.Now()
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	for !cond() {
		select {
		case <-deadline.C:
			t.Fatalf("waited %v for %s", timeout, what)
		case <-tick.C:
		}
	}
	return time.Since(start)
}

// htpasswdLines makes an htpasswd file body from user, password pairs.
func htpasswdLines(t testing.TB, userPasswords ...string) string {
	t.Helper()
	var b strings.Builder
	for i := 0; i+1 < len(userPasswords); i += 2 {
		fmt.Fprintf(&b, "%s:%s\n", userPasswords[i], htpasswdtest.Hash(t, userPasswords[i+1]))
	}
	return b.String()
}

// writeFile writes data to path atomically enough for a test that has no watcher running.
func writeFile(t testing.TB, path, data string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(data), 0o600); err != nil {
		t.Fatal(err)
	}
}

// lockedBuffer is a bytes.Buffer safe for the concurrent writes of a logger.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// testFiles is an htpasswd and groups pair in a temp directory, and a policy file when
// policy is set, a tokens file when tokens is.
type testFiles struct {
	dir, htpasswd, groups, policy, tokens string
}

func newTestFiles(t testing.TB, htpasswd, groups string) testFiles {
	t.Helper()
	dir := t.TempDir()
	f := testFiles{dir: dir, htpasswd: filepath.Join(dir, "htpasswd"), groups: filepath.Join(dir, "groups")}
	writeFile(t, f.htpasswd, htpasswd)
	writeFile(t, f.groups, groups)
	return f
}

// testConfig is a serve config for files f with the given cache TTL.
func testConfig(f testFiles, cacheTTL time.Duration) config {
	return config{
		listen:    "127.0.0.1:0",
		files:     sources{htpasswd: f.htpasswd, groups: f.groups, policy: f.policy, tokens: f.tokens, pushGroup: "pusher"},
		realm:     "Test Realm",
		cacheTTL:  cacheTTL,
		cacheSize: 1000,
		logFormat: "json",
		throttle:  throttleConfig{window: time.Minute, maxKeys: 100},
		// Tests run side by side on a loaded machine: a wait of 3 s could end in a 503.
		hashBudget: hashBudgetConfig{slots: 2, maxWait: time.Minute},
	}
}

// newTestStore loads f into a store whose log goes to logs (or nowhere when logs is nil).
func newTestStore(t testing.TB, f testFiles, cacheTTL time.Duration, logs io.Writer) (*store, *metrics) {
	t.Helper()
	if logs == nil {
		logs = io.Discard
	}
	m := newMetrics()
	st := newStore(testConfig(f, cacheTTL), slog.New(slog.NewJSONHandler(logs, nil)), m)
	if err := st.reload("test"); err != nil {
		t.Fatal(err)
	}
	return st, m
}

// testFileSet is what the loader reads from an htpasswd file and a groups file (no groups
// file when groupsName is empty), for buildSnapshot.
func testFileSet(htpasswdName string, htpasswd []byte, groupsName string, groups []byte) fileSet {
	set := fileSet{files: []loadedFile{{role: roleHTPasswd, path: htpasswdName, data: htpasswd}}}
	if groupsName != "" {
		set.files = append(set.files, loadedFile{role: roleGroups, path: groupsName, data: groups})
	}
	return set
}

// testAuthHandler is the /auth handler over st (whose policy is the push group "pusher"), the realm
// "Test Realm", no throttle, and its log going to logs (nowhere when nil).
func testAuthHandler(st *store, m *metrics, logs io.Writer) *authHandler {
	if logs == nil {
		logs = io.Discard
	}
	return &authHandler{
		store:   st,
		realm:   "Test Realm",
		logger:  slog.New(slog.NewJSONHandler(logs, nil)),
		metrics: m,
	}
}

// metricFamily is the family name as m's registry gathers it; the test fails without one.
func metricFamily(t testing.TB, m *metrics, name string) *dto.MetricFamily {
	t.Helper()
	families, err := m.registry.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range families {
		if f.GetName() == name {
			return f
		}
	}
	t.Fatalf("no %s", name)
	return nil
}
