package main

import (
	"log/slog"
	"maps"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/registry-auth/registry-auth/internal/htpasswd"
	"github.com/registry-auth/registry-auth/internal/htpasswd/htpasswdtest"
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

// TestRefusedLinesSkipped: the problems of a refused line reach the load result with the
// file's name, and the other users still load.
func TestRefusedLinesSkipped(t *testing.T) {
	t.Parallel()
	data := htpasswdtest.Read(t, "refused.htpasswd")
	res, err := buildSnapshot(testFileSet("testdata/refused.htpasswd", data, "", nil), sources{pushGroup: "pusher"})
	if err != nil {
		t.Fatal(err)
	}
	if users := slices.Sorted(maps.Keys(res.snap.users)); !slices.Equal(users, []string{"good1", "good2"}) {
		t.Errorf("got users %q, want good1 and good2", users)
	}
	var got []string
	for _, p := range res.problems {
		got = append(got, p.String())
	}
	for _, want := range []string{
		`testdata/refused.htpasswd:7: error: user "des" skipped: DES crypt hash refused`,
		`testdata/refused.htpasswd:10: error: user "plain" skipped: plain-text or unknown hash refused`,
		`testdata/refused.htpasswd:13: warning: user "good2" has a weak APR1-MD5 hash`,
	} {
		if !slices.ContainsFunc(got, func(p string) bool { return strings.HasPrefix(p, want) }) {
			t.Errorf("got %q, want a problem starting %q", got, want)
		}
	}
}

// TestEmptyFile: buildSnapshot refuses a file with no usable users with a message that says
// how to add one.
func TestEmptyFile(t *testing.T) {
	t.Parallel()
	tests := []struct{ name, data, want string }{
		{"empty.htpasswd", string(htpasswdtest.Read(t, "empty.htpasswd")), "users.htpasswd: no usable users: add one with `registry-auth user add --htpasswd users.htpasswd USER`"},
		{"zero bytes", "", "users.htpasswd: no usable users: add one with `registry-auth user add --htpasswd users.htpasswd USER`"},
		// The skipped lines are named, so the operator need not run check to see why.
		{"only refused users", "bob:plain\n", "users.htpasswd: no usable users; skipped line 1: user \"bob\" skipped: plain-text or unknown hash refused (Apache accepts plain text only on Windows); re-create the user with `registry-auth hash` or `htpasswd -B`: fix those lines, or add a user with `registry-auth user add --htpasswd users.htpasswd USER`"},
		{"five bad lines", "a\nb\nc\nd\ne\n", "users.htpasswd: no usable users; skipped line 1: no colon: want user:hash; line 2: no colon: want user:hash; line 3: no colon: want user:hash; and 2 more (registry-auth check lists them): fix those lines, or add a user with `registry-auth user add --htpasswd users.htpasswd USER`"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			_, err := buildSnapshot(testFileSet("users.htpasswd", []byte(tt.data), "", nil), sources{pushGroup: "pusher"})
			want := tt.want
			if err == nil || err.Error() != want {
				t.Errorf("got %v, want %q", err, want)
			}
		})
	}
}

// TestGroupsCheckedAgainstUsers: buildSnapshot names group members missing from the htpasswd
// file and an empty push group.
func TestGroupsCheckedAgainstUsers(t *testing.T) {
	t.Parallel()
	users := htpasswdtest.Read(t, "apache.htpasswd")
	groups := htpasswdtest.Read(t, "apache.groups")
	tests := []struct {
		name      string
		pushGroup string
		want      []string // messages, in order, of the problems without a line number
	}{
		{"pusher", "pusher", []string{
			`member "frank" of group "ghosts" is not in apache.htpasswd`,
			`member "a b" of group "pusher" is not in apache.htpasswd`,
			`member "c\"d" of group "pusher" is not in apache.htpasswd`,
		}},
		{"empty push group", "nobody", []string{
			`member "frank" of group "ghosts" is not in apache.htpasswd`,
			`member "a b" of group "pusher" is not in apache.htpasswd`,
			`member "c\"d" of group "pusher" is not in apache.htpasswd`,
			`the push group "nobody" has no members: nobody can push`,
		}},
		{"missing push group", "pushers", []string{
			`member "frank" of group "ghosts" is not in apache.htpasswd`,
			`member "a b" of group "pusher" is not in apache.htpasswd`,
			`member "c\"d" of group "pusher" is not in apache.htpasswd`,
			`the push group "pushers" has no members: nobody can push`,
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			res, err := buildSnapshot(testFileSet("apache.htpasswd", users, "apache.groups", groups), sources{pushGroup: tt.pushGroup})
			if err != nil {
				t.Fatal(err)
			}
			var got []string
			for _, p := range res.problems {
				// The file-wide warnings, and the members the htpasswd file lacks (on the
				// line that names them, tested by TestGroupMemberProblemsAndCount).
				if p.Line == 0 || strings.HasPrefix(p.Message, "member ") {
					if p.File != "apache.groups" || p.Severity != htpasswd.Warning {
						t.Errorf("got %v, want a warning about apache.groups", p)
					}
					got = append(got, p.Message)
				}
			}
			if !slices.Equal(got, tt.want) {
				t.Errorf("got %q, want %q", got, tt.want)
			}
			if !res.snap.inGroup("erin", "pusher") || res.snap.inGroup("carol", "pusher") {
				t.Error("got erin not in pusher or carol in it, want erin in, carol out")
			}
		})
	}
}

// TestGroupDNSpelledOtherwise: a push group named by a DN and the groups file's line for the
// same DN with other spaces and case are one group everywhere, by one rule (groupKey): the
// policy grants the push, check counts the member, and so does the members metric.
func TestGroupDNSpelledOtherwise(t *testing.T) {
	t.Parallel()
	f := newTestFiles(t, htpasswdLines(t, "alice", "alice-secret"), "cn=Registry Pushers, OU=groups: alice\n")
	const pushGroup = "cn=Registry Pushers,ou=groups"
	stdout, _, err := runCLI(t, nil, "", "check", "--htpasswd", f.htpasswd, "--groups", f.groups, "--push-group", pushGroup)
	if err != nil || !strings.Contains(stdout, `1 in push group "`+pushGroup+`"; 0 errors, 0 warnings`) {
		t.Errorf("check: got %v and\n%s\nwant alice counted in the push group and no warning", err, stdout)
	}
	cfg := testConfig(f, time.Minute)
	cfg.files.pushGroup = pushGroup
	m := newMetrics()
	st := newStore(cfg, slog.New(slog.DiscardHandler), m)
	if err := st.reload("test"); err != nil {
		t.Fatal(err)
	}
	if got := testutil.ToFloat64(m.pushGroupMembers); got != 1 {
		t.Errorf("got registry_auth_push_group_members %v, want 1", got)
	}
	h := testAuthHandler(st, m, nil)
	if resp := askAs(h, "192.0.2.1", "PUT", "/v2/app/manifests/1", "alice", "alice-secret"); resp.StatusCode != 200 {
		t.Errorf("alice's push: got %d, want 200", resp.StatusCode)
	}
}
