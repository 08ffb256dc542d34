package main

import (
	"strings"
	"testing"
)

// TestPolicyWarnings: what check reports about a policy that loads but does not do what its
// author meant.
func TestPolicyWarnings(t *testing.T) {
	t.Parallel()
	policy := []byte(`rules:
  - subjects: [group:ops]
    repositories: ["team/**"]
    actions: [pull, push]
  - subjects: [group:OPS]
    repositories: ["team/app", "team/*"]
    actions: [delete]
  - subjects: [user:ghost]
    repositories: ["**"]
    actions: [push]
  - subjects: [group:nobody-here]
    repositories: ["x"]
    actions: [pull]
catalog: [user:alice]
`)
	set := testFileSet("users", []byte(htpasswdLines(t, "alice", "a")), "groups", []byte("ops: alice\n"))
	set.files = append(set.files, loadedFile{role: rolePolicy, path: "p.yaml", data: policy})
	res, err := buildSnapshot(set, sources{pushGroup: "pusher"})
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, p := range res.problems {
		got = append(got, p.String())
	}
	for _, want := range []string{
		"p.yaml:5: warning: rule 2 can never match: rule 1 (line 2) has the same subjects and covers all of its repositories",
		"p.yaml:8: warning: rule 3 grants push without pull",
		`p.yaml:8: warning: user "ghost" is not in users`,
		`p.yaml:11: warning: group "nobody-here" has no members in groups`,
	} {
		if !containsPrefix(got, want) {
			t.Errorf("no problem starting %q in:\n%s", want, strings.Join(got, "\n"))
		}
	}
	if len(got) != 4 {
		t.Errorf("got %d problems, want 4:\n%s", len(got), strings.Join(got, "\n"))
	}
}

func containsPrefix(lines []string, prefix string) bool {
	for _, l := range lines {
		if strings.HasPrefix(l, prefix) {
			return true
		}
	}
	return false
}
