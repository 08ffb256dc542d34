package main

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/registry-auth/registry-auth/internal/authn"
	"golang.org/x/crypto/bcrypt"
)

// TestReloadKeepsLastGood: a reload that fails leaves the previous users in place.
func TestReloadKeepsLastGood(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name   string
		damage func(f testFiles)
		error  string
	}{
		{"no users", func(f testFiles) { os.WriteFile(f.htpasswd, []byte("# nobody\n"), 0o600) }, "no usable users"},
		{"only refused entries", func(f testFiles) { os.WriteFile(f.htpasswd, []byte("bob:plaintext\n"), 0o600) }, "no usable users"},
		{"htpasswd missing", func(f testFiles) { os.Remove(f.htpasswd) }, "reading the htpasswd file"},
		{"groups missing", func(f testFiles) { os.Remove(f.groups) }, "reading the groups file"},
		{"line too long", func(f testFiles) {
			os.WriteFile(f.htpasswd, []byte("bob:"+strings.Repeat("x", 9000)+"\n"), 0o600)
		}, "longer than 8191"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			f := newTestFiles(t, htpasswdLines(t, "bob", "bob-secret"), "pusher: bob\n")
			st, m := newTestStore(t, f, time.Minute, nil)
			before := st.snapshot()
			tt.damage(f)
			err := st.reload("test")
			if err == nil || !strings.Contains(err.Error(), tt.error) {
				t.Fatalf("got error %v, want one containing %q", err, tt.error)
			}
			if st.snapshot() != before {
				t.Error("snapshot replaced by a failed reload")
			}
			if got := testutil.ToFloat64(m.reloads.WithLabelValues("failure")); got != 1 {
				t.Errorf("got %v failed reloads counted, want 1", got)
			}
		})
	}
}

// TestVerdictsSurviveReload: a verdict outlives a reload exactly when the user's htpasswd
// entry is byte for byte the same. Each step edits the files, reloads, and checks every
// credential in order, counting the hashes computed (the verify histogram's count).
func TestVerdictsSurviveReload(t *testing.T) {
	t.Parallel()
	// testHash memoises, so a user written again with the same password keeps the same line.
	base := []string{"bob", "bob-secret", "carol", "carol-secret", "dave", "dave-secret"}
	f := newTestFiles(t, htpasswdLines(t, base...), "pusher: carol\n")
	st, m := newTestStore(t, f, time.Hour, nil)
	check := func(user, password string) verification {
		t.Helper()
		v, err := st.verify(context.Background(), st.snapshot(), authn.Credential{Client: "192.0.2.1", User: user, Password: []byte(password)})
		if err != nil {
			t.Fatal(err)
		}
		return v
	}
	type probe struct {
		user, password string
		ok, hit        bool
	}
	// daveSHA is dave's same password in another format: {SHA} of "dave-secret".
	const daveSHA = "dave:{SHA}Ztuad/ftNAIlMYv8uco6C0z8hVQ=\n"
	steps := []struct {
		name     string
		htpasswd string // "" leaves the file alone
		probes   []probe
		hashes   uint64 // computed during this step's probes
	}{
		{"warm: each known user and an unknown one hashed once", "", []probe{
			{"bob", "bob-secret", true, false}, {"carol", "carol-secret", true, false},
			{"dave", "dave-secret", true, false}, {"nobody", "guess", false, false},
			{"bob", "bob-secret", true, true}, {"nobody", "guess", false, true},
		}, 4},
		{"unrelated user added: nobody is hashed again", htpasswdLines(t, append(base, "erin", "erin-secret")...), []probe{
			{"bob", "bob-secret", true, true}, {"carol", "carol-secret", true, true},
			{"dave", "dave-secret", true, true}, {"nobody", "guess", false, true}, // same dummy hash
		}, 0},
		{"bob's password changed: the old one refused at once", htpasswdLines(t, "bob", "bob-new", "carol", "carol-secret", "dave", "dave-secret"), []probe{
			{"bob", "bob-secret", false, false}, {"bob", "bob-new", true, false}, {"carol", "carol-secret", true, true},
		}, 2},
		{"carol removed: refused at once", htpasswdLines(t, "bob", "bob-new", "dave", "dave-secret"), []probe{
			{"carol", "carol-secret", false, false}, {"bob", "bob-new", true, true},
		}, 1},
		{"dave's hash format changed: verified afresh", htpasswdLines(t, "bob", "bob-new") + daveSHA, []probe{
			{"dave", "dave-secret", true, false}, {"dave", "dave-secret", true, true},
		}, 1},
		{"carol back with her old line: her old verdict is true again", htpasswdLines(t, "bob", "bob-new", "carol", "carol-secret") + daveSHA, []probe{
			{"carol", "carol-secret", true, true},
		}, 0},
	}
	for _, step := range steps {
		if step.htpasswd != "" {
			writeFile(t, f.htpasswd, step.htpasswd)
			if err := st.reload("test"); err != nil {
				t.Fatalf("%s: reload: %v", step.name, err)
			}
		}
		before := histogramCount(t, m)
		for _, p := range step.probes {
			if v := check(p.user, p.password); v.ok != p.ok || v.cacheHit != p.hit {
				t.Errorf("%s: %s/%s: got ok %v cache hit %v, want ok %v cache hit %v", step.name, p.user, p.password, v.ok, v.cacheHit, p.ok, p.hit)
			}
		}
		if got := histogramCount(t, m) - before; got != step.hashes {
			t.Errorf("%s: got %d hash computations, want %d", step.name, got, step.hashes)
		}
	}
}

// TestGroupChangeBeatsCachedVerdict: groups are no part of a cached verdict, so a push-group
// change decides the very next request of a user whose password check is a cache hit.
func TestGroupChangeBeatsCachedVerdict(t *testing.T) {
	t.Parallel()
	f := newTestFiles(t, htpasswdLines(t, "bob", "bob-secret"), "pusher: bob\n")
	st, m := newTestStore(t, f, time.Hour, nil)
	h := testAuthHandler(st, m, nil)
	push := func() *http.Response {
		t.Helper()
		r := httptest.NewRequest(http.MethodGet, "/auth", nil)
		for k, vs := range hdr("PUT", "/v2/team/app/manifests/latest", basic("bob", "bob-secret")) {
			r.Header[k] = vs
		}
		w := httptest.NewRecorder()
		h.ServeHTTP(w, r)
		return w.Result()
	}
	checkResponse(t, push(), http.StatusOK, "bob")
	writeFile(t, f.groups, "readers: bob\n")
	if err := st.reload("test"); err != nil {
		t.Fatal(err)
	}
	hashes := histogramCount(t, m)
	checkResponse(t, push(), http.StatusForbidden, "")
	if got := histogramCount(t, m) - hashes; got != 0 {
		t.Errorf("got %d hash computations after the group change, want 0 (the verdict is cached)", got)
	}
	writeFile(t, f.groups, "pusher: bob\n")
	if err := st.reload("test"); err != nil {
		t.Fatal(err)
	}
	checkResponse(t, push(), http.StatusOK, "bob")
}

// TestReloadKeepsCacheBounded: verdicts carried over reloads never take the cache past
// --cache-size.
func TestReloadKeepsCacheBounded(t *testing.T) {
	t.Parallel()
	const size = 8
	var pairs []string
	for i := range 3 * size {
		pairs = append(pairs, fmt.Sprintf("user%d", i), "secret")
	}
	f := newTestFiles(t, htpasswdLines(t, pairs...), "")
	cfg := testConfig(f, time.Hour)
	cfg.cacheSize = size
	st := newStore(cfg, slog.New(slog.DiscardHandler), newMetrics())
	for round := range 3 {
		// Each round a new file (one more comment line), and every user again.
		writeFile(t, f.htpasswd, strings.Repeat("# edit\n", round)+htpasswdLines(t, pairs...))
		if err := st.reload("test"); err != nil {
			t.Fatal(err)
		}
		for i := range 3 * size {
			if _, err := st.verify(context.Background(), st.snapshot(), authn.Credential{Client: "192.0.2.1", User: fmt.Sprintf("user%d", i), Password: []byte("secret")}); err != nil {
				t.Fatal(err)
			}
			if got := st.cache.len(); got > size {
				t.Fatalf("round %d, user%d: got %d cached verdicts, want at most %d", round, i, got, size)
			}
		}
	}
}

// TestReloadUnchangedIsFree: a trigger that changes nothing keeps the snapshot and its cache.
func TestReloadUnchangedIsFree(t *testing.T) {
	t.Parallel()
	f := newTestFiles(t, htpasswdLines(t, "bob", "bob-secret"), "")
	st, m := newTestStore(t, f, time.Minute, nil)
	before := st.snapshot()
	if err := st.reload("poll"); err != nil {
		t.Fatal(err)
	}
	if st.snapshot() != before {
		t.Error("unchanged files swapped the snapshot")
	}
	if got := testutil.ToFloat64(m.reloads.WithLabelValues("success")); got != 1 {
		t.Errorf("got %v successful reloads, want 1 (the first load)", got)
	}
}

// TestSignalWithoutChangeIsLogged: SIGHUP on unchanged files still answers in the log (an
// operator waits for a sign of life); a poll tick that changed nothing stays quiet.
func TestSignalWithoutChangeIsLogged(t *testing.T) {
	t.Parallel()
	f := newTestFiles(t, htpasswdLines(t, "bob", "bob-secret"), "")
	logs := &lockedBuffer{}
	st, _ := newTestStore(t, f, time.Minute, logs)
	for _, trigger := range []string{"poll", "file-change", "signal"} {
		if err := st.reload(trigger); err != nil {
			t.Fatal(err)
		}
	}
	if got := strings.Count(logs.String(), "reload found no change"); got != 1 {
		t.Errorf("got %d \"reload found no change\" lines, want 1 (for the signal only):\n%s", got, logs)
	}
	if !strings.Contains(logs.String(), `"trigger":"signal"`) {
		t.Errorf("the no-change line does not name its trigger:\n%s", logs)
	}
}

// TestUnknownUserCostsLikeKnown: the dummy hash has the typical cost of the file, and an
// unknown user runs it (one verification observed) and is cached like a known one.
func TestUnknownUserCostsLikeKnown(t *testing.T) {
	t.Parallel()
	h5, _ := bcrypt.GenerateFromPassword([]byte("x"), 5)
	h6, _ := bcrypt.GenerateFromPassword([]byte("y"), 6)
	f := newTestFiles(t, "a:"+string(h5)+"\nb:"+string(h6)+"\nc:"+string(h6)+"\n", "")
	st, m := newTestStore(t, f, time.Minute, nil)
	snap := st.snapshot()
	if got := bcryptCost(snap.dummyHash); got != 6 {
		t.Errorf("got dummy cost %d, want the median 6", got)
	}
	for i := range 2 {
		v, err := st.verify(context.Background(), snap, authn.Credential{Client: "192.0.2.1", User: "nobody", Password: []byte("guess")})
		if err != nil || v.ok || v.known {
			t.Fatalf("unknown user: got %+v, %v; want refused, unknown", v, err)
		}
		if v.cacheHit != (i == 1) {
			t.Errorf("attempt %d: got cache hit %v", i+1, v.cacheHit)
		}
	}
	if got := testutil.CollectAndCount(m.verifyDuration); got != 1 {
		t.Errorf("got %d histogram series, want 1", got)
	}
	if got := histogramCount(t, m); got != 1 {
		t.Errorf("got %d hash computations, want 1", got)
	}
}

// histogramCount is how many hashes the store computed.
func histogramCount(t *testing.T, m *metrics) uint64 {
	t.Helper()
	return metricFamily(t, m, "registry_auth_verify_duration_seconds").GetMetric()[0].GetHistogram().GetSampleCount()
}

// TestCacheKeyHoldsNoPassword: the key depends on client, user, password and hash, and is an
// HMAC that differs between processes.
func TestCacheKeyHoldsNoPassword(t *testing.T) {
	t.Parallel()
	f := newTestFiles(t, htpasswdLines(t, "bob", "bob-secret"), "")
	st1, _ := newTestStore(t, f, time.Minute, nil)
	st2, _ := newTestStore(t, f, time.Minute, nil)
	base := st1.credentialKey(authn.Credential{Client: "192.0.2.1", User: "bob", Password: []byte("pw")}, "hash")
	for _, other := range []cacheKey{
		st1.credentialKey(authn.Credential{Client: "192.0.2.1", User: "bob", Password: []byte("pw2")}, "hash"),
		st1.credentialKey(authn.Credential{Client: "192.0.2.1", User: "bob", Password: []byte("pw")}, "hash2"),
		st1.credentialKey(authn.Credential{Client: "192.0.2.1", User: "bo", Password: []byte("bpw")}, "hash"), // boundaries are length-prefixed
		st2.credentialKey(authn.Credential{Client: "192.0.2.1", User: "bob", Password: []byte("pw")}, "hash"),
		st1.credentialKey(authn.Credential{Client: "192.0.2.2", User: "bob", Password: []byte("pw")}, "hash"),
	} {
		if other == base {
			t.Errorf("key collision: %x", other)
		}
	}
	if base != st1.credentialKey(authn.Credential{Client: "192.0.2.1", User: "bob", Password: []byte("pw")}, "hash") {
		t.Error("got different keys for the same credential")
	}
}

// TestGroupNamesIgnoreCase: Apache matches `Require group pusher` against `Pusher:`; user
// names stay case-sensitive.
func TestGroupNamesIgnoreCase(t *testing.T) {
	t.Parallel()
	f := newTestFiles(t, htpasswdLines(t, "bob", "bob-secret", "Carol", "carol-secret"), "Pusher: bob\nPUSHER: Carol\n")
	st, _ := newTestStore(t, f, time.Minute, nil)
	snap := st.snapshot()
	for _, tt := range []struct {
		user, group string
		want        bool
	}{
		{"bob", "pusher", true},
		{"Carol", "pusher", true},
		{"carol", "pusher", false},
		{"bob", "PuShEr", true},
		{"bob", "readers", false},
	} {
		if got := snap.inGroup(tt.user, tt.group); got != tt.want {
			t.Errorf("inGroup(%q, %q): got %v, want %v", tt.user, tt.group, got, tt.want)
		}
	}
}

// TestRepeatedFailureLoggedAgain: fail, restore the loaded content, fail the same way: both
// failures are logged and counted; a failure repeated by the poll is not.
func TestRepeatedFailureLoggedAgain(t *testing.T) {
	t.Parallel()
	good := htpasswdLines(t, "bob", "bob-secret")
	f := newTestFiles(t, good, "")
	logs := &lockedBuffer{}
	st, m := newTestStore(t, f, time.Minute, logs)
	for _, step := range []struct {
		content string
		fails   bool
	}{
		{"no colon here\n", true},
		{"no colon here\n", true}, // the poll again: nothing new
		{good, false},
		{"no colon here\n", true},
	} {
		writeFile(t, f.htpasswd, step.content)
		if err := st.reload("test"); (err != nil) != step.fails {
			t.Fatalf("reload of %q: got %v", step.content, err)
		}
	}
	if got := strings.Count(logs.String(), "reload failed"); got != 2 {
		t.Errorf("got %d 'reload failed' lines, want 2", got)
	}
	if got := testutil.ToFloat64(m.reloads.WithLabelValues("failure")); got != 2 {
		t.Errorf("got %v failures counted, want 2", got)
	}
}

// TestRecoveryAfterFailureIsLogged: a failed reload fixed by restoring the content in force
// (which loads nothing new) is logged once, so the last line is no longer the failure; a
// poll that finds the same content again says nothing.
func TestRecoveryAfterFailureIsLogged(t *testing.T) {
	t.Parallel()
	good := htpasswdLines(t, "bob", "bob-secret")
	f := newTestFiles(t, good, "")
	logs := &lockedBuffer{}
	st, _ := newTestStore(t, f, time.Minute, logs)
	st.reload("poll") // unchanged, never failed: nothing to say
	writeFile(t, f.htpasswd, "no colon here\n")
	if err := st.reload("event"); err == nil {
		t.Fatal("got no error for a broken file")
	}
	writeFile(t, f.htpasswd, good)
	for range 2 {
		if err := st.reload("event"); err != nil {
			t.Fatal(err)
		}
	}
	lines := strings.Split(strings.TrimSpace(logs.String()), "\n")
	if got := strings.Count(logs.String(), "reload recovered"); got != 1 {
		t.Errorf("got %d 'reload recovered' lines, want 1:\n%s", got, logs)
	}
	if last := lines[len(lines)-1]; !strings.Contains(last, "reload recovered") {
		t.Errorf("last log line %s, want the recovery", last)
	}
}

// TestGroupMemberProblemsAndCount: a member the htpasswd file lacks is warned about with the
// line that names it, and is not counted in registry_auth_push_group_members, which counts
// the members who can log in.
func TestGroupMemberProblemsAndCount(t *testing.T) {
	t.Parallel()
	f := newTestFiles(t, htpasswdLines(t, "bob", "bob-secret", "carol", "carol-secret"), "# pushers\nreaders: carol\npusher: bob\npusher: ghost carol\n")
	logs := &lockedBuffer{}
	_, m := newTestStore(t, f, time.Minute, logs)
	if got := testutil.ToFloat64(m.pushGroupMembers); got != 2 {
		t.Errorf("got registry_auth_push_group_members %v, want 2 (bob and carol, not ghost)", got)
	}
	var warning map[string]any
	for _, line := range strings.Split(logs.String(), "\n") {
		if strings.Contains(line, `"ghost`) {
			if err := json.Unmarshal([]byte(line), &warning); err != nil {
				t.Fatal(err)
			}
		}
	}
	if warning == nil || warning["line"] != float64(4) {
		t.Errorf("got warning %v, want one about ghost naming line 4", warning)
	}
}

// TestLoadedFileMetric: registry_auth_loaded_file_info names the files in force by the
// SHA-256 /readyz shows, one series per file, replaced at each reload.
func TestLoadedFileMetric(t *testing.T) {
	t.Parallel()
	f := newTestFiles(t, htpasswdLines(t, "alice", "a"), "pusher: alice\n")
	st, m := newTestStore(t, f, time.Minute, nil)
	want := func() []string {
		var series []string
		for _, fs := range st.snapshot().files {
			series = append(series, fs.role+" "+fs.sum)
		}
		slices.Sort(series)
		return series
	}
	got := func() []string {
		var series []string
		for _, s := range metricFamily(t, m, "registry_auth_loaded_file_info").GetMetric() {
			labels := map[string]string{}
			for _, l := range s.GetLabel() {
				labels[l.GetName()] = l.GetValue()
			}
			if s.GetGauge().GetValue() == 1 {
				series = append(series, labels["role"]+" "+labels["sha256"])
			}
		}
		slices.Sort(series)
		return series
	}
	first := want()
	if g := got(); len(first) != 2 || !slices.Equal(g, first) {
		t.Fatalf("got %q, want %q", g, first)
	}
	writeFile(t, f.htpasswd, htpasswdLines(t, "alice", "a", "bob", "b"))
	if err := st.reload("test"); err != nil {
		t.Fatal(err)
	}
	if g, w := got(), want(); slices.Equal(w, first) || !slices.Equal(g, w) {
		t.Errorf("after the edit: got %q, want %q (before: %q)", g, w, first)
	}
}
