package main

import (
	"io"
	"log/slog"
	"os"
	"regexp"
	"testing"
	"time"

	"github.com/registry-auth/registry-auth/internal/ldap"
)

// TestAlertRulesNameRealMetrics: every registry_auth_* metric that
// deploy/prometheus/alerts.yml queries is one the service exports (a renamed metric would
// leave its alert silent for ever). e2e/alerts_test.go checks the rules with promtool.
func TestAlertRulesNameRealMetrics(t *testing.T) {
	t.Parallel()
	rules, err := os.ReadFile("deploy/prometheus/alerts.yml")
	if err != nil {
		t.Fatal(err)
	}
	f := newTestFiles(t, htpasswdLines(t, "alice", "a"), "pusher: alice\n")
	st, m := newTestStore(t, f, time.Minute, io.Discard)
	if err := st.reload("test"); err != nil {
		t.Fatal(err)
	}
	// The directory's gauge exists only with a directory.
	dir, err := ldap.New(ldap.Config{URL: "ldap://127.0.0.1:1/dc=example,dc=com", Timeout: time.Second, GroupFilter: ldap.DefaultGroupFilter, GroupNameAttr: "cn"},
		slog.New(slog.DiscardHandler), m.registry)
	if err != nil {
		t.Fatal(err)
	}
	defer dir.Close()
	families, err := m.registry.Gather()
	if err != nil {
		t.Fatal(err)
	}
	exported := map[string]bool{}
	for _, f := range families {
		exported[f.GetName()] = true
	}
	queried := regexp.MustCompile(`registry_auth_[a-z_]+`).FindAllString(string(rules), -1)
	if len(queried) < 5 {
		t.Fatalf("found %d metric names in the rules, want the five or more they query", len(queried))
	}
	for _, name := range queried {
		if !exported[name] {
			t.Errorf("deploy/prometheus/alerts.yml queries %s, which the service does not export", name)
		}
	}
}
