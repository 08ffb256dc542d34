package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/registry-auth/registry-auth/internal/cli"
	"github.com/registry-auth/registry-auth/internal/htpasswd"
	"github.com/registry-auth/registry-auth/internal/htpasswd/htpasswdtest"
	"golang.org/x/crypto/bcrypt"
)

// envOf returns a lookupEnv that knows only the variables in env.
func envOf(env map[string]string) func(string) (string, bool) {
	return func(k string) (string, bool) { v, ok := env[k]; return v, ok }
}

// runCLI runs the program with args, env and stdin as main would, and returns what it printed.
func runCLI(t *testing.T, env map[string]string, stdin string, args ...string) (stdout, stderr string, err error) {
	t.Helper()
	var out, errOut strings.Builder
	err = program.Run(context.Background(), cli.Env{LookupEnv: envOf(env), Stdin: strings.NewReader(stdin), Stdout: &out, Stderr: &errOut}, args)
	return out.String(), errOut.String(), err
}

// hashLine matches what `hash` prints.
var hashLine = regexp.MustCompile(`^([^:\n]+):(\$2y\$(\d\d)\$[./A-Za-z0-9]{53})\n$`)

// TestHashCommand: the printed line is a user and a $2y$ bcrypt hash of the password read
// from standard input, at the asked cost, which Go's bcrypt, the service's parser and
// Apache's own `htpasswd -vb` all accept.
func TestHashCommand(t *testing.T) {
	t.Parallel()
	htpasswdBin := htpasswdtest.Apache(t)
	long72 := strings.Repeat("p", 72)
	tests := []struct {
		name     string
		args     []string
		stdin    string
		user     string
		password string
		cost     int
	}{
		{"cost 4", []string{"--cost", "4", "alice"}, "s3cret\n", "alice", "s3cret", 4},
		{"cost=5", []string{"--cost=5", "alice"}, "s3cret\n", "alice", "s3cret", 5},
		{"default cost is 10", []string{"alice"}, "s3cret\n", "alice", "s3cret", 10},
		{"CRLF", []string{"--cost", "4", "bob"}, "s3cret\r\n", "bob", "s3cret", 4},
		{"only the first line", []string{"--cost", "4", "bob"}, "s3cret\nother\n", "bob", "s3cret", 4},
		{"no newline", []string{"--cost", "4", "bob"}, "s3cret", "bob", "s3cret", 4},
		{"spaces kept", []string{"--cost", "4", "bob"}, " two words \n", "bob", " two words ", 4},
		{"72 bytes", []string{"--cost", "4", "bob"}, long72 + "\n", "bob", long72, 4},
		{"UTF-8", []string{"--cost", "4", "jürgen"}, "pässwörd\n", "jürgen", "pässwörd", 4},
		{"colon in the password", []string{"--cost", "4", "bob"}, "a:b\n", "bob", "a:b", 4},
		// Only a # that starts the line makes a comment: user add takes this name too.
		{"# inside the name", []string{"--cost", "4", "a#b"}, "s3cret\n", "a#b", "s3cret", 4},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			stdout, stderr, err := runCLI(t, nil, tt.stdin, append([]string{"hash"}, tt.args...)...)
			if err != nil {
				t.Fatalf("hash: %v\n%s", err, stderr)
			}
			m := hashLine.FindStringSubmatch(stdout)
			if m == nil {
				t.Fatalf("got %q, want one line USER:$2y$NN$<53 characters>", stdout)
			}
			user, hash := m[1], m[2]
			if user != tt.user || m[3] != fmt.Sprintf("%02d", tt.cost) {
				t.Errorf("got user %q, cost %s, want %q, %02d", user, m[3], tt.user, tt.cost)
			}
			if err := bcrypt.CompareHashAndPassword([]byte(hash), []byte(tt.password)); err != nil {
				t.Errorf("bcrypt: %v", err)
			}
			if err := bcrypt.CompareHashAndPassword([]byte(hash), []byte(tt.password+"x")); err == nil && len(tt.password) < 72 {
				t.Error("bcrypt accepted a wrong password")
			}
			f, err := htpasswd.Parse(strings.NewReader(stdout))
			if err != nil || len(f.Problems) != 0 || f.Users[tt.user].Hash != hash {
				t.Errorf("the service reads the line as %+v, %v, want user %q with no problem", f, err, tt.user)
			}
			file := filepath.Join(t.TempDir(), "htpasswd")
			writeFile(t, file, stdout)
			if out, err := exec.Command(htpasswdBin, "-vb", file, tt.user, tt.password).CombinedOutput(); err != nil {
				t.Errorf("Apache's htpasswd -vb refused the password: %v: %s", err, out)
			}
			if out, err := exec.Command(htpasswdBin, "-vb", file, tt.user, "x"+tt.password).CombinedOutput(); err == nil {
				t.Errorf("Apache's htpasswd -vb accepted a wrong password: %s", out)
			}
		})
	}
}

// TestHashCommandRefuses: bad costs, user names and passwords are refused with an error that
// says why, and nothing is printed on standard output (it is often appended to the file).
func TestHashCommandRefuses(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name  string
		args  []string
		stdin string
		want  string
	}{
		{"cost below 4", []string{"--cost", "3", "alice"}, "pw\n", "--cost 3: want 4 to 31"},
		{"cost above 31", []string{"--cost", "32", "alice"}, "pw\n", "--cost 32: want 4 to 31"},
		{"cost not a number", []string{"--cost", "ten", "alice"}, "pw\n", `invalid value "ten" for flag -cost`},
		{"no user", nil, "pw\n", "hash takes exactly one USER"},
		{"two users", []string{"alice", "bob"}, "pw\n", "hash takes exactly one USER"},
		{"colon in the user", []string{"al:ice"}, "pw\n", `user name "al:ice" refused: a colon ends the name`},
		{"empty user", []string{""}, "pw\n", `user name "" refused: it is empty`},
		{"space in the user", []string{"al ice"}, "pw\n", `user name "al ice"`},
		{"tab in the user", []string{"al\tice"}, "pw\n", `user name "al\tice"`},
		{"DEL in the user", []string{"al\x7fice"}, "pw\n", `user name "al\x7fice"`},
		{"comment sign", []string{"#alice"}, "pw\n", `user name "#alice" refused: a line starting with # is a comment`},
		{"no-break space in the user", []string{"al\u00a0ice"}, "pw\n", `user name "al\u00a0ice" refused: it has white space`},
		{"a robot token's name", []string{"token+ci"}, "pw\n", `user name "token+ci" refused: names starting with "token+" are robot tokens'`},
		{"73-byte password", []string{"alice"}, strings.Repeat("p", 73) + "\n", "password is 73 bytes: bcrypt reads only the first 72"},
		{"empty password", []string{"alice"}, "\n", "empty password refused"},
		{"no input", []string{"alice"}, "", "empty password refused"},
		{"NUL in the password", []string{"alice"}, "p\x00w\n", "NUL byte"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			stdout, _, err := runCLI(t, nil, tt.stdin, append([]string{"hash"}, tt.args...)...)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("got error %v, want one containing %q", err, tt.want)
			}
			if stdout != "" {
				t.Errorf("got %q on standard output, want nothing", stdout)
			}
		})
	}
}

// checkFiles writes an htpasswd and a groups file (mode 0600) and returns their paths.
func checkFiles(t *testing.T, htpasswd, groups string) (htpasswdPath, groupsPath string) {
	t.Helper()
	f := newTestFiles(t, htpasswd, groups)
	return f.htpasswd, f.groups
}

// TestCheckCommand: `check` lists every problem with file and line, ends with a summary, and
// fails (cli.ExitStatus(1), exit status 1) exactly when the service would skip a line or refuse
// the files.
func TestCheckCommand(t *testing.T) {
	t.Parallel()
	users := htpasswdLines(t, "alice", "alice-pw", "bob", "bob-pw")
	tests := []struct {
		name     string
		htpasswd string
		groups   string
		extra    []string          // more arguments
		env      map[string]string // HTPASSWD and GROUPS are set from the files unless given
		mode     os.FileMode
		fails    bool     // cli.ExitStatus(1)
		want     []string // lines of the output, {H} standing for the htpasswd path, {G} for the groups path
	}{
		{name: "clean", htpasswd: users, groups: "pusher: alice\n",
			want: []string{`2 users, 1 groups, 1 in push group "pusher"; 0 errors, 0 warnings`}},
		{name: "refused lines", htpasswd: string(htpasswdtest.Read(t, "refused.htpasswd")), groups: "pusher: good1\n", fails: true,
			want: []string{
				`{H}:7: error: user "des" skipped: DES crypt hash refused: it reads only the first 8 characters of a password; re-create the user with ` + "`registry-auth hash` or `htpasswd -B`",
				`{H}:10: error: user "plain" skipped: plain-text or unknown hash refused`,
				`{H}:13: warning: user "good2" has a weak APR1-MD5 hash; re-create it with ` + "`registry-auth hash` (bcrypt)",
				`2 users, 1 groups, 1 in push group "pusher"; 2 errors, 1 warnings`,
			}},
		{name: "weak hashes only warn", htpasswd: string(htpasswdtest.Read(t, "formats.htpasswd")), groups: "pusher: bcrypt4\n",
			want: []string{
				fmt.Sprintf(`{H}:%d: warning: user "apr1" has a weak APR1-MD5 hash`, htpasswdtest.LineOf(t, htpasswdtest.Read(t, "formats.htpasswd"), "apr1:")),
				fmt.Sprintf(`{H}:%d: warning: user "sha1" has a weak SHA-1 hash`, htpasswdtest.LineOf(t, htpasswdtest.Read(t, "formats.htpasswd"), "sha1:")),
				fmt.Sprintf(`{H}:%d: warning: user "openssl-md5" has a weak MD5-crypt hash`, htpasswdtest.LineOf(t, htpasswdtest.Read(t, "formats.htpasswd"), "openssl-md5:")),
				`19 users, 1 groups, 1 in push group "pusher"; 0 errors, 6 warnings`,
			}},
		{name: "Apache-style files", htpasswd: string(htpasswdtest.Read(t, "apache.htpasswd")), groups: string(htpasswdtest.Read(t, "apache.groups")), fails: true,
			want: []string{
				`{H}:16: warning: duplicate user "alice" ignored: the entry on line 5 wins, as in Apache`,
				`{H}:17: error: no colon: want user:hash`,
				`{G}:12: warning: member "frank" of group "ghosts" is not in {H}`,
				`{G}:6: warning: member "a b" of group "pusher" is not in {H}`,
				`5 users, 5 groups, 3 in push group "pusher"; 1 errors, 6 warnings`,
			}},
		{name: "empty push group", htpasswd: users, groups: "admins: alice\n",
			want: []string{
				`{G}: warning: the push group "pusher" has no members: nobody can push`,
				`2 users, 1 groups, 0 in push group "pusher"; 0 errors, 1 warnings`,
			}},
		{name: "other push group", htpasswd: users, groups: "admins: alice bob\n", extra: []string{"--push-group", "admins"},
			want: []string{`2 users, 1 groups, 2 in push group "admins"; 0 errors, 0 warnings`}},
		{name: "no groups file", htpasswd: users, env: map[string]string{"REGISTRY_AUTH_GROUPS": ""},
			want: []string{
				`(no groups file): warning: the push group "pusher" has no members: nobody can push`,
				`2 users, 0 groups, 0 in push group "pusher"; 0 errors, 1 warnings`,
			}},
		{name: "readable by every user", htpasswd: users, groups: "pusher: alice\n", mode: 0o644,
			want: []string{
				`{H}: warning: {H} is readable by every user (mode -rw-r--r--): its hashes can be guessed offline; chmod o-r it`,
				`2 users, 1 groups, 1 in push group "pusher"; 0 errors, 1 warnings`,
			}},
		{name: "no users", htpasswd: "# nobody\n", groups: "pusher: alice\n", fails: true,
			want: []string{"error: {H}: no usable users: add one with `registry-auth user add --htpasswd {H} USER`"}},
		{name: "line too long", htpasswd: users + "carol:" + strings.Repeat("x", 9000) + "\n", groups: "pusher: alice\n", fails: true,
			want: []string{"error: {H}: line 3: longer than 8191 bytes counting its newline"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			h, g := checkFiles(t, tt.htpasswd, tt.groups)
			if tt.mode != 0 {
				must(t, os.Chmod(h, tt.mode))
			}
			env := map[string]string{"REGISTRY_AUTH_HTPASSWD": h, "REGISTRY_AUTH_GROUPS": g}
			for k, v := range tt.env {
				env[k] = v
			}
			stdout, stderr, err := runCLI(t, env, "", append([]string{"check"}, tt.extra...)...)
			if tt.fails != errors.Is(err, cli.ExitStatus(1)) || (err != nil && !errors.Is(err, cli.ExitStatus(1))) {
				t.Errorf("got error %v, want cli.ExitStatus(1) %v", err, tt.fails)
			}
			if stderr != "" {
				t.Errorf("got %q on standard error, want nothing", stderr)
			}
			lines := strings.Split(strings.TrimSuffix(stdout, "\n"), "\n")
			for _, want := range tt.want {
				want = strings.NewReplacer("{H}", h, "{G}", g).Replace(want)
				if !hasLineWithPrefix(lines, want) {
					t.Errorf("no line starts with %q in:\n%s", want, stdout)
				}
			}
			if last := tt.want[len(tt.want)-1]; strings.Contains(last, " users, ") && !strings.HasPrefix(lines[len(lines)-1], last) {
				t.Errorf("got last line %q, want the summary %q", lines[len(lines)-1], last)
			}
		})
	}
}

// hasLineWithPrefix reports whether a line of lines starts with prefix.
func hasLineWithPrefix(lines []string, prefix string) bool {
	for _, l := range lines {
		if strings.HasPrefix(l, prefix) {
			return true
		}
	}
	return false
}

// TestCheckCommandCannotRead: a missing file is an error naming it, not a report.
func TestCheckCommandCannotRead(t *testing.T) {
	t.Parallel()
	h, g := checkFiles(t, htpasswdLines(t, "alice", "pw"), "pusher: alice\n")
	missing := filepath.Join(t.TempDir(), "missing")
	tests := []struct {
		name string
		args []string
		want string
	}{
		{"htpasswd", []string{"--htpasswd", missing, "--groups", g}, "reading the htpasswd file (check --htpasswd / REGISTRY_AUTH_HTPASSWD and that the service's user may read it): open " + missing},
		{"groups", []string{"--htpasswd", h, "--groups", missing}, "reading the groups file (create it, or set --groups \"\" / REGISTRY_AUTH_GROUPS= to run without one, and then nobody can push): open " + missing},
		{"argument", []string{"--htpasswd", h, "extra"}, `unexpected argument "extra": check takes flags only`},
	}
	for _, tt := range tests {
		_, _, err := runCLI(t, nil, "", append([]string{"check"}, tt.args...)...)
		if err == nil || errors.Is(err, cli.ExitStatus(1)) || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%s: got %v, want an error containing %q", tt.name, err, tt.want)
		}
	}
}

// TestHealthcheckCommand: exit 0 only for a 200 from the health endpoint.
func TestHealthcheckCommand(t *testing.T) {
	t.Parallel()
	server := func(status int) *httptest.Server {
		s := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.URL.Path != "/healthz" {
				http.NotFound(w, r)
				return
			}
			w.WriteHeader(status)
			fmt.Fprintln(w, "ready\nhtpasswd sha256=abc")
		}))
		t.Cleanup(s.Close)
		return s
	}
	healthy, failing, unavailable := server(http.StatusOK), server(http.StatusInternalServerError), server(http.StatusServiceUnavailable)
	stopped := server(http.StatusOK)
	stopped.Close() // nothing listens there any more
	hanging := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		<-r.Context().Done() // answers only when the client gives up
	}))
	t.Cleanup(hanging.Close)
	_, healthyPort, _ := net.SplitHostPort(healthy.Listener.Addr().String())

	tests := []struct {
		name string
		args []string
		env  map[string]string
		want string // error text; "" for healthy
	}{
		{"200", []string{"--url", healthy.URL + "/healthz"}, nil, ""},
		{"port from REGISTRY_AUTH_LISTEN", nil, map[string]string{"REGISTRY_AUTH_LISTEN": ":" + healthyPort}, ""},
		{"500", []string{"--url", failing.URL + "/healthz"}, nil, "unhealthy: " + failing.URL + "/healthz answered 500 Internal Server Error"},
		{"503", []string{"--url", unavailable.URL + "/healthz"}, nil, "answered 503"},
		{"404", []string{"--url", healthy.URL + "/nothing"}, nil, "answered 404"},
		{"nothing listening", []string{"--url", stopped.URL + "/healthz"}, nil, "unhealthy: "},
		{"bad URL", []string{"--url", "://nowhere"}, nil, `--url "://nowhere"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			stdout, _, err := runCLI(t, tt.env, "", append([]string{"healthcheck"}, tt.args...)...)
			switch {
			case tt.want == "" && (err != nil || stdout != "healthy\n"):
				t.Errorf("got %v, %q, want nil, \"healthy\\n\"", err, stdout)
			case tt.want != "" && (err == nil || !strings.Contains(err.Error(), tt.want)):
				t.Errorf("got %v, want an error containing %q", err, tt.want)
			}
		})
	}
	// --body prints what the endpoint answered, for /readyz the files an instance loaded.
	if stdout, _, err := runCLI(t, nil, "", "healthcheck", "--body", "--url", healthy.URL+"/healthz"); err != nil || stdout != "ready\nhtpasswd sha256=abc\n" {
		t.Errorf("--body: got %v, %q, want the body", err, stdout)
	}
	// The server never answers: --timeout, not its 3 s default, must be what gives up.
	t.Run("no answer in time", func(t *testing.T) {
		t.Parallel()
		const timeout, by = 50 * time.Millisecond, 1500 * time.Millisecond // by: half the default
		start := time.Now()
		_, _, err := runCLI(t, nil, "", "healthcheck", "--url", hanging.URL+"/healthz", "--timeout", timeout.String())
		took := time.Since(start)
		if err == nil || !strings.Contains(err.Error(), "context deadline exceeded") || took > by {
			t.Errorf("got %v after %v, want context deadline exceeded within %v of --timeout %v", err, took, by, timeout)
		}
	})
}

// TestVersionHelpAndUnknownCommands covers the top-level commands that do no work.
func TestVersionHelpAndUnknownCommands(t *testing.T) {
	t.Parallel()
	tests := []struct {
		args       []string
		stdout     string
		stderrHas  string
		errContent string
	}{
		{[]string{"--version"}, "registry-auth " + version + "\n", "", ""},
		{[]string{"-version"}, "registry-auth " + version + "\n", "", ""},
		{[]string{"serve", "--version"}, "registry-auth " + version + "\n", "", ""},
		{[]string{"--listen", "not-an-address", "--version"}, "registry-auth " + version + "\n", "", ""}, // --version wins over other flags
		{[]string{"version"}, "registry-auth " + version + "\n", "", ""},
		{[]string{"help"}, program.Usage(), "", ""},
		{[]string{"frobnicate"}, "", "Usage: registry-auth [command]", `unknown command "frobnicate"`},
		{[]string{""}, "", "Usage: registry-auth [command]", `unknown command ""`},
	}
	for _, tt := range tests {
		stdout, stderr, err := runCLI(t, nil, "", tt.args...)
		if stdout != tt.stdout {
			t.Errorf("%q: got output %q, want %q", tt.args, stdout, tt.stdout)
		}
		if !strings.Contains(stderr, tt.stderrHas) {
			t.Errorf("%q: got stderr %q, want it to contain %q", tt.args, stderr, tt.stderrHas)
		}
		if (tt.errContent == "") != (err == nil) || (err != nil && !strings.Contains(err.Error(), tt.errContent)) {
			t.Errorf("%q: got error %v, want one containing %q", tt.args, err, tt.errContent)
		}
	}
	for _, cmd := range []string{"serve", "hash USER", "check", "healthcheck", "version"} {
		if !strings.Contains(program.Usage(), "\n  "+cmd) {
			t.Errorf("the usage does not list %q", cmd)
		}
	}
}

// TestHelpListsEveryFlag: --help (and -h) on every command returns flag.ErrHelp, prints no
// error, and explains every flag the command has, with its variable where it has one.
func TestHelpListsEveryFlag(t *testing.T) {
	t.Parallel()
	var serveNames []string // every flag of serve, from config_test.go's table
	for _, f := range serveFlags {
		serveNames = append(serveNames, f.name)
	}
	serveNames = append(serveNames, serveFlagsWithoutVariable...)
	tests := []struct {
		args    []string
		flags   []string
		withEnv bool // each flag names its REGISTRY_AUTH_ variable
	}{
		{nil, serveNames, true},
		{[]string{"serve"}, serveNames, true},
		{[]string{"hash"}, []string{"cost"}, false},
		{[]string{"check"}, []string{"htpasswd", "groups", "policy", "tokens", "push-group", "ldap-url", "ldap-bind-dn", "ldap-bind-password-file",
			"ldap-starttls", "ldap-ca", "ldap-timeout", "ldap-group-base", "ldap-group-filter", "ldap-group-name-attribute", "ldap-group-depth",
			"ldap-test-user"}, true},
		{[]string{"healthcheck"}, []string{"url", "timeout", "body"}, false},
	}
	flagLine := regexp.MustCompile(`(?m)^  -([a-z-]+)`)
	for _, tt := range tests {
		for _, help := range []string{"--help", "-h"} {
			args := append(append([]string{}, tt.args...), help)
			stdout, stderr, err := runCLI(t, nil, "", args...)
			if !errors.Is(err, flag.ErrHelp) {
				t.Errorf("%q: got error %v, want flag.ErrHelp", args, err)
			}
			// On standard output, so that `registry-auth --help | less` shows it.
			if stderr != "" || !strings.HasPrefix(stdout, "Usage: registry-auth") {
				t.Errorf("%q: got stderr %q and stdout starting %.40q, want the usage on stdout only", args, stderr, stdout)
			}
			var listed []string
			for _, m := range flagLine.FindAllStringSubmatch(stdout, -1) {
				listed = append(listed, m[1])
			}
			if strings.Join(listed, " ") != strings.Join(sortedCopy(tt.flags), " ") {
				t.Errorf("%q: got flags %q, want %q", args, listed, sortedCopy(tt.flags))
			}
			for _, name := range tt.flags {
				if tt.withEnv && !slices.Contains(serveFlagsWithoutVariable, name) && !strings.Contains(stdout, "["+cli.EnvName(name)+"]") {
					t.Errorf("%q: --%s does not name %s", args, name, cli.EnvName(name))
				}
			}
		}
	}
}

func sortedCopy(s []string) []string {
	c := slices.Clone(s)
	slices.Sort(c)
	return c
}
