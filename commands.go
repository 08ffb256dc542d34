package main

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"os"
	"strings"
	"time"

	"github.com/registry-auth/registry-auth/internal/cli"
	"github.com/registry-auth/registry-auth/internal/htpasswd"
	"github.com/registry-auth/registry-auth/internal/ldap"
)

const hashUsage = `Usage: registry-auth hash [--cost N] USER

Prints "USER:<bcrypt hash>", a line to append to the htpasswd file. The password is read from
standard input: asked twice without echo on a terminal, otherwise the first line is used.
Example: registry-auth hash alice >> auth/htpasswd
`

// hashCommand prints an htpasswd line for a user.
func hashCommand(_ context.Context, env cli.Env, args []string) error {
	fs := cli.NewFlagSet("registry-auth hash", hashUsage, env)
	var cost int
	fs.Cost(&cost)
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() != 1 {
		fs.Usage()
		return errors.New("hash takes exactly one USER")
	}
	user := fs.Arg(0)
	if err := htpasswd.CheckUserName(user); err != nil {
		return err // the same rule as user add: a name Apache reads back as typed
	}
	password, err := cli.ReadPassword(env.Stdin, env.Stderr, true)
	if err != nil {
		return err
	}
	hash, err := htpasswd.NewBcrypt(password, cost)
	if err != nil {
		return err
	}
	fmt.Fprintf(env.Stdout, "%s:%s\n", user, hash)
	return nil
}

const checkUsage = `Usage: registry-auth check [flags]

Validates the htpasswd and groups files and the policy as the service would (the same loader)
and lists every problem with its line number: unusable lines, refused hashes (plain text,
DES), weak hashes (MD5, SHA-1), duplicate users (the first wins, as in Apache), group members
missing from the htpasswd file, an empty push group, files other users can read or write; in
the policy, syntax and type errors, unknown keys, subjects and actions, groups no file defines
and users the htpasswd file lacks, rules an earlier rule shadows, push granted without pull.
With --ldap-url, members and user subjects the htpasswd file lacks are not reported (they may
be directory users); with --ldap-group-base too, a push group or policy group the files leave
empty is reported as one the directory's groups decide, not as "nobody can push".

With --ldap-url and the service's other --ldap-* settings, it also checks the directory as
the service would use it: the settings, a connection (hosts in order, StartTLS or ldaps with
--ldap-ca) and the service account's bind (or anonymous searches), naming the host that
answered. With --ldap-test-user NAME it then searches NAME as a login would and prints the
entry's DN, the name the service uses (the directory's spelling) and the user's groups:
the directory's (name and DN, nested ones too) and the groups file's. It asks for no
password and never prints the service account's.
Exit status 1 if the service would refuse the files or skip a line, if the directory cannot
be reached or bound, or if the test user is not exactly one entry; 0 otherwise.
Example: registry-auth check --ldap-url "ldap://ldap/dc=example,dc=com?uid" --ldap-test-user alice
`

// checkCommand validates the files and the directory and reports problems on stdout.
func checkCommand(_ context.Context, env cli.Env, args []string) error {
	stdout := env.Stdout
	fs := cli.NewFlagSet("registry-auth check", checkUsage, env)
	var src sources
	var dir ldap.Config
	var testUser string
	defineSourceFlags(fs, &src)
	defineLDAPFlags(fs, &dir)
	fs.EnvString(&testUser, "ldap-test-user", "", "with --ldap-url, search this user as a login would and print the DN and groups found (no password asked)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	switch {
	case fs.NArg() > 0:
		return fmt.Errorf("unexpected argument %q: check takes flags only (see --help)", fs.Arg(0))
	case testUser != "" && dir.URL == "":
		return errors.New("--ldap-test-user needs --ldap-url: add --ldap-url and the other --ldap-* settings the service runs with")
	case src.htpasswd == "" && dir.URL == "":
		return errors.New("--htpasswd is empty: give the path of the htpasswd file, or --ldap-url to take every user from a directory")
	}
	src.directory, src.directoryGroups = dir.Supplies()
	// loadSources in two steps: a file that cannot be read is an error of its own, not a report.
	set, err := src.read()
	if err != nil {
		return err
	}
	snap, filesOK := reportFiles(stdout, src, set)
	directoryOK := true
	if dir.URL != "" {
		directoryOK = checkDirectory(stdout, dir, testUser, snap)
	}
	if !filesOK || !directoryOK {
		return cli.ExitStatus(1)
	}
	return nil
}

// reportFiles reports the problems of the files in set and a summary; the snapshot is nil
// when the service would refuse them, and ok is false then and when it would skip a line.
func reportFiles(stdout io.Writer, src sources, set fileSet) (snap *snapshot, ok bool) {
	res, err := buildSnapshot(set, src)
	errorsFound := 0
	for _, p := range res.problems {
		fmt.Fprintln(stdout, p)
		if p.Severity == htpasswd.Error {
			errorsFound++
		}
	}
	warningsFound := len(res.problems) - errorsFound
	for _, w := range filePermissionWarnings(src.htpasswd) {
		fmt.Fprintf(stdout, "%s: warning: %s\n", src.htpasswd, w)
		warningsFound++
	}
	if err != nil {
		fmt.Fprintln(stdout, "error:", err)
		return nil, false
	}
	snap = res.snap
	if src.tokens != "" {
		fmt.Fprintln(stdout, tokensSummary(src.tokens, set.get(roleTokens).missing, snap.tokens.Counts(time.Now())))
	}
	if snap.policy.File() == "" {
		fmt.Fprintf(stdout, "%d users, %d groups, %d in push group %q; %d errors, %d warnings\n",
			len(snap.users), len(snap.groups), snap.groupUsers(src.pushGroup, src.directory), src.pushGroup, errorsFound, warningsFound)
	} else {
		fmt.Fprintf(stdout, "%d users, %d groups, %d policy rules; %d errors, %d warnings\n",
			len(snap.users), len(snap.groups), snap.policy.Len(), errorsFound, warningsFound)
	}
	return snap, errorsFound == 0
}

// checkDirectory reports, on lines starting "ldap:", what the directory of c answers with
// the service's own code (ldap.Diagnose): the host that answered and the service account's
// bind, then, with testUser, that user's entry and groups (snap, nil when the files failed,
// adds the groups file's). ok is false when the service could not use the directory or the user.
func checkDirectory(stdout io.Writer, c ldap.Config, testUser string, snap *snapshot) (ok bool) {
	fail := func(err error) bool {
		// One line per problem: dial joins the errors of every host with newlines, and go-ldap
		// ends a result without a diagnostic message in ": ".
		msg := strings.ReplaceAll(strings.ReplaceAll(err.Error(), ": \n", "\n"), "\n", "; ")
		fmt.Fprintln(stdout, "ldap: error:", strings.TrimSuffix(msg, ": "))
		return false
	}
	if err := c.Validate(); err != nil {
		for _, e := range unjoin(err) {
			fail(e)
		}
		return false
	}
	d, err := ldap.New(c, slog.New(slog.DiscardHandler), nil)
	if err != nil {
		return fail(err)
	}
	defer d.Close()
	diag, err := d.Diagnose(testUser)
	if diag.Server != "" {
		fmt.Fprintf(stdout, "ldap: connected to %s, %s\n", diag.Server, diag.As)
	}
	if diag.DN != "" {
		fmt.Fprintf(stdout, "ldap: user %q is %s, named %q (the directory's spelling: logs, X-Forwarded-User and the policy use it)\n", testUser, diag.DN, diag.User)
	}
	if err != nil {
		return fail(err)
	}
	if testUser == "" {
		return true
	}
	switch {
	case diag.Groups == nil:
		fmt.Fprintln(stdout, "ldap: no directory groups: --ldap-group-base is empty")
	case len(diag.Groups) == 0:
		fmt.Fprintf(stdout, "ldap: %s is in no directory group under %s\n", diag.User, c.GroupBase)
	}
	for _, g := range diag.Groups {
		nested := ""
		switch {
		case g.Depth == 1:
			nested = ", through 1 nested group"
		case g.Depth > 1:
			nested = fmt.Sprintf(", through %d nested groups", g.Depth)
		}
		fmt.Fprintf(stdout, "ldap: directory group %q (%s%s)\n", g.Name, g.DN, nested)
	}
	if snap != nil && len(snap.userGroups[diag.User]) > 0 {
		fmt.Fprintf(stdout, "ldap: groups file groups of %s: %s\n", diag.User, strings.Join(snap.userGroups[diag.User], ", "))
	}
	return true
}

// unjoin is the errors errors.Join put together, or err alone.
func unjoin(err error) []error {
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		return j.Unwrap()
	}
	return []error{err}
}

// defineSourceFlags defines the flags naming the files the service loads into s, for every
// command that loads them as serve does (serve, check, explain).
func defineSourceFlags(fs *cli.FlagSet, s *sources) {
	fs.HTPasswd(&s.htpasswd)
	fs.Groups(&s.groups)
	fs.Tokens(&s.tokens)
	fs.EnvString(&s.policy, "policy", "", "YAML access policy: who may pull, push and delete which repositories (README.md, \"Access policy\"); empty: any valid user may pull, the push group may push and delete")
	fs.EnvString(&s.pushGroup, "push-group", "pusher", "without --policy, the group whose members may push and delete")
}

// filePermissionWarnings says what is wrong with the htpasswd file's permissions.
func filePermissionWarnings(path string) []string {
	info, err := os.Stat(path)
	if err != nil {
		return nil
	}
	var warnings []string
	if info.Mode().Perm()&0o004 != 0 {
		warnings = append(warnings, fmt.Sprintf("%s is readable by every user (mode %v): its hashes can be guessed offline; chmod o-r it and give the service's user read access through owner or group", path, info.Mode().Perm()))
	}
	if info.Mode().Perm()&0o002 != 0 {
		warnings = append(warnings, fmt.Sprintf("%s is writable by every user (mode %v): anyone on the host can add a user; chmod o-w it", path, info.Mode().Perm()))
	}
	return warnings
}

const healthcheckUsage = `Usage: registry-auth healthcheck [--url URL]

Exits 0 if the service answers its health endpoint with 200, 1 otherwise. Meant for container
health checks in images without curl. The default URL follows REGISTRY_AUTH_LISTEN, and is
https:// when REGISTRY_AUTH_TLS_CERT is set. Over HTTPS to a loopback address the server's
certificate is not verified (it names the service, such as auth, not 127.0.0.1; the check
sends no credentials and reads only a status); to any other address it is verified against
the system's CAs. With --body it prints what the endpoint answered: asked for /readyz, the
SHA-256 of each file that instance loaded, to compare replicas.
Example: docker exec TASK /registry-auth healthcheck --url https://127.0.0.1:8080/readyz --body
`

// healthcheckCommand asks a running service for /healthz.
func healthcheckCommand(ctx context.Context, env cli.Env, args []string) error {
	lookupEnv := env.LookupEnv
	scheme := "http"
	if cert, _ := lookupEnv("REGISTRY_AUTH_TLS_CERT"); cert != "" {
		scheme = "https"
	}
	defaultURL := scheme + "://127.0.0.1:8080/healthz"
	if listen, ok := lookupEnv("REGISTRY_AUTH_LISTEN"); ok {
		if host, port, err := net.SplitHostPort(listen); err == nil {
			// A wildcard listener answers on loopback; a specific address only on itself.
			if ip := net.ParseIP(host); ip == nil || ip.IsUnspecified() {
				host = "127.0.0.1"
			}
			defaultURL = scheme + "://" + net.JoinHostPort(host, port) + "/healthz"
		}
	}
	var url string
	var timeout time.Duration
	var body bool
	fs := cli.NewFlagSet("registry-auth healthcheck", healthcheckUsage, env)
	fs.StringVar(&url, "url", defaultURL, "health endpoint to ask (the default follows REGISTRY_AUTH_LISTEN)")
	fs.DurationVar(&timeout, "timeout", 3*time.Second, "how long to wait for the answer")
	fs.BoolVar(&body, "body", false, "print the answer's body instead of \"healthy\" (with --url .../readyz: the SHA-256 of each file this instance loaded)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return fmt.Errorf("--url %q: %w", url, err)
	}
	resp, err := healthcheckClient(req.URL).Do(req)
	if err != nil {
		return fmt.Errorf("unhealthy: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("unhealthy: %s answered %s", url, resp.Status)
	}
	if !body {
		fmt.Fprintln(env.Stdout, "healthy")
		return nil
	}
	if _, err := io.Copy(env.Stdout, io.LimitReader(resp.Body, 64<<10)); err != nil {
		return fmt.Errorf("reading the answer of %s: %w", url, err)
	}
	return nil
}

// healthcheckClient is the client that asks u. For https:// to a loopback IP address it
// skips verification of the server's certificate: that certificate names the service as
// its proxy reaches it (auth in the compose stack), never 127.0.0.1, and the check sends no
// credentials and believes nothing but a status. Only someone already inside the
// container's network namespace could answer in the service's place, and they could as well
// stop it. Any other host is verified against the system's CAs as usual.
func healthcheckClient(u *url.URL) *http.Client {
	ip := net.ParseIP(u.Hostname())
	if u.Scheme != "https" || ip == nil || !ip.IsLoopback() {
		return http.DefaultClient
	}
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.TLSClientConfig = &tls.Config{InsecureSkipVerify: true, MinVersion: tls.VersionTLS12}
	return &http.Client{Transport: tr}
}
