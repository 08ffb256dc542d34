package main

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/registry-auth/registry-auth/internal/cli"
	"github.com/registry-auth/registry-auth/internal/registry/registrytest"
)

// policyFiles writes users alice (admins), bob and carol, and the policy text.
func policyFiles(t *testing.T, policy string) testFiles {
	t.Helper()
	f := newTestFiles(t, htpasswdLines(t, "alice", "alice-secret", "bob", "bob-secret", "carol", "carol-secret"), "admins: alice\n")
	f.policy = filepath.Join(f.dir, "policy.yaml")
	writeFile(t, f.policy, policy)
	return f
}

const teamPolicy = `rules:
  - subjects: [user:bob]
    repositories: ["team/**"]
    actions: [pull, push]
  - subjects: [authenticated]
    repositories: ["**"]
    actions: [pull]
`

// TestServePolicyReload: serve with --policy decides by it; an edit of the policy takes
// effect within the reload deadline; an invalid edit is logged with file and line and keeps
// the last good policy; a policy that is invalid at start stops the service.
func TestServePolicyReload(t *testing.T) {
	t.Parallel()
	f := policyFiles(t, teamPolicy)
	s := startService(t, nil, "--htpasswd", f.htpasswd, "--groups", f.groups, "--policy", f.policy)
	if got := s.auth(t, "PUT", "/v2/team/app/manifests/1", "bob", "bob-secret"); got != 200 {
		t.Fatalf("bob pushes to team/: got %d, want 200", got)
	}
	if got := s.auth(t, "PUT", "/v2/team/app/manifests/1", "carol", "carol-secret"); got != 403 {
		t.Fatalf("carol pushes to team/: got %d, want 403", got)
	}

	// Carol joins the rule: the edit lands without a restart.
	writeFile(t, f.policy+".tmp", strings.Replace(teamPolicy, "[user:bob]", "[user:bob, user:carol]", 1))
	must(t, os.Rename(f.policy+".tmp", f.policy))
	waitFor(t, reloadDeadline, "carol's push to be allowed", func() bool {
		return s.auth(t, "PUT", "/v2/team/app/manifests/1", "carol", "carol-secret") == 200
	})

	// A broken edit: logged with its line, and the last good policy stays.
	writeFile(t, f.policy, teamPolicy+"  - subjects: [everyone]\n    repositories: [x]\n    actions: []\n")
	waitFor(t, reloadDeadline, "the broken policy to be logged", func() bool {
		return strings.Contains(s.logs.String(), `policy.yaml:8: unknown subject \"everyone\"`)
	})
	if got := s.auth(t, "PUT", "/v2/team/app/manifests/1", "carol", "carol-secret"); got != 200 {
		t.Errorf("after a broken edit carol got %d, want 200 from the last good policy", got)
	}
	if err := s.stop(); err != nil {
		t.Fatal(err)
	}

	// At start, the same broken file stops the service with the message.
	err := program.Run(t.Context(), cli.Env{LookupEnv: envOf(nil), Stdin: strings.NewReader(""), Stdout: &strings.Builder{}, Stderr: &strings.Builder{}}, []string{"serve", "--listen", "127.0.0.1:0", "--htpasswd", f.htpasswd, "--groups", f.groups, "--policy", f.policy})
	if err == nil || !strings.Contains(err.Error(), `policy.yaml:8: unknown subject "everyone"`) {
		t.Errorf("start with a broken policy: got %v, want the file and line", err)
	}
}

// TestServePolicyWarnsAboutPushGroup: --push-group given beside --policy plays no part,
// and serve says so.
func TestServePolicyWarnsAboutPushGroup(t *testing.T) {
	t.Parallel()
	f := policyFiles(t, teamPolicy)
	s := startService(t, map[string]string{"REGISTRY_AUTH_PUSH_GROUP": "admins"}, "--htpasswd", f.htpasswd, "--groups", f.groups, "--policy", f.policy)
	if got := s.auth(t, "PUT", "/v2/other/manifests/1", "alice", "alice-secret"); got != 403 {
		t.Errorf("a push-group member pushes outside the policy: got %d, want 403", got)
	}
	if !strings.Contains(s.logs.String(), "--push-group plays no part with --policy") {
		t.Errorf("no warning about --push-group:\n%s", s.logs)
	}
}

// TestExplainCommand: explain prints the decision, each access with its deciding rule as
// FILE:LINE and the rule's text, and exits 0 when allowed, 1 when refused, 2 on a usage or
// file error.
func TestExplainCommand(t *testing.T) {
	t.Parallel()
	f := policyFiles(t, teamPolicy)
	files := []string{"--htpasswd", f.htpasswd, "--groups", f.groups}
	withPolicy := append(append([]string{}, files...), "--policy", f.policy)
	for _, tt := range []struct {
		name   string
		args   []string
		status int      // 0 for nil
		stdout []string // each must appear
		stderr string
	}{
		{"a granted push", append(withPolicy, "bob", "PUT", "/v2/team/app/manifests/1"), 0,
			[]string{"allowed (granted)", "team/app needs pull,push: granted pull,push by " + f.policy + ":2 (rule 1)", `{subjects: [user:bob], repositories: ["team/**"], actions: [pull, push]}`}, ""},
		{"a refused push", append(withPolicy, "carol", "PUT", "/v2/team/app/manifests/1"), 1,
			[]string{"refused 403: carol (not_granted)", "granted pull by " + f.policy + ":5 (rule 2)"}, ""},
		{"a mount names both repositories", append(withPolicy, "bob", "POST", "/v2/team/app/blobs/uploads/?mount="+registrytest.Digest+"&from=other/x"), 0,
			[]string{"team/app needs pull,push", "other/x needs pull: granted pull by " + f.policy + ":5 (rule 2)"}, ""},
		{"anonymous", append(withPolicy, "-", "GET", "/v2/team/app/manifests/1"), 1,
			[]string{"refused 401", "team/app needs pull: granted none by no rule matched"}, ""},
		{"an unknown user is explained with a warning", append(withPolicy, "zed", "GET", "/v2/team/app/manifests/1"), 0,
			[]string{"allowed"}, `warning: "zed" is not in`},
		{"the built-in rule", append(append([]string{}, files...), "alice", "DELETE", "/v2/x/manifests/1"), 1,
			[]string{"refused 403", "built-in rule 2 (--push-group)"}, ""},
		{"a path that is no route", append(withPolicy, "bob", "GET", "/v2/../x"), 1, []string{"refused 403", "unknown_route"}, ""},
		{"too few arguments", append(withPolicy, "bob", "GET"), 2, nil, "explain takes USER METHOD URI"},
		{"a missing policy", append(files, "--policy", filepath.Join(f.dir, "missing"), "bob", "GET", "/v2/"), 2, nil, "reading the policy file"},
	} {
		stdout, stderr, err := runCLI(t, nil, "", append([]string{"explain"}, tt.args...)...)
		var status cli.ExitStatus
		switch {
		case tt.status == 0 && err != nil:
			t.Errorf("%s: got error %v, want none\n%s%s", tt.name, err, stdout, stderr)
		case tt.status != 0 && (!errors.As(err, &status) || int(status) != tt.status):
			t.Errorf("%s: got %v, want exit status %d\n%s%s", tt.name, err, tt.status, stdout, stderr)
		}
		for _, want := range tt.stdout {
			if !strings.Contains(stdout, want) {
				t.Errorf("%s: stdout lacks %q:\n%s", tt.name, want, stdout)
			}
		}
		if !strings.Contains(stderr, tt.stderr) {
			t.Errorf("%s: stderr lacks %q:\n%s", tt.name, tt.stderr, stderr)
		}
	}
}

// TestCheckCommandPolicy: check loads the policy with the same loader as serve: its errors
// fail the check with file and line, its warnings are listed, and the summary counts rules.
func TestCheckCommandPolicy(t *testing.T) {
	t.Parallel()
	good := policyFiles(t, teamPolicy+"  - subjects: [group:ghosts]\n    repositories: [x]\n    actions: [push]\n")
	stdout, _, err := runCLI(t, nil, "", "check", "--htpasswd", good.htpasswd, "--groups", good.groups, "--policy", good.policy)
	if err != nil {
		t.Errorf("warnings only: got %v, want success\n%s", err, stdout)
	}
	for _, want := range []string{
		good.policy + ":8: warning: rule 3 grants push without pull",
		good.policy + `:8: warning: group "ghosts" has no members`,
		"3 users, 1 groups, 3 policy rules; 0 errors, 2 warnings",
	} {
		if !strings.Contains(stdout, want) {
			t.Errorf("stdout lacks %q:\n%s", want, stdout)
		}
	}
	bad := policyFiles(t, "rules:\n  - subjects: [authenticated]\n    repositories: [x]\n    actions: [pull, write]\n")
	stdout, _, err = runCLI(t, nil, "", "check", "--htpasswd", bad.htpasswd, "--groups", bad.groups, "--policy", bad.policy)
	if !errors.Is(err, cli.ExitStatus(1)) || !strings.Contains(stdout, bad.policy+`:4: unknown action "write"`) {
		t.Errorf("bad policy: got %v and\n%s\nwant exit 1 naming line 4", err, stdout)
	}
}
