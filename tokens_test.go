package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/registry-auth/registry-auth/internal/authn"
	"github.com/registry-auth/registry-auth/internal/tokens"
)

// tokenSpec is a token for writeTokens.
type tokenSpec struct {
	name             string
	scopes           []string
	expires, revoked time.Time
}

// writeTokens writes a tokens file at path with specs, through the tokens package's own
// writer, and returns each token's secret by name.
func writeTokens(t testing.TB, path string, specs ...tokenSpec) map[string]string {
	t.Helper()
	f, err := tokens.Parse(nil, path)
	if err != nil {
		t.Fatal(err)
	}
	secrets := map[string]string{}
	for _, s := range specs {
		secret, digest := tokens.NewSecret()
		secrets[s.name] = secret
		created := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
		if err := f.Create(&tokens.Token{Name: s.name, Digest: digest, Scopes: s.scopes, Created: created, Expires: s.expires, Revoked: s.revoked}, created); err != nil {
			t.Fatal(err)
		}
	}
	writeFile(t, path, string(f.Bytes()))
	return secrets
}

// newTokenHandler is the /auth handler over an htpasswd file with alice (a pusher) and a
// line named like a token, a groups file that makes both tokens pushers, and a tokens
// file with a pull token, a push token, a revoked one and an expired one.
func newTokenHandler(t *testing.T) (*authHandler, map[string]string, *lockedBuffer) {
	t.Helper()
	f := newTestFiles(t, htpasswdLines(t, "alice", "alice-secret", "token+evil", "evil-secret"), "pusher: alice token+push token+pull\n")
	f.tokens = filepath.Join(f.dir, "tokens.yaml")
	secrets := writeTokens(t, f.tokens,
		tokenSpec{name: "pull", scopes: []string{"pull:team/*"}},
		tokenSpec{name: "push", scopes: []string{"pull,push:team/**"}},
		tokenSpec{name: "gone", scopes: []string{"pull:**"}, revoked: time.Date(2026, 2, 1, 0, 0, 0, 0, time.UTC)},
		tokenSpec{name: "old", scopes: []string{"pull:**"}, expires: time.Date(2026, 2, 1, 0, 0, 0, 0, time.UTC)},
	)
	logs := &lockedBuffer{}
	st, m := newTestStore(t, f, time.Hour, logs)
	return testAuthHandler(st, m, logs), secrets, logs
}

// TestTokenAnswers: a token gets what its scopes and the policy both allow, with a 403 that
// names the scopes; every failed token login is one 401 body that tells nothing of the name,
// while the log says why.
func TestTokenAnswers(t *testing.T) {
	t.Parallel()
	h, secrets, logs := newTokenHandler(t)
	const m = "/manifests/latest"
	for _, tt := range []struct {
		why, user, secret, method, uri string
		status                         int
		body, reason                   string
	}{
		{"a pull token pulls in its scope", "token+pull", secrets["pull"], "GET", "/v2/team/app" + m, 200, "", "granted"},
		{"and logs in at /v2/", "token+pull", secrets["pull"], "GET", "/v2/", 200, "", "valid_user"},
		{"but cannot push there, though a pusher", "token+pull", secrets["pull"], "PUT", "/v2/team/app" + m, 403, bodyDeniedScope, "outside_token_scope"},
		{"nor pull outside its scope, which any user may", "token+pull", secrets["pull"], "GET", "/v2/other/app" + m, 403, bodyDeniedScope, "outside_token_scope"},
		{"nor list the catalog", "token+pull", secrets["pull"], "GET", "/v2/_catalog", 403, bodyDeniedScope, "catalog_outside_scope"},
		{"a push token in the push group pushes in its scope", "token+push", secrets["push"], "PUT", "/v2/team/a/b" + m, 200, "", "granted"},
		{"but does not delete", "token+push", secrets["push"], "DELETE", "/v2/team/a/b" + m, 403, bodyDeniedScope, "outside_token_scope"},
		{"a wrong secret", "token+pull", secrets["push"], "GET", "/v2/team/app" + m, 401, bodyUnauthorizedToken, "wrong_password"},
		{"a token that does not exist", "token+nobody", secrets["pull"], "GET", "/v2/team/app" + m, 401, bodyUnauthorizedToken, "unknown_user"},
		{"a revoked token with its right secret", "token+gone", secrets["gone"], "GET", "/v2/team/app" + m, 401, bodyUnauthorizedToken, "revoked"},
		{"an expired token with its right secret", "token+old", secrets["old"], "GET", "/v2/team/app" + m, 401, bodyUnauthorizedToken, "expired"},
		{"an htpasswd line with a token's name is no user", "token+evil", "evil-secret", "GET", "/v2/team/app" + m, 401, bodyUnauthorizedToken, "unknown_user"},
		{"a person still gets the person's 401", "alice", "wrong", "GET", "/v2/team/app" + m, 401, bodyUnauthorized, "wrong_password"},
		{"and a person's catalog", "alice", "alice-secret", "GET", "/v2/_catalog", 200, "", "catalog_granted"},
	} {
		resp := askAs(h, "203.0.113.7", tt.method, tt.uri, tt.user, tt.secret)
		body, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != tt.status || string(body) != tt.body {
			t.Errorf("%s: got %d %s, want %d %s", tt.why, resp.StatusCode, body, tt.status, tt.body)
		}
		if resp.StatusCode == 200 && resp.Header.Get("X-Forwarded-User") != tt.user {
			t.Errorf("%s: got X-Forwarded-User %q, want %q", tt.why, resp.Header.Get("X-Forwarded-User"), tt.user)
		}
		if last := lastDecision(t, logs); last.Reason != tt.reason || last.User != tt.user {
			t.Errorf("%s: got logged reason %q user %q, want %q %q", tt.why, last.Reason, last.User, tt.reason, tt.user)
		}
	}
	for name, secret := range secrets {
		if strings.Contains(logs.String(), secret) {
			t.Errorf("the log holds the secret of %s", name)
		}
	}
}

// lastDecision is the last decision line of logs.
func lastDecision(t *testing.T, logs *lockedBuffer) (d struct{ Reason, User string }) {
	t.Helper()
	lines := strings.Split(strings.TrimSpace(logs.String()), "\n")
	for i := len(lines) - 1; i >= 0; i-- {
		if strings.Contains(lines[i], `"msg":"decision"`) {
			if err := json.Unmarshal([]byte(lines[i]), &d); err != nil {
				t.Fatal(err)
			}
			return d
		}
	}
	t.Fatal("no decision logged")
	return d
}

// TestTokenExpiresAtTheInstant: a token is proved until the nanosecond before its expiry and
// refused from that instant on, its cached verdict included.
func TestTokenExpiresAtTheInstant(t *testing.T) {
	t.Parallel()
	expiry := time.Date(2026, 6, 1, 0, 0, 0, 0, time.UTC)
	f := newTestFiles(t, htpasswdLines(t, "alice", "alice-secret"), "pusher: alice\n")
	f.tokens = filepath.Join(f.dir, "tokens.yaml")
	secrets := writeTokens(t, f.tokens, tokenSpec{name: "ci", scopes: []string{"pull:**"}, expires: expiry})
	st, _ := newTestStore(t, f, time.Hour, nil)
	clock := newThrottleClock()
	st.now = clock.now
	clock.advance(expiry.Sub(clock.now()) - time.Nanosecond)
	c := authn.Credential{Client: "192.0.2.1", User: "token+ci", Password: []byte(secrets["ci"])}
	for i, wantHit := range []bool{false, true} {
		v, err := st.verify(context.Background(), st.snapshot(), c)
		if err != nil || !v.ok || v.cacheHit != wantHit || v.id.Scopes.String() != "pull:**" {
			t.Fatalf("check %d a nanosecond before expiry: got %+v, %v, want proved with its scopes (cached: %v)", i, v, err, wantHit)
		}
	}
	clock.advance(time.Nanosecond)
	v, err := st.verify(context.Background(), st.snapshot(), c)
	if err != nil || v.ok || !v.cacheHit || v.reason != "expired" {
		t.Errorf("at the expiry: got %+v, %v, want the cached verdict refused as expired", v, err)
	}
}

// TestTokenRevokedUnderLoad: while clients pull with a token as fast as they can (every
// answer after the first a cache hit), `token revoke` takes effect as soon as the service
// loads the file, and no request is allowed after the first refusal. It logs the time from
// the command's return to the first refusal (README.md, "Robot tokens").
func TestTokenRevokedUnderLoad(t *testing.T) {
	t.Parallel()
	f := newTestFiles(t, htpasswdLines(t, "alice", "alice-secret"), "pusher: alice\n")
	f.tokens = filepath.Join(f.dir, "tokens.yaml")
	secrets := writeTokens(t, f.tokens, tokenSpec{name: "ci", scopes: []string{"pull:**"}}, tokenSpec{name: "other", scopes: []string{"pull:**"}})
	s := startService(t, nil, "--htpasswd", f.htpasswd, "--groups", f.groups, "--tokens", f.tokens, "--poll-interval", "0")
	if code := s.auth(t, "GET", "/v2/team/app/manifests/1", "token+ci", secrets["ci"]); code != 200 {
		t.Fatalf("before the revocation: got %d, want 200", code)
	}

	// Requests overlap: one sent before the reload may be answered after one sent later.
	// So an answer is judged by when its request was sent.
	type answer struct {
		code           int
		sent, answered time.Time
	}
	ctx, stop := context.WithCancel(context.Background())
	var mu sync.Mutex
	var answers []answer
	var wg sync.WaitGroup
	for range 4 {
		wg.Go(func() {
			for ctx.Err() == nil {
				sent := time.Now()
				code := s.auth(t, "GET", "/v2/team/app/manifests/1", "token+ci", secrets["ci"])
				mu.Lock()
				answers = append(answers, answer{code, sent, time.Now()})
				mu.Unlock()
			}
		})
	}
	waitFor(t, 10*time.Second, "cached answers", func() bool { mu.Lock(); defer mu.Unlock(); return len(answers) > 100 })
	if _, stderr, err := runCLI(t, nil, "", "token", "revoke", "--tokens", f.tokens, "ci"); err != nil {
		t.Fatalf("token revoke: %v\n%s", err, stderr)
	}
	took := waitFor(t, 10*time.Second, "the revocation to take effect", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return answers[len(answers)-1].code == http.StatusUnauthorized
	})
	// Some more answers after the first refusal, to see that none is allowed.
	mu.Lock()
	n := len(answers)
	mu.Unlock()
	waitFor(t, 10*time.Second, "answers after the revocation", func() bool { mu.Lock(); defer mu.Unlock(); return len(answers) > n+200 })
	stop()
	wg.Wait()
	var firstRefusal time.Time // when the first 401 arrived
	for _, a := range answers {
		if a.code == http.StatusUnauthorized && (firstRefusal.IsZero() || a.answered.Before(firstRefusal)) {
			firstRefusal = a.answered
		}
	}
	allowed := 0
	for i, a := range answers {
		switch {
		case a.code == http.StatusOK && a.sent.After(firstRefusal):
			t.Fatalf("answer %d, sent %v after the first refusal: got 200, want 401 (a verdict outlived the revocation)", i, a.sent.Sub(firstRefusal))
		case a.code == http.StatusOK:
			allowed++
		case a.code != http.StatusUnauthorized:
			t.Fatalf("answer %d: got %d, want 200 or 401", i, a.code)
		}
	}
	t.Logf("revocation in force %v after `token revoke` returned (polled every 5ms; %d answers, %d allowed before)", took, len(answers), allowed)
	if code := s.auth(t, "GET", "/v2/team/app/manifests/1", "token+other", secrets["other"]); code != 200 {
		t.Errorf("the other token after the revocation: got %d, want 200", code)
	}
}

// TestTokensMetric: registry_auth_tokens counts the tokens by state when scraped, so that a
// token moves from expiring to expired at its instant without a reload.
func TestTokensMetric(t *testing.T) {
	t.Parallel()
	f := newTestFiles(t, htpasswdLines(t, "alice", "alice-secret"), "pusher: alice\n")
	f.tokens = filepath.Join(f.dir, "tokens.yaml")
	clock := newThrottleClock() // 2026-01-01T12:00:00Z
	now := clock.now()
	writeTokens(t, f.tokens,
		tokenSpec{name: "forever", scopes: []string{"pull:**"}},
		tokenSpec{name: "month", scopes: []string{"pull:**"}, expires: now.Add(30 * 24 * time.Hour)},
		tokenSpec{name: "soon", scopes: []string{"pull:**"}, expires: now.Add(time.Hour)},
		tokenSpec{name: "gone", scopes: []string{"pull:**"}, revoked: now.Add(-time.Hour)},
	)
	st, m := newTestStore(t, f, time.Hour, nil)
	st.now = clock.now
	states := func() map[string]float64 {
		got := map[string]float64{}
		for _, metric := range metricFamily(t, m, "registry_auth_tokens").GetMetric() {
			got[metric.GetLabel()[0].GetValue()] = metric.GetGauge().GetValue()
		}
		return got
	}
	want := map[string]float64{"active": 2, "expiring": 1, "expired": 0, "revoked": 1}
	if got := states(); fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("got %v, want %v", got, want)
	}
	clock.advance(time.Hour)
	want = map[string]float64{"active": 2, "expiring": 0, "expired": 1, "revoked": 1}
	if got := states(); fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("an hour later: got %v, want %v", got, want)
	}
}

// TestCheckAndExplainTokens: check names a broken token by its line and counts the tokens;
// explain gives a token's answer with its scopes, and refuses a revoked one.
func TestCheckAndExplainTokens(t *testing.T) {
	t.Parallel()
	f := newTestFiles(t, htpasswdLines(t, "alice", "alice-secret"), "pusher: alice token+push token+pull\n")
	f.tokens = filepath.Join(f.dir, "tokens.yaml")
	writeTokens(t, f.tokens,
		tokenSpec{name: "pull", scopes: []string{"pull:team/*"}},
		tokenSpec{name: "push", scopes: []string{"pull,push:team/**"}},
		tokenSpec{name: "gone", scopes: []string{"pull:**"}, revoked: time.Date(2026, 2, 1, 0, 0, 0, 0, time.UTC)},
	)
	files := []string{"--htpasswd", f.htpasswd, "--groups", f.groups, "--tokens", f.tokens}
	stdout, _, err := runCLI(t, nil, "", append([]string{"check"}, files...)...)
	if err != nil || !strings.Contains(stdout, "tokens: 3 in "+f.tokens+" (2 active, 0 expiring within 7 days, 0 expired, 1 revoked)") || strings.Contains(stdout, "warning:") {
		t.Errorf("check: got %v\n%s\nwant the tokens counted, and no warning: the groups file's tokens are in the tokens file", err, stdout)
	}
	// Tokens the tokens file lacks, named by a group or the policy, are said to be none.
	writeFile(t, f.groups, "pusher: alice token+push token+ghost\n")
	policyFile := filepath.Join(f.dir, "policy.yaml")
	writeFile(t, policyFile, "rules:\n  - subjects: [user:token+pull, user:token+nobody]\n    repositories: [\"**\"]\n    actions: [pull]\n")
	stdout, _, _ = runCLI(t, nil, "", append([]string{"check", "--policy", policyFile}, files...)...)
	for _, want := range []string{
		fmt.Sprintf(`%s:1: warning: member "token+ghost" of group "pusher" is no token of %s`, f.groups, f.tokens),
		fmt.Sprintf(`%s:2: warning: user "token+nobody" is no token of %s`, policyFile, f.tokens),
	} {
		if !strings.Contains(stdout, want) {
			t.Errorf("check: no %q in\n%s", want, stdout)
		}
	}
	if strings.Contains(stdout, `"token+push"`) || strings.Contains(stdout, `"token+pull"`) {
		t.Errorf("check warns about tokens the tokens file has:\n%s", stdout)
	}
	writeFile(t, f.groups, "pusher: alice token+push token+pull\n")
	for _, tt := range []struct {
		user, method, uri string
		wantErr           bool
		want              string
	}{
		{"token+pull", "GET", "/v2/team/app/manifests/1", false, "allowed (granted)"},
		{"token+pull", "PUT", "/v2/team/app/manifests/1", true, "the rule grants pull,push,delete; the token's scopes (pull:team/*) allow pull"},
		{"token+push", "PUT", "/v2/team/app/manifests/1", false, "allowed (granted)"},
		{"token+gone", "GET", "/v2/team/app/manifests/1", true, `refused 401: the token "gone" was revoked on 2026-02-01T00:00:00Z`},
		{"token+nobody", "GET", "/v2/team/app/manifests/1", true, `refused 401: no token "nobody"`},
	} {
		stdout, stderr, err := runCLI(t, nil, "", append(append([]string{"explain"}, files...), tt.user, tt.method, tt.uri)...)
		if (err != nil) != tt.wantErr || !strings.Contains(stdout, tt.want) {
			t.Errorf("explain %s %s %s: got %v\n%s%s\nwant %q", tt.user, tt.method, tt.uri, err, stdout, stderr, tt.want)
		}
	}

	// A token with a wrong field is skipped, named by its line, and check fails.
	data, err := os.ReadFile(f.tokens)
	if err != nil {
		t.Fatal(err)
	}
	broken := strings.Replace(string(data), "pull:team/*", "read:team/*", 1)
	writeFile(t, f.tokens, broken)
	line := 1 + strings.Count(broken[:strings.Index(broken, "- name: pull")], "\n")
	stdout, _, err = runCLI(t, nil, "", append([]string{"check"}, files...)...)
	if want := fmt.Sprintf("%s:%d: error: token \"pull\": scope \"read:team/*\": unknown action \"read\"", f.tokens, line); err == nil || !strings.Contains(stdout, want) || !strings.Contains(stdout, "tokens: 2 in") {
		t.Errorf("check of a broken token: got %v\n%s\nwant a failure with %q", err, stdout, want)
	}
}
