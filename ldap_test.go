package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/registry-auth/registry-auth/internal/authn"
	"github.com/registry-auth/registry-auth/internal/ldap"
)

// directoryTest is an /auth handler over a real slapd, a robot in the htpasswd file and a
// groups file.
type directoryTest struct {
	h      *authHandler
	st     *store
	logs   *lockedBuffer
	secret string // the service account's password file
}

// directoryOptions change the defaults of newDirectoryTest.
type directoryOptions struct {
	url       string // default: plain LDAP on slapd, base dc=example,dc=com
	startTLS  bool
	caFile    string
	pushGroup string // default pusher
	policy    string // a policy file's YAML; empty: the built-in rule
	htpasswd  bool   // false: --htpasswd "" (the directory alone)
	groups    string
	perUser   int // throttle's per-user limit; 0: off
}

func newDirectoryTest(t *testing.T, s *slapdServer, o directoryOptions) *directoryTest {
	t.Helper()
	f := newTestFiles(t, htpasswdLines(t, "robot", "robot-file-secret"), o.groups)
	if !o.htpasswd {
		f.htpasswd = ""
	}
	if o.policy != "" {
		f.policy = filepath.Join(f.dir, "policy.yaml")
		writeFile(t, f.policy, o.policy)
	}
	cfg := testConfig(f, time.Hour)
	cfg.files.pushGroup = cmpOr(o.pushGroup, "pusher")
	cfg.files.directory = true
	secret := filepath.Join(f.dir, "ldap-secret")
	writeFile(t, secret, testReaderPW+"\n")
	cfg.ldap = testLDAPConfig(cmpOr(o.url, s.url+testBaseDN+"?uid?sub?(objectClass=inetOrgPerson)"), secret)
	cfg.ldap.StartTLS, cfg.ldap.CAFile = o.startTLS, o.caFile
	logs := &lockedBuffer{}
	logger := slog.New(slog.NewJSONHandler(logs, nil))
	m := newMetrics()
	st := newStore(cfg, logger, m)
	dir, err := ldap.New(cfg.ldap, logger, m.registry)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(dir.Close)
	st.backends = append(st.backends, dir)
	if err := st.reload("test"); err != nil {
		t.Fatal(err)
	}
	h := testAuthHandler(st, m, logs)
	if o.perUser > 0 {
		h.store.throttle = newThrottle(throttleConfig{window: time.Minute, perUser: o.perUser, maxKeys: 100})
	}
	return &directoryTest{h: h, st: st, logs: logs, secret: secret}
}

// testLDAPConfig is the tests' directory settings: url, the service account cn=reader
// with its password in secretFile, the groups under ou=groups nested 10 deep.
func testLDAPConfig(url, secretFile string) ldap.Config {
	return ldap.Config{
		URL: url, BindDN: testReaderDN, BindPasswordFile: secretFile,
		Timeout: 2 * time.Second, GroupBase: testGroupBase, GroupFilter: ldap.DefaultGroupFilter,
		GroupNameAttr: "cn", GroupDepth: 10,
	}
}

// ask sends one forwardAuth request and returns the status, the user handed to the registry,
// and the decision's reason from the log line.
func (d *directoryTest) ask(t *testing.T, method, uri, user, password string) *http.Response {
	t.Helper()
	r := httptest.NewRequest("GET", "/auth", nil)
	for k, vs := range hdr(method, uri, basic(user, password)) {
		r.Header[k] = vs
	}
	w := httptest.NewRecorder()
	d.h.ServeHTTP(w, r)
	return w.Result()
}

// lastReason is the reason of the last decision logged.
func (d *directoryTest) lastReason(t *testing.T) string {
	t.Helper()
	lines := strings.Split(strings.TrimSpace(d.logs.String()), "\n")
	for i := len(lines) - 1; i >= 0; i-- {
		var l map[string]any
		if json.Unmarshal([]byte(lines[i]), &l) == nil && l["msg"] == "decision" {
			s, _ := l["reason"].(string)
			return s
		}
	}
	return ""
}

const (
	pullURI = "/v2/team/app/manifests/v1"
)

// TestDirectoryDecisions: users and groups from a real slapd beside a robot of the htpasswd
// file, through the handler.
func TestDirectoryDecisions(t *testing.T) {
	t.Parallel()
	s := startSlapd(t)
	d := newDirectoryTest(t, s, directoryOptions{htpasswd: true, groups: "pusher: robot\nreleasers: Dave\n"})
	tests := []struct {
		name, method, user, password string
		status                       int
		wantUser, reason             string
	}{
		{"directory user pulls", "GET", "alice", "alice-dir-secret", 200, "alice", "granted"},
		{"directory pusher pushes", "PUT", "alice", "alice-dir-secret", 200, "alice", "granted"},
		{"directory user outside the push group may not push", "PUT", "bob", "bob-dir-secret", 403, "", "not_granted"},
		{"wrong password", "GET", "alice", "wrong", 401, "", "wrong_password"},
		{"unknown user", "GET", "nobody", "whatever", 401, "", "unknown_user"},
		{"empty password never binds", "GET", "alice", "", 401, "", "empty_password"},
		{"filter injection: *", "GET", "*", "alice-dir-secret", 401, "", "unknown_user"},
		{"filter injection: )(uid=*", "GET", "alice)(uid=*", "alice-dir-secret", 401, "", "unknown_user"},
		{"filter injection: backslash", "GET", `\`, "alice-dir-secret", 401, "", "unknown_user"},
		{"filter injection: )(|(uid=*", "GET", "*)(|(uid=*", "twin-secret", 401, "", "unknown_user"},
		{"a name with two entries is refused", "GET", "twin", "twin-dir-secret", 401, "", "ambiguous_user"},
		{"case differs: the directory's spelling is returned", "GET", "dave", "Dave-dir-secret", 200, "Dave", "granted"},
		{"groups file groups apply to the directory's name", "PUT", "DAVE", "Dave-dir-secret", 403, "", "not_granted"},
		{"robot of the file", "PUT", "robot", "robot-file-secret", 200, "robot", "granted"},
		{"robot's directory password: the file decides", "GET", "robot", "robot-dir-secret", 401, "", "wrong_password"},
		{"the file's name spelt otherwise: no push as the file's robot", "PUT", "ROBOT", "robot-dir-secret", 403, "", "name_collision"},
		{"the file's name spelt otherwise: no pull either", "GET", "Robot", "robot-dir-secret", 403, "", "name_collision"},
		{"the file's name spelt otherwise, wrong password", "GET", "ROBOT", "wrong", 401, "", "wrong_password"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			resp := d.ask(t, tt.method, pullURI, tt.user, tt.password)
			if resp.StatusCode != tt.status || resp.Header.Get("X-Forwarded-User") != tt.wantUser || d.lastReason(t) != tt.reason {
				t.Errorf("got %d user %q reason %q, want %d user %q reason %q", resp.StatusCode, resp.Header.Get("X-Forwarded-User"), d.lastReason(t), tt.status, tt.wantUser, tt.reason)
			}
		})
	}
	if !strings.Contains(d.logs.String(), "several entries for this name") {
		t.Error("got no log line for the name with two entries, want one")
	}
	if strings.Contains(d.logs.String(), "dir-secret") || strings.Contains(d.logs.String(), testReaderPW) {
		t.Error("a password reached the log")
	}
}

// TestDirectoryGroups: directory groups by name, by DN, nested, in a policy and as the push
// group; a groups-file group for a directory user.
func TestDirectoryGroups(t *testing.T) {
	t.Parallel()
	s := startSlapd(t)
	tests := []struct {
		name     string
		o        directoryOptions
		user     string
		wantPush bool
	}{
		{"push group by name", directoryOptions{}, "alice", true},
		{"push group by name, not a member", directoryOptions{}, "bob", false},
		{"push group as a DN, spelt otherwise", directoryOptions{pushGroup: "CN=Pusher, ou=groups,dc=example,dc=com"}, "alice", true},
		{"push group as a DN, not a member", directoryOptions{pushGroup: "cn=pusher,ou=groups,dc=example,dc=com"}, "bob", false},
		{"nested group in the push group", directoryOptions{pushGroup: "builders"}, "bob", true},
		{"nested group, not a member", directoryOptions{pushGroup: "builders"}, "alice", false},
		{"groups file gives a directory user a group", directoryOptions{groups: "pusher: bob\n"}, "bob", true},
		{"policy grants by directory group", directoryOptions{policy: "rules:\n  - subjects: [group:Builders]\n    repositories: [\"team/**\"]\n    actions: [pull, push]\n  - subjects: [authenticated]\n    repositories: [\"**\"]\n    actions: [pull]\n"}, "bob", true},
		{"policy grants by directory group DN", directoryOptions{policy: "rules:\n  - subjects: [\"group:cn=pusher,ou=groups,dc=example,dc=com\"]\n    repositories: [\"team/**\"]\n    actions: [pull, push]\n"}, "alice", true},
		{"policy by directory group, not a member", directoryOptions{policy: "rules:\n  - subjects: [group:builders]\n    repositories: [\"team/**\"]\n    actions: [pull, push]\n  - subjects: [authenticated]\n    repositories: [\"**\"]\n    actions: [pull]\n"}, "alice", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := newDirectoryTest(t, s, tt.o)
			want := map[bool]int{true: 200, false: 403}[tt.wantPush]
			if resp := d.ask(t, "PUT", pullURI, tt.user, tt.user+"-dir-secret"); resp.StatusCode != want {
				t.Errorf("push: got %d (%s), want %d", resp.StatusCode, d.lastReason(t), want)
			}
		})
	}
}

// TestDirectoryOutage: with slapd stopped, a cached user still pulls, an uncached one gets
// 503 UNAVAILABLE with Retry-After and no throttle count; restarted on the same port, it is
// used again without restarting the service.
func TestDirectoryOutage(t *testing.T) {
	t.Parallel()
	s := startSlapd(t)
	d := newDirectoryTest(t, s, directoryOptions{perUser: 1})
	if resp := d.ask(t, "GET", pullURI, "alice", "alice-dir-secret"); resp.StatusCode != 200 {
		t.Fatalf("before the outage: got %d, want 200", resp.StatusCode)
	}
	s.stop()
	if resp := d.ask(t, "GET", pullURI, "alice", "alice-dir-secret"); resp.StatusCode != 200 {
		t.Errorf("cached user during the outage: got %d, want 200", resp.StatusCode)
	}
	for i := range 3 { // the throttle allows 1 failure per user: a 503 is none
		resp := d.ask(t, "GET", pullURI, "bob", "bob-dir-secret")
		body, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != 503 || resp.Header.Get("Retry-After") == "" || !strings.Contains(string(body), `"code":"UNAVAILABLE"`) {
			t.Errorf("uncached user during the outage, try %d: got %d Retry-After %q body %s, want 503 with Retry-After and UNAVAILABLE", i+1, resp.StatusCode, resp.Header.Get("Retry-After"), body)
		}
	}
	if got := ldapUp(t, d.h.metrics); got != 0 {
		t.Errorf("registry_auth_ldap_up during the outage: got %v, want 0", got)
	}
	if n := strings.Count(d.logs.String(), "cannot be asked"); n != 1 {
		t.Errorf("got %d outage lines, want 1", n)
	}
	s.start()
	if resp := d.ask(t, "GET", pullURI, "bob", "bob-dir-secret"); resp.StatusCode != 200 {
		t.Errorf("after the restart: got %d (%s), want 200", resp.StatusCode, d.lastReason(t))
	}
	if got := ldapUp(t, d.h.metrics); got != 1 {
		t.Errorf("registry_auth_ldap_up after the restart: got %v, want 1", got)
	}
	if n := strings.Count(d.logs.String(), "answers again"); n != 1 {
		t.Errorf("got %d recovery lines, want 1", n)
	}
}

// TestDirectoryCache: a verdict is remembered (one search and bind per credential and TTL),
// failures are not, SIGHUP forgets.
func TestDirectoryCache(t *testing.T) {
	t.Parallel()
	s := startSlapd(t)
	d := newDirectoryTest(t, s, directoryOptions{})
	verify := func(password string) verification {
		t.Helper()
		v, err := d.st.verify(context.Background(), d.st.snapshot(), authn.Credential{Client: "192.0.2.1", User: "alice", Password: []byte(password)})
		if err != nil {
			t.Fatal(err)
		}
		return v
	}
	for i, tt := range []struct {
		password string
		signal   bool
		ok, hit  bool
	}{
		{"alice-dir-secret", false, true, false},
		{"alice-dir-secret", false, true, true},
		{"wrong", false, false, false},
		{"wrong", false, false, false}, // failures are not remembered
		{"alice-dir-secret", true, true, false},
		{"alice-dir-secret", false, true, true},
	} {
		if tt.signal {
			d.st.reload("signal")
		}
		if v := verify(tt.password); v.ok != tt.ok || v.cacheHit != tt.hit {
			t.Errorf("step %d: got ok %v hit %v, want ok %v hit %v", i+1, v.ok, v.cacheHit, tt.ok, tt.hit)
		}
	}
}

// TestDirectoryBindPasswordFile: the service account's password file is read again when it
// changes, without a restart.
func TestDirectoryBindPasswordFile(t *testing.T) {
	t.Parallel()
	s := startSlapd(t)
	d := newDirectoryTest(t, s, directoryOptions{})
	writeFile(t, d.secret, "not-the-password")
	if resp := d.ask(t, "GET", pullURI, "alice", "alice-dir-secret"); resp.StatusCode != 503 {
		t.Errorf("wrong service password: got %d, want 503", resp.StatusCode)
	}
	if !strings.Contains(d.logs.String(), "--ldap-bind-password-file") {
		t.Error("the log does not say to check the password file")
	}
	// Rotated in the directory and in the file.
	s.modify("dn: " + testReaderDN + "\nchangetype: modify\nreplace: userPassword\nuserPassword: rotated-secret\n")
	writeFile(t, d.secret, "rotated-secret\n")
	if resp := d.ask(t, "GET", pullURI, "alice", "alice-dir-secret"); resp.StatusCode != 200 {
		t.Errorf("after the rotation: got %d (%s), want 200", resp.StatusCode, d.lastReason(t))
	}
}

// TestDirectoryTLS: StartTLS and ldaps with the test CA; without the CA, nothing is trusted.
func TestDirectoryTLS(t *testing.T) {
	t.Parallel()
	s := startSlapd(t)
	base := testBaseDN + "?uid?sub"
	tests := []struct {
		name   string
		o      directoryOptions
		status int
	}{
		{"StartTLS", directoryOptions{url: s.url + base, startTLS: true, caFile: s.caFile}, 200},
		{"ldaps", directoryOptions{url: s.ldapsURL + base, caFile: s.caFile}, 200},
		{"ldaps without the CA", directoryOptions{url: s.ldapsURL + base}, 503},
		{"StartTLS without the CA", directoryOptions{url: s.url + base, startTLS: true}, 503},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := newDirectoryTest(t, s, tt.o)
			if resp := d.ask(t, "GET", pullURI, "alice", "alice-dir-secret"); resp.StatusCode != tt.status {
				t.Errorf("got %d (%s), want %d", resp.StatusCode, d.lastReason(t), tt.status)
			}
		})
	}
}

// TestDirectoryNameVariants: the directory finds one entry for the spellings of a name that
// caseIgnoreMatch takes as equal (each logs in as the directory's spelling), so after the
// per-name limit of failures every spelling is throttled, before any search or bind.
func TestDirectoryNameVariants(t *testing.T) {
	t.Parallel()
	s := startSlapd(t)
	d := newDirectoryTest(t, s, directoryOptions{perUser: 3})
	variants := []string{"Dave", "dave", "DAVE", "DaVe", " dave", "dave ", "\uff24\uff41\uff56\uff45"}
	for _, name := range variants {
		resp := d.ask(t, "GET", pullURI, name, "Dave-dir-secret")
		if resp.StatusCode != 200 || resp.Header.Get("X-Forwarded-User") != "Dave" {
			t.Fatalf("%q with the right password: got %d user %q (%s), want 200 as Dave: slapd takes it for Dave's entry", name, resp.StatusCode, resp.Header.Get("X-Forwarded-User"), d.lastReason(t))
		}
	}
	d.st.reload("signal") // forget the verdicts: each spelling must ask the directory again
	for i := range 3 {
		if resp := d.ask(t, "GET", pullURI, "Dave", fmt.Sprint("guess-", i)); resp.StatusCode != 401 {
			t.Fatalf("guess %d: got %d, want 401", i+1, resp.StatusCode)
		}
	}
	checks := histogramCount(t, d.h.metrics)
	for _, name := range variants {
		if resp := d.ask(t, "GET", pullURI, name, "Dave-dir-secret"); resp.StatusCode != 429 {
			t.Errorf("%q with the right password after 3 failures as Dave: got %d (%s), want 429", name, resp.StatusCode, d.lastReason(t))
		}
	}
	if got := histogramCount(t, d.h.metrics); got != checks {
		t.Errorf("got %d directory checks for throttled spellings, want 0", got-checks)
	}
}

// ldapUp is registry_auth_ldap_up as /metrics shows it.
func ldapUp(t *testing.T, m *metrics) float64 {
	t.Helper()
	return metricFamily(t, m, "registry_auth_ldap_up").GetMetric()[0].GetGauge().GetValue()
}
