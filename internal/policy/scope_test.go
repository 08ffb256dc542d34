package policy

import (
	"strings"
	"testing"

	"github.com/registry-auth/registry-auth/internal/registry"
	"github.com/registry-auth/registry-auth/internal/registry/registrytest"
)

// scoped is an identity named name, in groups, narrowed by scopes.
func scoped(t *testing.T, name string, scopes []string, groups ...string) Identity {
	t.Helper()
	s, err := ParseScopes(scopes)
	if err != nil {
		t.Fatal(err)
	}
	return Identity{User: name, Groups: groups, Scopes: s}
}

// TestScopesNarrowNeverWiden: a scoped identity gets what the rule grants and its scopes
// allow, under both the built-in policy and a policy file; a scope grants nothing a rule does
// not.
func TestScopesNarrowNeverWiden(t *testing.T) {
	t.Parallel()
	file := loadTestPolicy(t)
	builtin := Builtin("pusher")
	const m = "/manifests/latest"
	mount := func(to, from string) string {
		return "/v2/" + to + "/blobs/uploads/?mount=" + registrytest.Digest + "&from=" + from
	}
	pullTeam := []string{"pull:team/*"}
	pushTeam := []string{"pull,push:team/**"}
	everything := []string{"pull,push,delete:**", "catalog"}
	for _, tt := range []struct {
		why     string
		p       *Policy
		id      Identity
		method  string
		uri     string
		allowed bool
		reason  string
	}{
		{"a pull-only token pulls in its namespace", builtin, scoped(t, "token+ci", pullTeam), "GET", "/v2/team/app" + m, true, "granted"},
		{"heads a blob there", builtin, scoped(t, "token+ci", pullTeam), "HEAD", "/v2/team/app/blobs/" + registrytest.Digest, true, "granted"},
		{"but not outside it, though every user may pull there", builtin, scoped(t, "token+ci", pullTeam), "GET", "/v2/other/app" + m, false, "outside_token_scope"},
		{"* is one level: team/app/x is outside team/*", builtin, scoped(t, "token+ci", pullTeam), "GET", "/v2/team/app/x" + m, false, "outside_token_scope"},
		{"a pull-only token never pushes, even in the push group", builtin, scoped(t, "token+ci", pullTeam, "pusher"), "PUT", "/v2/team/app" + m, false, "outside_token_scope"},
		{"nor starts an upload", builtin, scoped(t, "token+ci", pullTeam, "pusher"), "POST", "/v2/team/app/blobs/uploads/", false, "outside_token_scope"},
		{"nor deletes", builtin, scoped(t, "token+ci", pullTeam, "pusher"), "DELETE", "/v2/team/app" + m, false, "outside_token_scope"},
		{"nor lists the catalog, which every user may", builtin, scoped(t, "token+ci", pullTeam), "GET", "/v2/_catalog", false, "catalog_outside_scope"},
		{"a token logs in at /v2/", builtin, scoped(t, "token+ci", pullTeam), "GET", "/v2/", true, "valid_user"},
		{"a push scope pushes where the push group may", builtin, scoped(t, "token+ci", pushTeam, "pusher"), "PUT", "/v2/team/app/x" + m, true, "granted"},
		{"a push scope grants no push the policy withholds", builtin, scoped(t, "token+ci", pushTeam), "PUT", "/v2/team/app" + m, false, "not_granted"},
		{"a push scope does not delete", builtin, scoped(t, "token+ci", pushTeam, "pusher"), "DELETE", "/v2/team/app" + m, false, "outside_token_scope"},
		{"a mount from inside the scope", builtin, scoped(t, "token+ci", pushTeam, "pusher"), "POST", mount("team/app", "team/base"), true, "granted"},
		{"a mount from outside the scope is refused for the source", builtin, scoped(t, "token+ci", pushTeam, "pusher"), "POST", mount("team/app", "other/base"), false, "mount_source_not_readable"},
		{"the catalog scope lists the catalog", builtin, scoped(t, "token+ci", everything), "GET", "/v2/_catalog", true, "catalog_granted"},
		{"but only where the policy's catalog allows", file, scoped(t, "token+ci", everything), "GET", "/v2/_catalog", false, "catalog_not_granted"},
		{"a scope of everything gives what the rules give", file, scoped(t, "carol", everything), "PUT", "/v2/carol/app" + m, true, "granted"},
		{"and nothing more", file, scoped(t, "carol", everything), "PUT", "/v2/dave/app" + m, false, "not_granted"},
		{"an explicit deny stays a deny", file, scoped(t, "mallory", everything), "GET", "/v2/public/base" + m, false, "not_granted"},
		{"with no rule, no scope grants", file, scoped(t, "token+x", everything), "GET", "/v2/secret/x" + m, false, "not_granted"},
		{"two scopes add up", builtin, scoped(t, "token+ci", []string{"pull:team/*", "pull:base/**"}), "GET", "/v2/base/x/y" + m, true, "granted"},
		{"an exact repository", builtin, scoped(t, "token+ci", []string{"pull:team/app"}), "GET", "/v2/team/app" + m, true, "granted"},
		{"is not a prefix", builtin, scoped(t, "token+ci", []string{"pull:team/app"}), "GET", "/v2/team/apple" + m, false, "outside_token_scope"},
	} {
		req, err := registry.ParseRequest(tt.method, tt.uri)
		if err != nil {
			t.Fatalf("%s: %v", tt.why, err)
		}
		v := tt.p.Decide(tt.id, req)
		if v.Allowed != tt.allowed || v.Reason != tt.reason {
			t.Errorf("%s: %s %s: got allowed %v reason %q (%s), want %v %q", tt.why, tt.method, tt.uri, v.Allowed, v.Reason, tt.p.Explain(v), tt.allowed, tt.reason)
		}
	}
}

// TestScopesInExplain: a ruling the scopes narrowed says so, and what the rule alone grants.
func TestScopesInExplain(t *testing.T) {
	t.Parallel()
	p := Builtin("pusher")
	req, err := registry.ParseRequest("PUT", "/v2/team/app/manifests/1")
	if err != nil {
		t.Fatal(err)
	}
	v := p.Decide(scoped(t, "token+ci", []string{"pull:team/*"}, "pusher"), req)
	want := "team/app needs pull,push, granted pull by built-in rule 1 (--push-group), narrowed from pull,push,delete by the token's scopes"
	if got := p.Explain(v); got != want {
		t.Errorf("got %q, want %q", got, want)
	}
}

// TestParseScopesErrors: every malformed scope is refused with what to write instead.
func TestParseScopesErrors(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		scopes []string
		want   string
	}{
		{nil, "no scope"},
		{[]string{"team/*"}, "write ACTIONS:PATTERN"},
		{[]string{"read:team/*"}, `unknown action "read"`},
		{[]string{"pull,:team/*"}, `unknown action ""`},
		{[]string{"pull:"}, "empty repository pattern"},
		{[]string{"pull:Team/*"}, `"T" is not allowed`},
		{[]string{"pull:${user}/*"}, "${user} has no meaning in a scope"},
		{[]string{"pull:team/*", "push:x/***"}, `"***" means nothing`},
	} {
		_, err := ParseScopes(tt.scopes)
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("ParseScopes(%q): got %v, want an error with %q", tt.scopes, err, tt.want)
		}
	}
	s, err := ParseScopes([]string{"pull:team/*", "catalog"})
	if err != nil || s.String() != "pull:team/* catalog" {
		t.Errorf("got %v, %v, want the scopes as written", s, err)
	}
}
