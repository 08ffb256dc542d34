package main

import (
	"errors"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/registry-auth/registry-auth/internal/htpasswd"
	"github.com/registry-auth/registry-auth/internal/htpasswd/htpasswdtest"
)

// editEnv points the user and group commands at f's files through their variables.
func editEnv(f testFiles) map[string]string {
	return map[string]string{"REGISTRY_AUTH_HTPASSWD": f.htpasswd, "REGISTRY_AUTH_GROUPS": f.groups}
}

// mustRun runs the program and fails the test if it fails.
func mustRun(t *testing.T, env map[string]string, stdin string, args ...string) string {
	t.Helper()
	stdout, stderr, err := runCLI(t, env, stdin, args...)
	if err != nil {
		t.Fatalf("%s: %v\n%s%s", strings.Join(args, " "), err, stdout, stderr)
	}
	return stdout
}

func readString(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	must(t, err)
	return string(b)
}

// TestUserCommands: add, passwd, list, verify and remove, through run, as an operator types them.
func TestUserCommands(t *testing.T) {
	t.Parallel()
	f := newTestFiles(t, "# the registry's users\n"+htpasswdLines(t, "alice", "alice-pw")+"legacy:{SHA}F/WZ9PxtuIpP2yyadrWdU4eK0og=\n", "pusher: alice\n")
	env := editEnv(f)

	if out := mustRun(t, env, "bob-pw\n", "user", "add", "--cost", "4", "bob"); out != "added user bob to "+f.htpasswd+" (line 4)\n" {
		t.Errorf("add: got %q", out)
	}
	// Flags after the name count too.
	mustRun(t, env, "carol-pw\n", "user", "add", "carol", "--cost=5")
	mustRun(t, env, "bob-new\n", "user", "passwd", "bob", "--cost", "4")
	mustRun(t, nil, "", "group", "add", "--htpasswd", f.htpasswd, "--groups", f.groups, "pusher", "bob")

	out := mustRun(t, env, "", "user", "list")
	for _, want := range []*regexp.Regexp{
		regexp.MustCompile(`(?m)^alice +bcrypt +pusher$`),
		regexp.MustCompile(`(?m)^legacy +SHA-1 +- +! line 3: warning: user "legacy" has a weak SHA-1 hash`),
		regexp.MustCompile(`(?m)^bob +bcrypt +pusher$`),
		regexp.MustCompile(`(?m)^carol +bcrypt +-$`),
	} {
		if !want.MatchString(out) {
			t.Errorf("list: got\n%s\nwant a line matching %s", out, want)
		}
	}
	if got := strings.Count(out, "\n"); got != 4 {
		t.Errorf("list: got %d lines, want 4 (one per user)", got)
	}

	for _, tt := range []struct {
		user, password string
		ok             bool
	}{{"bob", "bob-new", true}, {"bob", "bob-pw", false}, {"carol", "carol-pw", true}, {"legacy", "sha1-secret", true}} {
		_, _, err := runCLI(t, env, tt.password+"\n", "user", "verify", tt.user)
		if (err == nil) != tt.ok {
			t.Errorf("verify %s %s: got %v, want ok=%v", tt.user, tt.password, err, tt.ok)
		}
	}
	if _, _, err := runCLI(t, env, "x\n", "user", "verify", "nobody"); err == nil || !strings.Contains(err.Error(), "no user") {
		t.Errorf("verify of an unknown user: got %v, want no user", err)
	}

	out = mustRun(t, env, "", "user", "remove", "bob")
	for _, want := range []string{"removed user bob from " + f.htpasswd + " (line 4)", "removed bob from the groups pusher in " + f.groups + " (line 1)"} {
		if !strings.Contains(out, want) {
			t.Errorf("remove: got %q, want %q", out, want)
		}
	}
	if got := readString(t, f.groups); got != "pusher: alice\n" {
		t.Errorf("groups after remove: got %q, want bob gone", got)
	}
	if strings.Contains(readString(t, f.htpasswd), "bob:") {
		t.Error("bob still in the htpasswd file")
	}
	if _, _, err := runCLI(t, env, "", "user", "remove", "bob"); err == nil || !strings.Contains(err.Error(), "no user") {
		t.Errorf("second remove: got %v, want no user", err)
	}
}

// TestApacheVerifiesWhatTheCommandsWrite: Apache's own `htpasswd -vb` accepts every password
// set by user add and user passwd, at the default cost too.
func TestApacheVerifiesWhatTheCommandsWrite(t *testing.T) {
	t.Parallel()
	htpasswdBin := htpasswdtest.Apache(t)
	f := newTestFiles(t, "", "")
	env := editEnv(f)
	mustRun(t, env, "first one\n", "user", "add", "--cost", "4", "ann")
	mustRun(t, env, "pässwörd:ü\n", "user", "add", "jürgen") // cost 10, the default
	mustRun(t, env, "second\n", "user", "passwd", "--cost", "5", "ann")
	for _, tt := range []struct {
		user, password string
		ok             bool
	}{{"ann", "second", true}, {"ann", "first one", false}, {"jürgen", "pässwörd:ü", true}} {
		out, err := exec.Command(htpasswdBin, "-vb", f.htpasswd, tt.user, tt.password).CombinedOutput()
		if (err == nil) != tt.ok {
			t.Errorf("htpasswd -vb %s %q: got %v (%s), want ok=%v", tt.user, tt.password, err, out, tt.ok)
		}
	}
}

// TestUserAddRefuses: what user add refuses, each time without touching the file.
func TestUserAddRefuses(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name, htpasswd, user, want string
	}{
		{"existing name", htpasswdLines(t, "bob", "pw"), "bob", "change its password with `registry-auth user passwd bob`"},
		{"existing name on a refused line", "bob:plain\n", "bob", "exists (HTPASSWD:1)"},
		{"empty", "", "", "it is empty"},
		{"colon", "", "a:b", "a colon ends the name"},
		{"comment", "", "#bob", "comment"},
		{"space", "", "bo b", "white space"},
		{"tab", "", "bob\t", "white space"},
		{"no-break space", "", "bo\u00a0b", "white space"},
		{"control character", "", "bob\x7f", "control character"},
		{"too long", "", strings.Repeat("b", htpasswd.MaxNameLen+1), "Apache reads lines of at most 8190"},
		{"errors elsewhere need --force", "alice\n", "bob", "HTPASSWD:1: error: no colon"},
		{"a robot token's name", "", "token+ci", `names starting with "token+" are robot tokens'`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			f := newTestFiles(t, tt.htpasswd, "")
			before, err := os.Stat(f.htpasswd)
			must(t, err)
			_, _, err = runCLI(t, editEnv(f), "pw\n", "user", "add", "--cost", "4", "--", tt.user)
			want := strings.ReplaceAll(tt.want, "HTPASSWD", f.htpasswd)
			if err == nil || !strings.Contains(err.Error(), want) {
				t.Errorf("got %v, want an error containing %q", err, want)
			}
			after, err := os.Stat(f.htpasswd)
			must(t, err)
			if !os.SameFile(before, after) || readString(t, f.htpasswd) != tt.htpasswd {
				t.Error("the file was replaced or changed")
			}
		})
	}
	f := newTestFiles(t, "alice\n", "")
	mustRun(t, editEnv(f), "pw\n", "user", "add", "--cost", "4", "--force", "bob")
	if got := readString(t, f.htpasswd); !strings.HasPrefix(got, "alice\nbob:$2y$04$") {
		t.Errorf("with --force: got %q, want bob added after the broken line", got)
	}
}

// TestPasswdMendsARefusedLine: the line that an error is about is the one passwd replaces,
// so no --force is needed, and nothing else on the line or in the file moves.
func TestPasswdMendsARefusedLine(t *testing.T) {
	t.Parallel()
	alice := "alice:" + htpasswdtest.Hash(t, "a") + "\r\n"
	f := newTestFiles(t, "# x\r\nbob:5SDgZoPskSJPc\r\n"+alice, "")
	mustRun(t, editEnv(f), "new\n", "user", "passwd", "--cost", "4", "bob")
	got := readString(t, f.htpasswd)
	if !regexp.MustCompile(`^# x\r\nbob:\$2y\$04\$[./A-Za-z0-9]{53}\r\n` + regexp.QuoteMeta(alice) + `$`).MatchString(got) {
		t.Errorf("got %q, want only bob's hash changed", got)
	}
	if _, _, err := runCLI(t, editEnv(f), "new\n", "user", "passwd", "--cost", "4", "nobody"); err == nil || !strings.Contains(err.Error(), "user add nobody") {
		t.Errorf("passwd of an unknown user: got %v, want a hint to use user add", err)
	}
}

// TestCRLFFileKeepsItsLineEnds: every command leaves a CRLF file CRLF, untouched lines byte
// for byte.
func TestCRLFFileKeepsItsLineEnds(t *testing.T) {
	t.Parallel()
	head := "# users, edited on Windows\r\n\r\n" + strings.ReplaceAll(htpasswdLines(t, "alice", "a", "bob", "b"), "\n", "\r\n")
	f := newTestFiles(t, head, "# groups\r\npusher: alice\r\n")
	env := editEnv(f)
	mustRun(t, env, "c\n", "user", "add", "--cost", "4", "carol")
	mustRun(t, env, "", "group", "add", "pusher", "carol")
	mustRun(t, env, "", "group", "add", "readers", "bob")
	mustRun(t, env, "c2\n", "user", "passwd", "--cost", "4", "carol")
	mustRun(t, env, "", "user", "remove", "alice")
	for _, path := range []string{f.htpasswd, f.groups} {
		got := readString(t, path)
		if n, crlf := strings.Count(got, "\n"), strings.Count(got, "\r\n"); n != crlf {
			t.Errorf("%s: %d of %d line ends are CRLF:\n%q", path, crlf, n, got)
		}
	}
	if got := readString(t, f.htpasswd); !strings.HasPrefix(got, "# users, edited on Windows\r\n\r\nbob:"+htpasswdtest.Hash(t, "b")+"\r\ncarol:$2y$04$") {
		t.Errorf("htpasswd: got %q", got)
	}
	if got := readString(t, f.groups); got != "# groups\r\npusher: carol\r\nreaders: bob\r\n" {
		t.Errorf("groups: got %q", got)
	}
}

// TestModeOwnerAndGroupSurviveEveryCommand: the files keep mode 0640 and a group that is not
// the command's own, whatever command rewrote them, and a file a command creates takes them
// from its sibling.
func TestModeOwnerAndGroupSurviveEveryCommand(t *testing.T) {
	t.Parallel()
	if os.Geteuid() != 0 {
		t.Skip("needs root to give the files a group other than one's own")
	}
	const gid = 4242 // any group but ours
	if os.Getegid() == gid {
		t.Fatal("pick another gid")
	}
	f := newTestFiles(t, htpasswdLines(t, "alice", "a"), "")
	must(t, os.Remove(f.groups))
	must(t, os.Chown(f.htpasswd, 0, gid))
	must(t, os.Chmod(f.htpasswd, 0o640))
	env := editEnv(f)
	steps := [][]string{
		{"group", "add", "pusher", "alice"}, // creates the groups file
		{"user", "add", "--cost", "4", "bob"},
		{"user", "passwd", "--cost", "4", "alice"},
		{"group", "add", "pusher", "bob"},
		{"group", "remove", "pusher", "alice"},
		{"user", "remove", "bob"},
	}
	for _, step := range steps {
		mustRun(t, env, "pw\n", step...)
		for _, path := range []string{f.htpasswd, f.groups} {
			info, err := os.Stat(path)
			must(t, err)
			st := info.Sys().(*syscall.Stat_t)
			if info.Mode() != 0o640 || st.Uid != 0 || st.Gid != gid {
				t.Errorf("after %s: %s has mode %v, owner %d, group %d; want -rw-r-----, 0, %d", strings.Join(step, " "), path, info.Mode(), st.Uid, st.Gid, gid)
			}
		}
	}
}

// assertDir fails unless dir holds exactly names.
func assertDir(t *testing.T, dir string, names ...string) {
	t.Helper()
	entries, err := os.ReadDir(dir)
	must(t, err)
	var got []string
	for _, e := range entries {
		got = append(got, e.Name())
	}
	if strings.Join(got, " ") != strings.Join(names, " ") {
		t.Errorf("%s holds %v, want %v", dir, got, names)
	}
}

// TestGroupCommands: add and remove members, list, and what is refused.
func TestGroupCommands(t *testing.T) {
	t.Parallel()
	f := newTestFiles(t, htpasswdLines(t, "alice", "a", "bob", "b", "carol", "c"), "# who may push\npusher: alice\n")
	env := editEnv(f)
	if out := mustRun(t, env, "", "group", "add", "Pusher", "bob", "alice", "bob"); !strings.Contains(out, "added bob to group Pusher") || !strings.Contains(out, "already in group Pusher: alice") {
		t.Errorf("add: got %q", out)
	}
	mustRun(t, env, "", "group", "add", "readers", "carol", "alice")
	if got := readString(t, f.groups); got != "# who may push\npusher: alice bob\nreaders: carol alice\n" {
		t.Errorf("groups: got %q", got)
	}
	if out := mustRun(t, env, "", "group", "list"); out != "pusher: alice bob\nreaders: carol alice\n" {
		t.Errorf("list: got %q", out)
	}
	if out := mustRun(t, env, "", "group", "list", "PUSHER"); out != "alice\nbob\n" {
		t.Errorf("list PUSHER: got %q", out)
	}
	for _, tt := range []struct {
		args []string
		want string
	}{
		{[]string{"add", "pusher", "dave"}, "dave is not a user of"},
		{[]string{"add", "bad:group", "alice"}, "a colon ends the name"},
		{[]string{"add", "pusher"}, "at least one USER"},
		{[]string{"remove", "pusher", "carol"}, "carol is not in group pusher"},
		{[]string{"remove", "nogroup", "carol"}, `no group "nogroup"`},
		{[]string{"list", "nogroup"}, `no group "nogroup"`},
		{[]string{"frobnicate"}, "unknown group command"},
	} {
		before := readString(t, f.groups)
		if _, _, err := runCLI(t, env, "", append([]string{"group"}, tt.args...)...); err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("group %v: got %v, want %q", tt.args, err, tt.want)
		}
		if readString(t, f.groups) != before {
			t.Errorf("group %v changed the file", tt.args)
		}
	}
	mustRun(t, env, "", "group", "add", "--force", "pusher", "dave")
	mustRun(t, env, "", "group", "remove", "pusher", "alice", "dave")
	if got := readString(t, f.groups); got != "# who may push\npusher: bob\nreaders: carol alice\n" {
		t.Errorf("after remove: got %q", got)
	}
}

// TestUserRemoveTakesTheUserOutOfEveryGroup, on every line, whatever the group's case.
func TestUserRemoveTakesTheUserOutOfEveryGroup(t *testing.T) {
	t.Parallel()
	f := newTestFiles(t, htpasswdLines(t, "alice", "a", "bob", "b"), "pusher: alice bob\nadmins: bob\nPUSHER: bob\nreaders:\tbob\t# not a comment\n")
	out := mustRun(t, editEnv(f), "", "user", "remove", "bob")
	if want := "removed bob from the groups pusher, admins, PUSHER, readers in " + f.groups + " (lines 1, 2, 3, 4)"; !strings.Contains(out, want) {
		t.Errorf("got %q, want %q", out, want)
	}
	if got := readString(t, f.groups); got != "pusher: alice\nadmins:\nPUSHER:\nreaders:\t# not a comment\n" {
		t.Errorf("groups: got %q", got)
	}
}

// TestEditCommandsHelp: every command has --help naming each of its flags.
func TestEditCommandsHelp(t *testing.T) {
	t.Parallel()
	edit := []string{"--htpasswd", "--groups", "--force", "--wait", "--wait-timeout"}
	for _, tt := range []struct {
		cmd   []string
		flags []string
	}{
		{[]string{"user", "add"}, append(edit, "--cost")},
		{[]string{"user", "passwd"}, append(edit, "--cost")},
		{[]string{"user", "remove"}, edit},
		{[]string{"user", "list"}, edit[:2]},
		{[]string{"user", "verify"}, edit[:2]},
		{[]string{"group", "add"}, edit},
		{[]string{"group", "remove"}, edit},
		{[]string{"group", "list"}, edit[:2]},
		{[]string{"token", "create"}, []string{"--tokens", "--wait", "--wait-timeout", "--scope", "--expires", "--expires-at", "--owner", "--description", "--registry"}},
		{[]string{"token", "rotate"}, []string{"--tokens", "--wait", "--wait-timeout", "--registry"}},
		{[]string{"token", "revoke"}, []string{"--tokens", "--wait", "--wait-timeout"}},
		{[]string{"token", "list"}, []string{"--tokens"}},
		{[]string{"user"}, nil},
		{[]string{"group"}, nil},
		{[]string{"token"}, nil},
	} {
		stdout, stderr, err := runCLI(t, nil, "", append(tt.cmd, "--help")...)
		if !errors.Is(err, flag.ErrHelp) {
			t.Errorf("%v --help: got %v, want flag.ErrHelp", tt.cmd, err)
		}
		if !strings.HasPrefix(stdout, "Usage: registry-auth "+strings.Join(tt.cmd, " ")) || stderr != "" {
			t.Errorf("%v --help: got stdout %q and stderr %q, want its usage on stdout", tt.cmd, stdout, stderr)
		}
		for _, fl := range tt.flags {
			if !regexp.MustCompile(`(?m)^  -` + strings.TrimPrefix(fl, "--") + `( |$)`).MatchString(stdout) {
				t.Errorf("%v --help does not explain %s:\n%s", tt.cmd, fl, stdout)
			}
		}
	}
}

// TestWaitPrintsHowLongTheServiceTook: --wait against the running service returns once
// /readyz shows the new content, and says how long that took; a service that serves other
// files makes it fail at --wait-timeout with the reason.
func TestWaitPrintsHowLongTheServiceTook(t *testing.T) {
	t.Parallel()
	f := newTestFiles(t, htpasswdLines(t, "alice", "a"), "pusher: alice\n")
	s := startService(t, editEnv(f), "--log-format", "json")
	env := editEnv(f)
	out := mustRun(t, env, "b\n", "user", "add", "--cost", "4", "--wait", s.url, "bob")
	if !regexp.MustCompile(`(?m)^the service at http://127\.0\.0\.1:\d+ loaded it after \d+(\.\d+)?m?s$`).MatchString(out) {
		t.Errorf("got %q, want how long the service took", out)
	}
	// Loaded means in force: bob gets in at once.
	if got := s.auth(t, "GET", "/v2/", "bob", "b"); got != 200 {
		t.Errorf("bob right after --wait: got %d, want 200", got)
	}
	out = mustRun(t, env, "", "group", "add", "--wait", s.url+"/readyz", "pusher", "bob")
	if !strings.Contains(out, "loaded it after") {
		t.Errorf("group add --wait: got %q", out)
	}
	if got := s.auth(t, "PUT", "/v2/app/manifests/1", "bob", "b"); got != 200 {
		t.Errorf("bob's push right after --wait: got %d, want 200", got)
	}

	other := newTestFiles(t, htpasswdLines(t, "zed", "z"), "")
	start := time.Now()
	_, _, err := runCLI(t, editEnv(other), "y\n", "user", "add", "--cost", "4", "--wait", s.url, "--wait-timeout", "300ms", "yves")
	if err == nil || !strings.Contains(err.Error(), "did not load the new htpasswd within 300ms") || !strings.Contains(err.Error(), "it reports htpasswd sha256=") {
		t.Errorf("wait for a file the service does not read: got %v", err)
	}
	if took := time.Since(start); took > 5*time.Second {
		t.Errorf("took %v to give up, want about 300ms", took)
	}
	if _, _, err := runCLI(t, env, "", "user", "remove", "--wait", "localhost:8080", "bob"); err == nil || !strings.Contains(err.Error(), "want the service's base URL") {
		t.Errorf("bad --wait: got %v", err)
	}
	if !strings.Contains(readString(t, f.htpasswd), "bob:") {
		t.Error("a bad --wait still edited the file; flags must be checked first")
	}
}

// TestTwentyConcurrentAddsUnderLoad: twenty user add at once, against files the service
// serves while an existing user keeps pulling: all twenty land, the service never fails a
// reload, and the existing user is never refused.
func TestTwentyConcurrentAddsUnderLoad(t *testing.T) {
	t.Parallel()
	f := newTestFiles(t, "# users\n"+htpasswdLines(t, "existing", "existing-pw"), "pusher: existing\n")
	s := startService(t, editEnv(f))

	stop := make(chan struct{})
	var load sync.WaitGroup
	var mu sync.Mutex
	requests, refused := 0, 0
	for range 4 {
		load.Go(func() {
			for {
				select {
				case <-stop:
					return
				default:
				}
				code := s.auth(t, "GET", "/v2/app/manifests/1", "existing", "existing-pw")
				mu.Lock()
				requests++
				if code != 200 {
					refused++
				}
				mu.Unlock()
			}
		})
	}

	const n = 20
	var adds sync.WaitGroup
	errs := make([]error, n)
	for i := range n {
		adds.Go(func() {
			_, stderr, err := runCLI(t, editEnv(f), fmt.Sprintf("pw-%d\n", i), "user", "add", "--cost", "4", fmt.Sprintf("user%02d", i))
			if err != nil {
				errs[i] = fmt.Errorf("%w\n%s", err, stderr)
			}
		})
	}
	adds.Wait()
	for i, err := range errs {
		if err != nil {
			t.Errorf("user add user%02d: %v", i, err)
		}
	}
	hf, err := htpasswd.Parse(strings.NewReader(readString(t, f.htpasswd)))
	must(t, err)
	if len(hf.Users) != n+1 || len(hf.Problems) != 0 {
		t.Errorf("got %d users and problems %v, want %d users and none", len(hf.Users), hf.Problems, n+1)
	}
	for i := range n {
		if ok, _ := htpasswd.Verify(hf.Users[fmt.Sprintf("user%02d", i)].Hash, fmt.Appendf(nil, "pw-%d", i)); !ok {
			t.Errorf("user%02d: password does not verify", i)
		}
	}
	waitFor(t, reloadDeadline, "the last user to be accepted", func() bool {
		return s.auth(t, "GET", "/v2/", fmt.Sprintf("user%02d", n-1), fmt.Sprintf("pw-%d", n-1)) == 200
	})
	close(stop)
	load.Wait()
	if refused > 0 || requests == 0 {
		t.Errorf("existing user: %d of %d requests refused, want 0 of some", refused, requests)
	}
	logs := s.logs.String()
	for _, bad := range []string{`"level":"ERROR"`, "reload failed", `"msg":"file problem"`} {
		if strings.Contains(logs, bad) {
			t.Errorf("service log has %s:\n%s", bad, logs)
		}
	}
	assertDir(t, f.dir, "groups", "htpasswd", "htpasswd.lock")
}

// TestUserRemoveWithABrokenGroupsFile: a groups file with a line the service skips is refused
// (naming the line) only when the removal would rewrite it.
func TestUserRemoveWithABrokenGroupsFile(t *testing.T) {
	t.Parallel()
	f := newTestFiles(t, htpasswdLines(t, "alice", "a", "bob", "b", "carol", "c"), "pusher alice\nadmins: bob\n")
	env := editEnv(f)
	if _, _, err := runCLI(t, env, "", "user", "remove", "bob"); err == nil || !strings.Contains(err.Error(), f.groups+":1: error: no colon") {
		t.Errorf("bob, in a group: got %v, want a refusal naming line 1", err)
	}
	if !strings.Contains(readString(t, f.htpasswd), "bob:") {
		t.Error("the refused removal still took bob out of the htpasswd file")
	}
	if out := mustRun(t, env, "", "user", "remove", "carol"); !strings.Contains(out, "carol was in no group") {
		t.Errorf("carol, in no group: got %q", out)
	}
	mustRun(t, env, "", "user", "remove", "--force", "bob")
	if got := readString(t, f.groups); got != "pusher alice\nadmins:\n" {
		t.Errorf("groups after --force: got %q", got)
	}
}
