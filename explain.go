package main

import (
	"cmp"
	"errors"
	"flag"
	"fmt"
	"github.com/registry-auth/registry-auth/internal/policy"
	"github.com/registry-auth/registry-auth/internal/registry"
	"io"
	"net/http"
)

const explainUsage = `Usage: registry-auth explain [flags] USER METHOD URI

Says what the service would answer when USER (- for anonymous) sends METHOD URI through
Traefik, with the files as they are now: allowed, refused 401/403, or redirected 307 (a push
that mounts a blob from a repository the user cannot read: the client uploads it instead);
each repository and
action the request needs; and for each the rule that decided, as FILE:LINE with the rule's
text, or "no rule matched". It asks for no password (the user is taken as authenticated) and
only warns when the htpasswd file lacks the user.
Example: registry-auth explain --policy auth/policy.yaml alice PUT /v2/alice/app/manifests/1
Exit status 0 when allowed, 1 when refused or redirected, 2 on a usage or file error.
`

// exitStatus is an error that asks main for a particular exit status; the command already
// printed what the user needs to know.
type exitStatus int

func (e exitStatus) Error() string { return fmt.Sprintf("exit status %d", int(e)) }

// explainCommand prints the decision for one request.
func explainCommand(args []string, lookupEnv func(string) (string, bool), stdout, stderr io.Writer) error {
	fs := newEnvFlagSet("registry-auth explain", explainUsage, lookupEnv, stdout, stderr)
	var src sources
	defineSourceFlags(fs, &src)
	if err := fs.parse(args); err != nil {
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
	res, err := loadSources(src)
	if err != nil {
		return usageError(stderr, err)
	}
	snap := res.snap
	id := policy.Identity{Anonymous: true}
	if name != "-" {
		id = snap.identityOf(name)
		if _, ok := snap.users[name]; !ok {
			fmt.Fprintf(stderr, "warning: %q is not in %s (explained as if it were)\n", name, src.htpasswd)
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
		return exitStatus(1)
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
	}
	if a.status != http.StatusOK {
		return exitStatus(1)
	}
	return nil
}

// usageError prints err and asks for exit status 2.
func usageError(stderr io.Writer, err error) error {
	fmt.Fprintln(stderr, "registry-auth explain:", err)
	return exitStatus(2)
}
