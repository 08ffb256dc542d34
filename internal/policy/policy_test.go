package policy

import (
	"github.com/registry-auth/registry-auth/internal/registry"
	"github.com/registry-auth/registry-auth/internal/registry/registrytest"
	"os"
	"strings"
	"testing"
)

// loadTestPolicy compiles testdata/policy.yaml.
func loadTestPolicy(t *testing.T) *Policy {
	t.Helper()
	data, err := os.ReadFile("testdata/policy.yaml")
	if err != nil {
		t.Fatal(err)
	}
	p, _, err := Parse(data, "testdata/policy.yaml")
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// policyCase is one request of a decision table: who, what, and the answer.
type policyCase struct {
	why     string
	id      Identity
	method  string
	uri     string
	allowed bool
	rule    int // position of the rule deciding the first refused access (or the main one); 0: none
}

func user(name string, groups ...string) Identity { return Identity{User: name, Groups: groups} }

var anonymous = Identity{Anonymous: true}

// TestPolicyDecisionTable: every kind of rule in testdata/policy.yaml, each case naming why.
func TestPolicyDecisionTable(t *testing.T) {
	t.Parallel()
	p := loadTestPolicy(t)
	const m = "/manifests/latest"
	mount := func(to, from string) string {
		return "/v2/" + to + "/blobs/uploads/?mount=" + registrytest.Digest + "&from=" + from
	}
	for _, tt := range []policyCase{
		{"an admin pushes anywhere", user("alice", "admins"), "PUT", "/v2/any/thing" + m, true, 1},
		{"an admin deletes anywhere", user("alice", "admins"), "DELETE", "/v2/payments/api" + m, true, 1},
		{"an explicit deny stops later rules, even the public one", user("mallory"), "GET", "/v2/public/base" + m, false, 2},
		{"an explicit deny covers her own namespace too", user("mallory"), "GET", "/v2/mallory/app" + m, false, 2},
		{"a user pushes to their personal namespace", user("carol"), "PUT", "/v2/carol/app" + m, true, 3},
		{"and deletes there", user("carol"), "DELETE", "/v2/carol/app/sub" + m, true, 3},
		{"but not to someone else's", user("carol"), "PUT", "/v2/dave/app" + m, false, 8},
		{"${user} is the whole component, not a prefix", user("carol"), "PUT", "/v2/carolyn/app" + m, false, 8},
		{"${user}/** needs something after the name", user("carol"), "PUT", "/v2/carol" + m, false, 8},
		{"a user whose name is no path component gets no personal namespace", user("Carol"), "PUT", "/v2/carol/app" + m, false, 8},
		{"nor one whose name holds a slash, below that path", user("carol/app"), "PUT", "/v2/carol/app/x" + m, false, 8},
		{"a team member pushes to the team repository", user("bob", "payments"), "PUT", "/v2/payments" + m, true, 4},
		{"and below it", user("bob", "payments"), "POST", "/v2/payments/api/blobs/uploads/", true, 4},
		{"but may not delete there", user("bob", "payments"), "DELETE", "/v2/payments/api" + m, false, 4},
		{"a named robot pushes to the team repositories", user("ci-bot"), "PATCH", "/v2/payments/api/blobs/uploads/u-1", true, 4},
		{"a team member only reads elsewhere", user("bob", "payments"), "PUT", "/v2/other" + m, false, 8},
		{"a read-only robot reads team/* one level deep", user("robot"), "GET", "/v2/team/app" + m, true, 5},
		{"its rule grants no push", user("robot"), "PUT", "/v2/team/app" + m, false, 5},
		{"two levels down another rule decides", user("robot"), "GET", "/v2/team/app/x" + m, true, 8},
		{"anonymous pulls a public repository", anonymous, "GET", "/v2/public/base" + m, true, 7},
		{"anonymous heads a public blob", anonymous, "HEAD", "/v2/public/base/blobs/" + registrytest.Digest, true, 7},
		{"anonymous may not push there", anonymous, "PUT", "/v2/public/base" + m, false, 7},
		{"anonymous reads nothing else", anonymous, "GET", "/v2/team/app" + m, false, 0},
		{"anonymous never gets /v2/", anonymous, "GET", "/v2/", false, 0},
		{"a user lists tags by the catch-all", user("carol"), "GET", "/v2/team/app/tags/list", true, 8},
		{"a user gets /v2/", user("carol"), "GET", "/v2/", true, 0},
		{"an admin lists the catalog", user("alice", "admins"), "GET", "/v2/_catalog", true, 0},
		{"nobody else does", user("carol"), "GET", "/v2/_catalog", false, 0},
		{"nor anonymous", anonymous, "GET", "/v2/_catalog", false, 0},
		{"cancelling an upload is push", user("carol"), "DELETE", "/v2/carol/app/blobs/uploads/u-1", true, 3},
		{"which a reader lacks", user("carol"), "DELETE", "/v2/other/blobs/uploads/u-1", false, 8},
		{"a mount needs pull on the source", user("bob", "payments"), "POST", mount("payments/api", "team/base"), true, 4},
		{"a mount from a source the catch-all lets him read", user("bob", "payments"), "POST", mount("payments/api", "mallory-only/x"), true, 4},
		{"mallory's mount is refused at the target", user("mallory"), "POST", mount("mallory/x", "public/base"), false, 2},
		{"a mount from a source nobody but admins reads is refused for the source", user("bob", "payments"), "POST", mount("payments/api", "secret/base"), false, 6},
		{"an admin mounts from it", user("alice", "admins"), "POST", mount("payments/api", "secret/base"), true, 1},
		{"a deny rule of no actions stops the catch-all", user("carol"), "GET", "/v2/secret/x" + m, false, 6},
	} {
		req, err := registry.ParseRequest(tt.method, tt.uri)
		if err != nil {
			t.Fatalf("%s: %s %s: %v", tt.why, tt.method, tt.uri, err)
		}
		v := p.Decide(tt.id, req)
		if v.Allowed != tt.allowed {
			t.Errorf("%s: %s %s as %+v: got allowed %v (%s; %s), want %v", tt.why, tt.method, tt.uri, tt.id, v.Allowed, v.Reason, p.Explain(v), tt.allowed)
			continue
		}
		if got := decidingRule(v); got != tt.rule {
			t.Errorf("%s: %s %s: got rule %d deciding (%s), want %d", tt.why, tt.method, tt.uri, got, p.Explain(v), tt.rule)
		}
	}
}

// decidingRule is the position of the rule that decided the first refused access, or the
// first access when all were granted; 0 when no rule did.
func decidingRule(v Verdict) int {
	for _, r := range v.rulings[:v.n] {
		if !v.Allowed && r.Access.Needs&^r.Granted == 0 {
			continue
		}
		if r.rule == nil {
			return 0
		}
		return r.rule.position
	}
	return 0
}

// TestMountFromUnreadableSource: a mount from a repository the pusher may not read is refused
// for the source alone, with a reason of its own (the handler answers it apart).
func TestMountFromUnreadableSource(t *testing.T) {
	t.Parallel()
	data := []byte(`rules:
  - subjects: [group:payments]
    repositories: ["payments/**"]
    actions: [pull, push]
`)
	p, _, err := Parse(data, "p.yaml")
	if err != nil {
		t.Fatal(err)
	}
	req, err := registry.ParseRequest("POST", "/v2/payments/api/blobs/uploads/?mount="+registrytest.Digest+"&from=secret/base")
	if err != nil {
		t.Fatal(err)
	}
	v := p.Decide(user("bob", "payments"), req)
	if v.Allowed || v.Reason != "mount_source_not_readable" {
		t.Errorf("got allowed %v reason %q, want refused for mount_source_not_readable", v.Allowed, v.Reason)
	}
}

// TestBuiltinPolicyIsTheApacheRecipe: without --policy, any valid user pulls and lists the
// catalog, only the push group pushes and deletes, and nobody anonymous gets anything.
func TestBuiltinPolicyIsTheApacheRecipe(t *testing.T) {
	t.Parallel()
	p := Builtin("Pusher")
	pusher, reader := user("alice", "pusher"), user("bob", "readers")
	for _, tt := range []policyCase{
		{"a reader pulls", reader, "GET", "/v2/a/b/manifests/x", true, 2},
		{"a reader may not push", reader, "PUT", "/v2/a/manifests/x", false, 2},
		{"nor delete", reader, "DELETE", "/v2/a/manifests/x", false, 2},
		{"nor cancel an upload", reader, "DELETE", "/v2/a/blobs/uploads/u", false, 2},
		{"a reader mounts nothing", reader, "POST", "/v2/a/blobs/uploads/?mount=" + registrytest.Digest + "&from=b", false, 2},
		{"a reader lists the catalog", reader, "GET", "/v2/_catalog", true, 0},
		{"the push group pushes", pusher, "PUT", "/v2/a/manifests/x", true, 1},
		{"and deletes", pusher, "DELETE", "/v2/a/blobs/" + registrytest.Digest, true, 1},
		{"and mounts from anywhere", pusher, "POST", "/v2/a/blobs/uploads/?mount=" + registrytest.Digest + "&from=b", true, 1},
		{"anonymous gets nothing", anonymous, "GET", "/v2/a/manifests/x", false, 0},
	} {
		req, err := registry.ParseRequest(tt.method, tt.uri)
		if err != nil {
			t.Fatal(err)
		}
		v := p.Decide(tt.id, req)
		if v.Allowed != tt.allowed || decidingRule(v) != tt.rule {
			t.Errorf("%s: got allowed %v by rule %d (%s), want %v by %d", tt.why, v.Allowed, decidingRule(v), p.Explain(v), tt.allowed, tt.rule)
		}
	}
}

// TestPolicyFileErrors: every mistake is an error naming its line, and says how to fix it.
func TestPolicyFileErrors(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		name, data string
		want       []string // each must appear in the error
	}{
		{"empty file", "", []string{"p.yaml: the file is empty", "rules: []"}},
		{"only a comment", "# nothing\n", []string{"the file is empty"}},
		{"no rules key", "catalog: [authenticated]\n", []string{`no "rules:" key`}},
		{"unknown top key", "rules: []\nadmins: [x]\n", []string{"line 2", `field admins not found at the top of the policy`}},
		{"unknown rule key", "rules:\n  - subjects: [authenticated]\n    repos: [x]\n    actions: []\n", []string{"line 3", "field repos not found in a rule"}},
		{"wrong type", "rules:\n  - subjects: authenticated\n    repositories: [x]\n    actions: []\n", []string{"line 2", "cannot unmarshal"}},
		{"duplicate key", "rules:\n  - subjects: [a]\n    subjects: [b]\n", []string{"line 3", `"subjects" already defined`}},
		{"not YAML", "rules: [\n", []string{"p.yaml"}},
		{"unknown subject", "rules:\n  - subjects: [everyone]\n    repositories: [x]\n    actions: []\n", []string{"p.yaml:2:", `unknown subject "everyone"`, "user:NAME"}},
		{"empty user", "rules:\n  - subjects:\n      - \"user:\"\n    repositories: [x]\n    actions: []\n", []string{"p.yaml:3:", `unknown subject "user:"`}},
		{"unknown action", "rules:\n  - subjects: [authenticated]\n    repositories: [x]\n    actions:\n      - pull\n      - write\n", []string{"p.yaml:6:", `unknown action "write"`, "pull, push and delete"}},
		{"bad pattern", "rules:\n  - subjects: [authenticated]\n    repositories: [\"team/[ab]\"]\n    actions: [pull]\n", []string{"p.yaml:3:", "team/[ab]"}},
		{"no actions", "rules:\n  - subjects: [authenticated]\n    repositories: [x]\n", []string{"p.yaml:2:", "no actions", "actions: []"}},
		{"no subjects", "rules:\n  - repositories: [x]\n    actions: [pull]\n", []string{"p.yaml:2:", "no subjects"}},
		{"no repositories", "rules:\n  - subjects: [anonymous]\n    actions: [pull]\n", []string{"p.yaml:2:", "no repositories"}},
		{"bad catalog subject", "rules: []\ncatalog: [admins]\n", []string{"p.yaml:2:", `catalog: unknown subject "admins"`}},
		{"every error at once", "rules:\n  - subjects: [x]\n    repositories: [\"A\"]\n    actions: [y]\n", []string{"p.yaml:2:", "p.yaml:3:", "p.yaml:4:"}},
	} {
		_, _, err := Parse([]byte(tt.data), "p.yaml")
		if err == nil {
			t.Errorf("%s: got no error", tt.name)
			continue
		}
		for _, w := range tt.want {
			if !strings.Contains(err.Error(), w) {
				t.Errorf("%s: error %q does not contain %q", tt.name, err, w)
			}
		}
	}
}
