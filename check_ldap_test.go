package main

import (
	"errors"
	"path/filepath"
	"strings"
	"testing"

	"github.com/registry-auth/registry-auth/internal/cli"
)

// checkLDAPFiles are the files of a `check` against the test directory: robot in the
// htpasswd file, Dave in a groups-file group, the service account's password file.
type checkLDAPFiles struct {
	htpasswd, groups, secret, wrongSecret string
}

func newCheckLDAPFiles(t *testing.T) checkLDAPFiles {
	t.Helper()
	f := newTestFiles(t, htpasswdLines(t, "robot", "robot-file-secret"), "pusher: robot\nreleasers: Dave\n")
	c := checkLDAPFiles{htpasswd: f.htpasswd, groups: f.groups,
		secret: filepath.Join(f.dir, "ldap-secret"), wrongSecret: filepath.Join(f.dir, "wrong-secret")}
	writeFile(t, c.secret, testReaderPW+"\n")
	writeFile(t, c.wrongSecret, "not-the-reader-password\n")
	return c
}

// args are the flags of a check of s as the service would use it, then extra.
func (c checkLDAPFiles) args(s *slapdServer, extra ...string) []string {
	return append([]string{"check", "--htpasswd", c.htpasswd, "--groups", c.groups,
		"--ldap-url", s.url + testBaseDN + "?uid?sub?(objectClass=inetOrgPerson)",
		"--ldap-bind-dn", testReaderDN, "--ldap-bind-password-file", c.secret,
		"--ldap-group-base", testGroupBase, "--ldap-timeout", "2s"}, extra...)
}

// TestCheckLDAP: `check` with a directory connects and binds as the service would, and
// with --ldap-test-user shows the entry and the groups a login would get, or why a login
// with that name is refused; exit status 1 (cli.ExitStatus(1)) whenever the service could not
// use the directory or the user.
func TestCheckLDAP(t *testing.T) {
	t.Parallel()
	s := startSlapd(t)
	f := newCheckLDAPFiles(t)
	plain := s.url + testBaseDN + "?uid?sub?(objectClass=inetOrgPerson)"
	ldaps := s.ldapsURL + testBaseDN + "?uid?sub?(objectClass=inetOrgPerson)"
	tests := []struct {
		name  string
		args  []string
		env   map[string]string
		fails bool     // cli.ExitStatus(1)
		want  []string // lines of the output, in order ({P} is plain's host:port, {S} ldaps')
		never []string // text the output must not hold
	}{
		{name: "service account binds", args: f.args(s),
			want: []string{`ldap: connected to ldap://{P}, bound as ` + testReaderDN}},
		{name: "anonymous searches", args: []string{"check", "--htpasswd", f.htpasswd, "--groups", f.groups, "--ldap-url", plain, "--ldap-test-user", "alice"},
			want: []string{
				`ldap: connected to ldap://{P}, searching anonymously (no --ldap-bind-dn)`,
				`ldap: user "alice" is uid=alice,ou=people,dc=example,dc=com, named "alice"`,
				`ldap: no directory groups: --ldap-group-base is empty`,
			}},
		{name: "user with a direct group", args: f.args(s, "--ldap-test-user", "alice"),
			want: []string{
				`ldap: user "alice" is uid=alice,ou=people,dc=example,dc=com, named "alice"`,
				`ldap: directory group "pusher" (cn=pusher,ou=groups,dc=example,dc=com)`,
			},
			never: []string{"nested"}},
		{name: "nested group", args: f.args(s, "--ldap-test-user", "bob"),
			want: []string{
				`ldap: user "bob" is uid=bob,ou=people,dc=example,dc=com, named "bob"`,
				`ldap: directory group "devs" (cn=devs,ou=groups,dc=example,dc=com)`,
				`ldap: directory group "builders" (cn=builders,ou=groups,dc=example,dc=com, through 1 nested group)`,
			}},
		{name: "name case differs, from the variable", args: f.args(s), env: map[string]string{"REGISTRY_AUTH_LDAP_TEST_USER": "dave"},
			want: []string{
				`ldap: user "dave" is uid=Dave,ou=people,dc=example,dc=com, named "Dave" (the directory's spelling`,
				`ldap: Dave is in no directory group under ou=groups,dc=example,dc=com`,
				`ldap: groups file groups of Dave: releasers`,
			}},
		{name: "unknown user", args: f.args(s, "--ldap-test-user", "nobody"), fails: true,
			want: []string{`ldap: error: no entry for user "nobody": searched (&(objectClass=inetOrgPerson)(uid=nobody)) under "dc=example,dc=com" (scope sub); a login with this name is refused as an unknown user`}},
		{name: "two entries", args: f.args(s, "--ldap-test-user", "twin"), fails: true,
			want: []string{`ldap: error: user "twin" matches several entries: searched (&(objectClass=inetOrgPerson)(uid=twin))`}},
		{name: "filter injection is a name like any other", args: f.args(s, "--ldap-test-user", "*"), fails: true,
			want: []string{`ldap: error: no entry for user "*": searched (&(objectClass=inetOrgPerson)(uid=\2a))`}},
		{name: "wrong service-account password", args: f.args(s, "--ldap-bind-password-file", f.wrongSecret, "--ldap-test-user", "alice"), fails: true,
			want:  []string{`ldap: error: connected to ldap://{P}, but the service account ` + testReaderDN + ` cannot bind: check --ldap-bind-dn and the password in --ldap-bind-password-file`},
			never: []string{"not-the-reader-password", "ldap: user"}},
		{name: "missing password file", args: f.args(s, "--ldap-bind-password-file", f.secret+".missing"), fails: true,
			want: []string{`ldap: error: --ldap-bind-password-file: stat ` + f.secret + `.missing: no such file`}},
		{name: "ldaps with the CA", args: f.args(s, "--ldap-url", ldaps, "--ldap-ca", s.caFile, "--ldap-test-user", "alice"),
			want: []string{`ldap: connected to ldaps://{S}, bound as ` + testReaderDN, `ldap: user "alice" is uid=alice`}},
		{name: "ldaps without the CA", args: f.args(s, "--ldap-url", ldaps), fails: true,
			want: []string{`ldap: error: cannot connect to ` + ldaps + `: {S}: the directory's certificate is signed by a CA not trusted here: give --ldap-ca the PEM of that CA`}},
		{name: "StartTLS with the CA", args: f.args(s, "--ldap-starttls", "--ldap-ca", s.caFile),
			want: []string{`ldap: connected to ldap://{P}, StartTLS, bound as ` + testReaderDN}},
		{name: "StartTLS without the CA", args: f.args(s, "--ldap-starttls"), fails: true,
			want: []string{`ldap: error: cannot connect to ` + plain + `: StartTLS with {P}: the directory's certificate is signed by a CA not trusted here: give --ldap-ca`}},
		{name: "a CA file without a certificate", args: f.args(s, "--ldap-url", ldaps, "--ldap-ca", f.groups), fails: true,
			want: []string{`ldap: error: --ldap-ca ` + f.groups + ` holds no PEM certificate`}},
		{name: "settings are validated", args: f.args(s, "--ldap-bind-password-file", "", "--ldap-group-depth", "-1"), fails: true,
			want: []string{
				`ldap: error: --ldap-bind-dn and --ldap-bind-password-file go together`,
				`ldap: error: --ldap-group-depth -1: want 0 or more`,
			},
			never: []string{"ldap: connected"}},
		{name: "a second host answers", args: f.args(s, "--ldap-url", "ldap://"+freeLoopbackAddr(t)+" "+strings.TrimPrefix(plain, "ldap://")),
			want: []string{`ldap: connected to ldap://{P}, bound as ` + testReaderDN}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			stdout, stderr, err := runCLI(t, tt.env, "", tt.args...)
			if tt.fails != errors.Is(err, cli.ExitStatus(1)) || (err != nil && !errors.Is(err, cli.ExitStatus(1))) {
				t.Errorf("got error %v, want cli.ExitStatus(1) %v; output:\n%s", err, tt.fails, stdout)
			}
			if stderr != "" {
				t.Errorf("got %q on standard error, want nothing", stderr)
			}
			lines := strings.Split(strings.TrimSuffix(stdout, "\n"), "\n")
			next := 0 // the wanted lines come in order
			for _, want := range tt.want {
				want = strings.NewReplacer("{P}", hostPort(s.url), "{S}", hostPort(s.ldapsURL)).Replace(want)
				found := false
				for ; next < len(lines) && !found; next++ {
					found = strings.HasPrefix(lines[next], want)
				}
				if !found {
					t.Errorf("no line starts with %q (after the lines wanted before it) in:\n%s", want, stdout)
				}
			}
			for _, never := range append(tt.never, testReaderPW) {
				if strings.Contains(stdout, never) {
					t.Errorf("the output holds %q:\n%s", never, stdout)
				}
			}
		})
	}
}

// TestCheckLDAPDirectoryDown: a stopped directory is an error line saying what to check,
// exit status 1; the files are still reported.
func TestCheckLDAPDirectoryDown(t *testing.T) {
	t.Parallel()
	s := startSlapd(t)
	f := newCheckLDAPFiles(t)
	if stdout, _, err := runCLI(t, nil, "", f.args(s, "--ldap-test-user", "alice")...); err != nil {
		t.Fatalf("with the directory up: got %v, want success; output:\n%s", err, stdout)
	}
	s.stop()
	stdout, stderr, err := runCLI(t, nil, "", f.args(s, "--ldap-test-user", "alice")...)
	if !errors.Is(err, cli.ExitStatus(1)) || stderr != "" {
		t.Errorf("got error %v and stderr %q, want cli.ExitStatus(1) (exit status 1) and nothing on stderr", err, stderr)
	}
	lines := strings.Split(strings.TrimSuffix(stdout, "\n"), "\n")
	want := "ldap: error: cannot connect to " + s.url + testBaseDN + "?uid?sub?(objectClass=inetOrgPerson): " + hostPort(s.url) + ": "
	if !hasLineWithPrefix(lines, want) || !strings.Contains(stdout, "connection refused") || !strings.Contains(stdout, "check that the directory runs") {
		t.Errorf("no line starts with %q naming the refused connection and what to check, in:\n%s", want, stdout)
	}
	if !hasLineWithPrefix(lines, `1 users, 2 groups, 1 in push group "pusher"; 0 errors, 0 warnings`) {
		t.Errorf("the files' summary is missing:\n%s", stdout)
	}
	if strings.Contains(stdout, "ldap: user") {
		t.Errorf("a user was reported with the directory down:\n%s", stdout)
	}
}

// TestCheckLDAPUsage: --ldap-test-user needs --ldap-url, and check needs a source of users;
// both are usage errors (not reports) saying what to add.
func TestCheckLDAPUsage(t *testing.T) {
	t.Parallel()
	h, g := checkFiles(t, htpasswdLines(t, "alice", "pw"), "pusher: alice\n")
	tests := []struct {
		name string
		args []string
		env  map[string]string
		want string
	}{
		{"test user flag", []string{"--htpasswd", h, "--groups", g, "--ldap-test-user", "alice"}, nil,
			"--ldap-test-user needs --ldap-url: add --ldap-url and the other --ldap-* settings the service runs with"},
		{"test user variable", []string{"--htpasswd", h, "--groups", g}, map[string]string{"REGISTRY_AUTH_LDAP_TEST_USER": "alice"},
			"--ldap-test-user needs --ldap-url"},
		{"no source of users", []string{"--htpasswd", "", "--groups", g}, nil,
			"--htpasswd is empty: give the path of the htpasswd file, or --ldap-url"},
	}
	for _, tt := range tests {
		stdout, _, err := runCLI(t, tt.env, "", append([]string{"check"}, tt.args...)...)
		if err == nil || errors.Is(err, cli.ExitStatus(1)) || !strings.Contains(err.Error(), tt.want) || stdout != "" {
			t.Errorf("%s: got error %v and output %q, want an error containing %q and no output", tt.name, err, stdout, tt.want)
		}
	}
}

// TestCheckLDAPWarnings: with a directory, check's warnings say what the directory may
// supply instead of claiming that nobody can push (the loader's own cases are in
// TestLoadWarningsWithDirectory).
func TestCheckLDAPWarnings(t *testing.T) {
	t.Parallel()
	s := startSlapd(t)
	f := newCheckLDAPFiles(t)
	writeFile(t, f.groups, "releasers: Dave carol\n")
	stdout, _, err := runCLI(t, nil, "", f.args(s)...)
	if err != nil {
		t.Fatalf("got %v, want success; output:\n%s", err, stdout)
	}
	lines := strings.Split(strings.TrimSuffix(stdout, "\n"), "\n")
	want := f.groups + `: warning: the push group "pusher" has no members in the files: the directory's groups decide who may push ` +
		"(`registry-auth check --ldap-test-user NAME` shows a user's directory groups)"
	if !hasLineWithPrefix(lines, want) || strings.Contains(stdout, "nobody can push") || strings.Contains(stdout, "is not in") {
		t.Errorf("got:\n%s\nwant the line %q and no claim that nobody can push or that a member is missing", stdout, want)
	}
	// The same files without the directory: the old warnings, word for word.
	stdout, _, _ = runCLI(t, nil, "", "check", "--htpasswd", f.htpasswd, "--groups", f.groups)
	for _, want := range []string{
		f.groups + `:1: warning: member "Dave" of group "releasers" is not in ` + f.htpasswd,
		f.groups + `: warning: the push group "pusher" has no members: nobody can push`,
	} {
		if !strings.Contains(stdout, want+"\n") {
			t.Errorf("without a directory: no line %q in:\n%s", want, stdout)
		}
	}
}

// TestLoadWarningsWithDirectory: the loader's warnings about empty groups and users the
// files lack, without a directory (the old text, word for word), with a directory of users
// (nothing said of users: they may be the directory's) and with directory groups too (the
// directory decides, and check --ldap-test-user shows how).
func TestLoadWarningsWithDirectory(t *testing.T) {
	t.Parallel()
	const hint = " (`registry-auth check --ldap-test-user NAME` shows a user's directory groups)"
	users := htpasswdLines(t, "robot", "pw")
	groups := []byte("releasers: robot carol\n")
	policy := []byte("rules:\n  - subjects: [user:carol, group:admins]\n    repositories: [\"**\"]\n    actions: [pull, push]\n")
	tests := []struct {
		name   string
		src    sources
		policy bool
		want   []string // every warning, in order
	}{
		{name: "push group, no directory", src: sources{pushGroup: "pusher"},
			want: []string{
				`g:1: warning: member "carol" of group "releasers" is not in h`,
				`g: warning: the push group "pusher" has no members: nobody can push`,
			}},
		{name: "push group, directory without groups", src: sources{pushGroup: "pusher", directory: true},
			want: []string{`g: warning: the push group "pusher" has no members: nobody can push`}},
		{name: "push group, directory groups", src: sources{pushGroup: "pusher", directory: true, directoryGroups: true},
			want: []string{`g: warning: the push group "pusher" has no members in the files: the directory's groups decide who may push` + hint}},
		{name: "push group with members, directory groups", src: sources{pushGroup: "releasers", directory: true, directoryGroups: true}},
		{name: "policy, no directory", src: sources{pushGroup: "pusher"}, policy: true,
			want: []string{
				`g:1: warning: member "carol" of group "releasers" is not in h`,
				`p:2: warning: user "carol" is not in h`,
				`p:2: warning: group "admins" has no members in g`,
			}},
		{name: "policy, directory without groups", src: sources{pushGroup: "pusher", directory: true}, policy: true,
			want: []string{`p:2: warning: group "admins" has no members in g`}},
		{name: "policy, directory groups", src: sources{pushGroup: "pusher", directory: true, directoryGroups: true}, policy: true,
			want: []string{`p:2: warning: group "admins" has no members in g: the directory's groups decide` + hint}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			set := testFileSet("h", []byte(users), "g", groups)
			if tt.policy {
				set.files = append(set.files, loadedFile{role: rolePolicy, path: "p", data: policy})
			}
			res, err := buildSnapshot(set, tt.src)
			if err != nil {
				t.Fatal(err)
			}
			var got []string
			for _, p := range res.problems {
				got = append(got, p.String())
			}
			if strings.Join(got, "\n") != strings.Join(tt.want, "\n") {
				t.Errorf("got warnings\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(tt.want, "\n"))
			}
		})
	}
}

// TestExplainDirectoryUser: explain with the service's --ldap-* settings explains a
// directory user with the directory's spelling of the name and groups (nested ones too), and
// answers a name a login would be refused under as the service would.
func TestExplainDirectoryUser(t *testing.T) {
	t.Parallel()
	s := startSlapd(t)
	c := newCheckLDAPFiles(t)
	policyFile := filepath.Join(filepath.Dir(c.htpasswd), "policy.yaml")
	writeFile(t, policyFile, "rules:\n  - subjects: [group:builders]\n    repositories: [\"team/**\"]\n    actions: [pull, push]\n  - subjects: [authenticated]\n    repositories: [\"**\"]\n    actions: [pull]\n")
	tests := []struct {
		user   string
		want   string // the first line starts so
		status error
	}{
		{"bob", "allowed (granted)", nil},                  // devs, nested in builders
		{"alice", "refused 403: alice", cli.ExitStatus(1)}, // pusher is no builders
		{"DAVE", "refused 403: DAVE", cli.ExitStatus(1)},   // found as Dave, in no group
		{"nobody", `refused 401: "nobody" is in neither the htpasswd file nor the directory`, cli.ExitStatus(1)},
		{"twin", `refused 401: "twin" matches several directory entries`, cli.ExitStatus(1)},
		{"ROBOT", `refused 403: the directory spells "ROBOT" as "robot", a user of`, cli.ExitStatus(1)},
	}
	for _, tt := range tests {
		args := c.args(s, "--policy", policyFile, tt.user, "PUT", "/v2/team/app/manifests/1")
		args[0] = "explain"
		stdout, stderr, err := runCLI(t, nil, "", args...)
		if !strings.HasPrefix(stdout, tt.want) || err != tt.status {
			t.Errorf("explain %s: got %q (%v), stderr %q; want a line starting %q (%v)", tt.user, stdout, err, stderr, tt.want, tt.status)
		}
	}
	// Without the directory flags, a directory user is explained as if the file had them.
	stdout, stderr, _ := runCLI(t, nil, "", "explain", "--htpasswd", c.htpasswd, "--groups", c.groups, "--policy", policyFile, "bob", "PUT", "/v2/team/app/manifests/1")
	if !strings.HasPrefix(stdout, "refused 403") || !strings.Contains(stderr, "explained as if it were") {
		t.Errorf("without --ldap-url: got %q, stderr %q; want a 403 and the warning", stdout, stderr)
	}
}
