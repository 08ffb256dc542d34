package main

import (
	"cmp"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"time"

	"github.com/registry-auth/registry-auth/internal/authn"
	"github.com/registry-auth/registry-auth/internal/cli"
	"github.com/registry-auth/registry-auth/internal/ldap"
	"github.com/registry-auth/registry-auth/internal/policy"
	"github.com/registry-auth/registry-auth/internal/registry"
	"github.com/registry-auth/registry-auth/internal/tokens"
)

const explainUsage = `Usage: registry-auth explain [flags] USER METHOD URI

Says what the service would answer when USER (- for anonymous) sends METHOD URI through
Traefik, with the files as they are now: allowed, refused 401/403, or redirected 307 (a push
that mounts a blob from a repository the user cannot read: the client uploads it instead);
each repository and action the request needs; and for each the rule that decided, as
FILE:LINE with the rule's text, or "no rule matched". It asks for no password (the user is
taken as authenticated). A user the htpasswd file lacks is, with --ldap-url and the
service's other --ldap-* settings, looked up in the directory as a login would be (its
spelling of the name and its groups); without a directory, explained as if the file had it,
with a warning. A token's login name (token+NAME) is explained with the token's scopes, and
refused 401 when the tokens file lacks it or it expired or was revoked.
Example: registry-auth explain --policy auth/policy.yaml alice PUT /v2/alice/app/manifests/1
Exit status 0 when allowed, 1 when refused or redirected, 2 on a usage or file error.
`

// explainCommand prints the decision for one request.
func explainCommand(_ context.Context, env cli.Env, args []string) error {
	stdout, stderr := env.Stdout, env.Stderr
	fs := cli.NewFlagSet("registry-auth explain", explainUsage, env)
	var src sources
	defineSourceFlags(fs, &src)
	var dir ldap.Config
	defineLDAPFlags(fs, &dir)
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return err
		}
		return usageError(stderr, err)
	}
	if fs.NArg() != 3 {
		fs.Usage()
		return usageError(stderr, errors.New("explain takes USER METHOD URI"))
	}
	name, method, uri := fs.Arg(0), fs.Arg(1), fs.Arg(2)
	if err := dir.Validate(); err != nil {
		return usageError(stderr, err)
	}
	src.directory, src.directoryGroups = dir.Supplies()
	res, err := loadSources(src)
	if err != nil {
		return usageError(stderr, err)
	}
	snap := res.snap
	id := policy.Identity{Anonymous: true}
	if name != "-" {
		if id, err = explainedIdentity(snap, src, dir, name, stderr); err != nil {
			fmt.Fprintf(stdout, "refused %s\n", err)
			return cli.ExitStatus(1)
		}
	}
	req, routeErr := registry.ParseRequest(method, uri)
	policyName := cmp.Or(snap.policy.File(), "the built-in policy")
	var v policy.Verdict
	if routeErr == nil {
		v = snap.policy.Decide(id, req)
	}
	// The service's own answer, from the same function.
	a := answerFor(id, routeErr, v)
	switch {
	case routeErr != nil:
		fmt.Fprintf(stdout, "refused %d: %s %s is not a registry request the service allows (%s)\n", a.status, method, uri, routeErr)
		return cli.ExitStatus(1)
	case a.status == http.StatusOK:
		fmt.Fprintf(stdout, "allowed (%s)\n", a.reason)
	case a.status == http.StatusUnauthorized:
		fmt.Fprintf(stdout, "refused 401: anonymous callers are asked to log in (%s)\n", v.Reason)
	case a.status == http.StatusTemporaryRedirect:
		fmt.Fprintf(stdout, "redirected 307: %s may push here but not read the mount's source; the client is sent to a plain upload without mount and from (%s)\n", name, a.reason)
	default:
		fmt.Fprintf(stdout, "refused %d: %s (%s)\n", a.status, name, a.reason)
	}
	switch req.Route {
	case registry.RouteBase:
		fmt.Fprintln(stdout, "  /v2/ is open to every valid user and to no anonymous caller")
	case registry.RouteCatalog:
		fmt.Fprintf(stdout, "  /v2/_catalog is open to the subjects of %s's catalog\n", policyName)
	}
	for _, r := range v.Rulings() {
		fmt.Fprintf(stdout, "  %s needs %s: granted %s by %s\n", r.Access.Repository, r.Access.Needs, r.Granted, snap.policy.Where(r))
		if text := r.Text(); text != "" {
			fmt.Fprintf(stdout, "    %s\n", text)
		}
		if ruleGrants, narrowed := r.Narrowed(); narrowed {
			fmt.Fprintf(stdout, "    the rule grants %s; the token's scopes (%s) allow %s\n", ruleGrants, id.Scopes, r.Granted)
		}
	}
	if a.status != http.StatusOK {
		return cli.ExitStatus(1)
	}
	return nil
}

// usageError prints err and asks for exit status 2.
func usageError(stderr io.Writer, err error) error {
	fmt.Fprintln(stderr, "registry-auth explain:", err)
	return cli.ExitStatus(2)
}

// explainedIdentity is who name is to the service: the htpasswd file's user, or with
// --ldap-url the directory's (its spelling of the name, its groups and the groups file's),
// found as a login would find it but without a password. Without a directory, a name the
// file lacks is explained as if it were there, with a warning. The error is the refusal a
// login with that name gets, as "STATUS: why".
func explainedIdentity(snap *snapshot, src sources, dir ldap.Config, name string, stderr io.Writer) (policy.Identity, error) {
	if tokens.IsLogin(name) {
		return explainedToken(snap, src, name, time.Now(), stderr)
	}
	if _, ok := snap.users[name]; ok || dir.URL == "" {
		if !ok {
			fmt.Fprintf(stderr, "warning: %q is not in %s (explained as if it were)\n", name, src.htpasswd)
		}
		return snap.identityOf(name), nil
	}
	d, err := ldap.New(dir, slog.New(slog.DiscardHandler), nil)
	if err != nil {
		return policy.Identity{}, fmt.Errorf("503: %v", err)
	}
	defer d.Close()
	user, groups, err := d.Lookup(name)
	switch {
	case errors.Is(err, authn.ErrUnavailable):
		return policy.Identity{}, fmt.Errorf("503: %v", err)
	case err != nil:
		return policy.Identity{}, fmt.Errorf("401: %v", err)
	}
	if _, ok := snap.users[user]; ok {
		return policy.Identity{}, fmt.Errorf("403: the directory spells %q as %q, a user of %s: the service refuses such a login (name_collision)", name, user, src.htpasswd)
	}
	id := snap.identityOf(user, groups...)
	fmt.Fprintf(stderr, "%q is the directory's %q, groups: %s\n", name, user, strings.Join(id.Groups, ", "))
	return id, nil
}

// explainedToken is the identity of the token that logs in as name, with its scopes and the
// groups file's groups, or the 401 its login gets at now.
func explainedToken(snap *snapshot, src sources, name string, now time.Time, stderr io.Writer) (policy.Identity, error) {
	tokenName, _ := tokens.NameOf(name)
	t := snap.tokens.Token(tokenName)
	if t == nil {
		return policy.Identity{}, fmt.Errorf("401: no token %q in %s", tokenName, cmp.Or(src.tokens, "(--tokens is empty)"))
	}
	switch t.StateAt(now) {
	case tokens.Revoked:
		return policy.Identity{}, fmt.Errorf("401: the token %q was revoked on %s", tokenName, t.Revoked.Format(time.RFC3339))
	case tokens.Expired:
		return policy.Identity{}, fmt.Errorf("401: the token %q expired on %s", tokenName, t.Expires.Format(time.RFC3339))
	}
	id := snap.identityOf(name)
	id.Scopes = t.CompiledScopes()
	fmt.Fprintf(stderr, "%q is the token %q (%s:%d), scopes: %s\n", name, tokenName, src.tokens, t.Line, id.Scopes)
	return id, nil
}
