package main

import (
	"fmt"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/registry-auth/registry-auth/internal/tokens"
)

// secretLine is the secret in what token create and rotate print.
var secretLine = regexp.MustCompile(`(?m)^    (rat_[A-Za-z0-9_-]{43})$`)

// createdSecret is the secret a token command printed, and checks that it printed it on the
// secret's own line and in the two ready command lines only.
func createdSecret(t *testing.T, stdout, name, server string) string {
	t.Helper()
	m := secretLine.FindStringSubmatch(stdout)
	if m == nil {
		t.Fatalf("no secret in:\n%s", stdout)
	}
	secret := m[1]
	for _, want := range []string{
		fmt.Sprintf("printf '%%s' '%s' | docker login %s --username token+%s --password-stdin", secret, server, name),
		fmt.Sprintf("kubectl create secret docker-registry registry-%s --docker-server=%s --docker-username=token+%s --docker-password='%s'", name, server, name, secret),
	} {
		if !strings.Contains(stdout, want) {
			t.Errorf("no line %q in:\n%s", want, stdout)
		}
	}
	if n := strings.Count(stdout, secret); n != 3 {
		t.Errorf("the secret is printed %d times, want 3 (alone, in the login line, in the kubectl line)", n)
	}
	return secret
}

// TestTokenCommands: create, list, rotate and revoke on real files, each in force at the
// running service once --wait returns; the file never holds a secret; list never shows one.
func TestTokenCommands(t *testing.T) {
	t.Parallel()
	f := newTestFiles(t, htpasswdLines(t, "alice", "alice-pw"), "pusher: alice\n")
	f.tokens = filepath.Join(f.dir, "tokens.yaml")
	s := startService(t, nil, "--htpasswd", f.htpasswd, "--groups", f.groups, "--tokens", f.tokens)
	env := map[string]string{"REGISTRY_AUTH_TOKENS": f.tokens}
	const pull = "/v2/team/app/manifests/1"

	out := mustRun(t, env, "", "token", "create", "--scope", "pull:team/*", "--owner", "alice", "--description", "team CI", "--registry", "reg.example:5043", "--wait", s.url, "ci")
	if !strings.HasPrefix(out, "created token ci in "+f.tokens+" (scopes pull:team/*; expires ") || !strings.Contains(out, "loaded it after") {
		t.Errorf("create: got\n%s", out)
	}
	secret := createdSecret(t, out, "ci", "reg.example:5043")
	if got := s.auth(t, "GET", pull, "token+ci", secret); got != 200 {
		t.Errorf("the new token's pull right after --wait: got %d, want 200", got)
	}
	if got := s.auth(t, "GET", "/v2/other/app/manifests/1", "token+ci", secret); got != 403 {
		t.Errorf("the new token's pull outside its scope: got %d, want 403", got)
	}
	file := readString(t, f.tokens)
	if strings.Contains(file, secret) || !strings.Contains(file, tokens.Digest([]byte(secret))) {
		t.Errorf("the file should hold the secret's SHA-256 and not the secret:\n%s", file)
	}
	// The default expiry is 90 days.
	tf, err := tokens.Parse([]byte(file), f.tokens)
	must(t, err)
	if got := tf.Get("ci").Expires.Sub(tf.Get("ci").Created); got != 90*24*time.Hour {
		t.Errorf("default lifetime: got %v, want 90 days", got)
	}

	mustRun(t, env, "", "token", "create", "--scope", "pull,push:team/**", "--scope", "catalog", "--expires", "never", "push")
	mustRun(t, env, "", "token", "create", "--scope", "pull:x", "--expires-at", "2099-01-02", "dated")
	list := mustRun(t, env, "", "token", "list")
	for _, want := range []*regexp.Regexp{
		regexp.MustCompile(`(?m)^NAME +LOGIN +SCOPES +OWNER +CREATED +EXPIRES +STATE +DESCRIPTION$`),
		regexp.MustCompile(`(?m)^ci +token\+ci +pull:team/\* +alice +20\d\d-\d\d-\d\dT\S+Z +20\d\d-\d\d-\d\dT\S+Z +active +team CI$`),
		regexp.MustCompile(`(?m)^push +token\+push +pull,push:team/\*\* catalog +- +\S+ +never +active +-$`),
		regexp.MustCompile(`(?m)^dated +token\+dated +pull:x +- +\S+ +2099-01-02T00:00:00Z +active +-$`),
	} {
		if !want.MatchString(list) {
			t.Errorf("token list: no line matching %s in:\n%s", want, list)
		}
	}
	if strings.Contains(list, "rat_") || strings.Contains(list, tokens.Digest([]byte(secret))) {
		t.Errorf("token list shows a secret or its digest:\n%s", list)
	}

	out = mustRun(t, env, "", "token", "rotate", "--registry", "reg.example:5043", "--wait", s.url, "ci")
	rotated := createdSecret(t, out, "ci", "reg.example:5043")
	if got := s.auth(t, "GET", pull, "token+ci", secret); got != 401 {
		t.Errorf("the old secret right after rotate --wait: got %d, want 401", got)
	}
	if got := s.auth(t, "GET", pull, "token+ci", rotated); got != 200 {
		t.Errorf("the new secret right after rotate --wait: got %d, want 200", got)
	}

	mustRun(t, env, "", "token", "revoke", "--wait", s.url, "ci")
	if got := s.auth(t, "GET", pull, "token+ci", rotated); got != 401 {
		t.Errorf("the token right after revoke --wait: got %d, want 401", got)
	}
	if list := mustRun(t, env, "", "token", "list"); !regexp.MustCompile(`(?m)^ci .* revoked 20\d\d-`).MatchString(list) {
		t.Errorf("token list after revoke:\n%s", list)
	}

	before := readString(t, f.tokens)
	for _, tt := range []struct {
		args []string
		want string
	}{
		{[]string{"create", "--scope", "pull:x", "push"}, `token "push" exists`},
		{[]string{"create", "--scope", "pull:x", "ci"}, `token "ci" exists, revoked on`},
		{[]string{"create", "--scope", "read:x", "new"}, `unknown action "read"`},
		{[]string{"create", "new"}, "no scope"},
		{[]string{"create", "--scope", "pull:x", "New"}, `token name "New"`},
		{[]string{"create", "--scope", "pull:x", "--expires", "30d", "--expires-at", "2099-01-01", "new"}, "not both"},
		{[]string{"create", "--scope", "pull:x", "--expires-at", "2001-01-01", "new"}, "not in the future"},
		{[]string{"create", "--scope", "pull:x", "--expires", "0d", "new"}, "want a positive number of days"},
		{[]string{"create", "--scope", "pull:x", "--expires", "soon", "new"}, "want a positive number of days"},
		{[]string{"revoke", "nobody"}, `no token "nobody"`},
		{[]string{"revoke", "ci"}, "was revoked on"},
		{[]string{"rotate", "ci"}, "was revoked on"},
		{[]string{"create", "--scope", "pull:x"}, "exactly one NAME"},
		{[]string{"create", "--scope", "pull:x", "--tokens", "", "new"}, "--tokens is empty"},
	} {
		_, stderr, err := runCLI(t, env, "", append([]string{"token"}, tt.args...)...)
		if err == nil || !strings.Contains(err.Error()+stderr, tt.want) {
			t.Errorf("token %v: got %v %s, want an error with %q", tt.args, err, stderr, tt.want)
		}
	}
	if after := readString(t, f.tokens); after != before {
		t.Errorf("a refused command changed the file:\n%s", after)
	}
	if user := s.auth(t, "GET", pull, "alice", "alice-pw"); user != 200 {
		t.Errorf("alice: got %d, want 200", user)
	}
}

// TestTwentyConcurrentTokenCreates: twenty token create at once all land, each secret
// proving its own token.
func TestTwentyConcurrentTokenCreates(t *testing.T) {
	t.Parallel()
	f := newTestFiles(t, htpasswdLines(t, "alice", "alice-pw"), "pusher: alice\n")
	f.tokens = filepath.Join(f.dir, "tokens.yaml")
	env := map[string]string{"REGISTRY_AUTH_TOKENS": f.tokens}
	const n = 20
	secrets := make([]string, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			stdout, stderr, err := runCLI(t, env, "", "token", "create", "--scope", "pull:**", fmt.Sprintf("ci-%02d", i))
			if err != nil {
				t.Errorf("token create ci-%02d: %v\n%s", i, err, stderr)
				return
			}
			if m := secretLine.FindStringSubmatch(stdout); m != nil {
				secrets[i] = m[1]
			}
		})
	}
	wg.Wait()
	tf, err := tokens.Parse([]byte(readString(t, f.tokens)), f.tokens)
	must(t, err)
	if len(tf.Tokens) != n || len(tf.Problems) != 0 {
		t.Fatalf("got %d tokens and problems %v, want %d and none", len(tf.Tokens), tf.Problems, n)
	}
	for i, secret := range secrets {
		if tok := tf.Get(fmt.Sprintf("ci-%02d", i)); tok == nil || tok.Digest != tokens.Digest([]byte(secret)) {
			t.Errorf("ci-%02d: its printed secret does not match the file", i)
		}
	}
	assertDir(t, f.dir, "groups", "htpasswd", "tokens.yaml", "tokens.yaml.lock")
}
