package editcmd

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/registry-auth/registry-auth/internal/cli"
	"github.com/registry-auth/registry-auth/internal/policy"
	"github.com/registry-auth/registry-auth/internal/tokens"
)

// tokenProgram is the table of the token commands.
var tokenProgram = cli.Program{
	Name:     "registry-auth token",
	Synopsis: "COMMAND [flags] [NAME]",
	Intro: `Makes, lists, revokes and rotates robot tokens: credentials for machines (CI jobs,
Kubernetes pull secrets) that log in as token+NAME with a long random secret, can do only
what their scopes allow (and the policy allows token+NAME), expire, and can be revoked. The
tokens file holds only each secret's SHA-256; it is edited as the user command edits the
htpasswd file: under a lock (FILE.lock beside it), by rename, each edit read back first.`,
	Commands: []cli.Command{
		{Name: "create", Args: "NAME", Summary: "make a token and print its secret, once", Run: run((*editCLI).tokenCreate)},
		{Name: "list", Summary: "list the tokens: scopes, owner, dates and state (never a secret)", Run: run((*editCLI).tokenList)},
		{Name: "revoke", Args: "NAME", Summary: "refuse a token from the moment the service loads the file", Run: run((*editCLI).tokenRevoke)},
		{Name: "rotate", Args: "NAME", Summary: "give a token a new secret, printed once; the old one is refused at once", Run: run((*editCLI).tokenRotate)},
	},
}

// Token runs `registry-auth token COMMAND ...`.
func Token(ctx context.Context, env cli.Env, args []string) error {
	return tokenProgram.Run(ctx, env, args)
}

const tokenCreateUsage = `Usage: registry-auth token create [flags] NAME

Makes the token NAME (lower-case letters, digits, . _ -), which logs in as token+NAME, and
prints its secret once, with a ready 'docker login' line and a ready 'kubectl create secret
docker-registry' line: only the secret's SHA-256 is kept, so it cannot be shown again (token
rotate makes a new one). A request is allowed when a --scope allows it AND the policy allows
the user token+NAME (without --policy: every user may pull, the push group may push, so add
token+NAME to the push group for a push token: registry-auth group add pusher token+NAME).
A scope is ACTIONS:PATTERN, such as pull:team/* (pull the repositories one level below team)
or pull,push:team/** (pull and push below team, at any depth), or the word catalog (list
/v2/_catalog); PATTERN is a repository pattern as in the policy file.
Example: registry-auth token create --tokens auth/tokens.yaml --scope 'pull:team/*' --owner alice ci
`

const tokenListUsage = `Usage: registry-auth token list [flags]

Prints one token per line: its name and login name, scopes, owner, when it was created and
expires, and its state now: active, expiring (within 7 days), expired or revoked. Never a
secret, nor its SHA-256.
`

const tokenRevokeUsage = `Usage: registry-auth token revoke [flags] NAME

Marks the token NAME revoked: the service refuses it (401) from the moment it loads the file,
within a second of the write, cached logins included (where the service reads a copy, such as
a Kubernetes Secret volume, from the moment the copy is updated). The token stays in the file,
and 'token list', as revoked; its name cannot be used again.
`

const tokenRotateUsage = `Usage: registry-auth token rotate [flags] NAME

Gives the token NAME a new secret, printed once with the same ready lines as 'token create';
the old secret is refused from the moment the service loads the file. Scopes, owner and
expiry stay.
`

// defaultExpiry is how long a token lasts unless --expires or --expires-at says otherwise:
// a machine's credential that nobody remembers should not last forever.
const defaultExpiry = 90 * 24 * time.Hour

// tokenCreateFlags are the flags of token create besides the editing ones.
type tokenCreateFlags struct {
	scopes      []string
	expires     string
	expiresAt   string
	owner       string
	description string
	server      string
}

// defineServer defines --registry, the host the printed login lines name.
func defineServer(p *string) func(*cli.FlagSet) {
	return func(fs *cli.FlagSet) {
		fs.EnvString(p, "registry", "myregistrydomain.com:5043", "the registry's host[:port], for the printed docker login and kubectl lines")
	}
}

func (c *editCLI) tokenCreate(ctx context.Context, args []string) error {
	var tf tokenCreateFlags
	var given func(string) bool
	f, operands, err := c.parseEditFlags("registry-auth token create", tokenCreateUsage, withTokens|withEditFlags, args, func(fs *cli.FlagSet) {
		given = fs.Given
		fs.Func("scope", "what the token may do, "+policy.ScopeSyntax+"; repeat it for more (at least one)", func(s string) error {
			tf.scopes = append(tf.scopes, s)
			return nil
		})
		fs.StringVar(&tf.expires, "expires", "90d", "how long the token lasts: days (90d), a Go duration (12h), or never")
		fs.StringVar(&tf.expiresAt, "expires-at", "", "when the token expires instead: a date (2027-03-01, midnight UTC) or an RFC 3339 time")
		fs.StringVar(&tf.owner, "owner", "", "who answers for the token (shown by token list)")
		fs.StringVar(&tf.description, "description", "", "what the token is for (shown by token list)")
	}, defineServer(&tf.server))
	if err != nil {
		return err
	}
	name, err := oneName("token create", operands)
	if err != nil {
		return err
	}
	now := time.Now().UTC().Truncate(time.Second)
	expires, err := tf.expiry(now, given("expires"))
	if err != nil {
		return err
	}
	if err := tokens.CheckName(name); err != nil {
		return err
	}
	if _, err := policy.ParseScopes(tf.scopes); err != nil {
		return fmt.Errorf("--scope: %v", err)
	}
	secret, digest := tokens.NewSecret()
	t := &tokens.Token{Name: name, Digest: digest, Scopes: tf.scopes, Owner: tf.owner, Description: tf.description, Created: now, Expires: expires}
	out, err := c.editTokens(ctx, f, name, func(file *tokens.File) error { return file.Create(t, now) })
	if err != nil {
		return err
	}
	when := "never expires"
	if !expires.IsZero() {
		when = "expires " + expires.Format(time.RFC3339)
	}
	fmt.Fprintf(c.env.Stdout, "created token %s in %s (scopes %s; %s)\n", name, f.tokens, strings.Join(tf.scopes, " "), when)
	c.printSecret(name, secret, tf.server)
	return c.waitLoaded(ctx, f, map[string][]byte{readyTokens: out}, readyTokens)
}

// expiry is when a new token expires: zero for never.
func (tf tokenCreateFlags) expiry(now time.Time, expiresGiven bool) (time.Time, error) {
	if tf.expiresAt != "" {
		if expiresGiven {
			return time.Time{}, errors.New("give --expires or --expires-at, not both")
		}
		at, err := time.Parse(time.DateOnly, tf.expiresAt)
		if err != nil {
			if at, err = time.Parse(time.RFC3339, tf.expiresAt); err != nil {
				return time.Time{}, fmt.Errorf("--expires-at %q: want a date such as 2027-03-01 or a time such as 2027-03-01T12:00:00Z", tf.expiresAt)
			}
		}
		if !at.After(now) {
			return time.Time{}, fmt.Errorf("--expires-at %s is not in the future", tf.expiresAt)
		}
		return at.UTC(), nil
	}
	if tf.expires == "never" {
		return time.Time{}, nil
	}
	d, err := parseLifetime(tf.expires)
	if err != nil {
		return time.Time{}, err
	}
	return now.Add(d), nil
}

// parseLifetime reads --expires: whole days (90d) or a Go duration (12h, 30m).
func parseLifetime(s string) (time.Duration, error) {
	var d time.Duration
	var err error
	if days, ok := strings.CutSuffix(s, "d"); ok {
		var n int
		n, err = strconv.Atoi(days)
		d = time.Duration(n) * 24 * time.Hour
	} else {
		d, err = time.ParseDuration(s)
	}
	if err != nil || d <= 0 || d > 100*365*24*time.Hour {
		return 0, fmt.Errorf("--expires %q: want a positive number of days (90d), a duration such as 12h, or never", s)
	}
	return d, nil
}

// printSecret prints a token's secret, the one time anyone sees it, with the lines that use
// it.
func (c *editCLI) printSecret(name, secret, server string) {
	login := tokens.LoginName(name)
	fmt.Fprintf(c.env.Stdout, `
Its secret, shown this once (only its SHA-256 is kept):

    %[1]s

Log in with it (in CI, from a secret variable, on standard input):

    printf '%%s' '%[1]s' | docker login %[2]s --username %[3]s --password-stdin

Make a Kubernetes pull secret of it:

    kubectl create secret docker-registry %[4]s --docker-server=%[2]s --docker-username=%[3]s --docker-password='%[1]s'

`, secret, server, login, "registry-"+name)
}

func (c *editCLI) tokenRevoke(ctx context.Context, args []string) error {
	f, operands, err := c.parseEditFlags("registry-auth token revoke", tokenRevokeUsage, withTokens|withEditFlags, args)
	if err != nil {
		return err
	}
	name, err := oneName("token revoke", operands)
	if err != nil {
		return err
	}
	out, err := c.editTokens(ctx, f, name, func(file *tokens.File) error { return file.Revoke(name, time.Now()) })
	if err != nil {
		return err
	}
	fmt.Fprintf(c.env.Stdout, "revoked token %s in %s: refused from the moment the service loads the file\n", name, f.tokens)
	return c.waitLoaded(ctx, f, map[string][]byte{readyTokens: out}, readyTokens)
}

func (c *editCLI) tokenRotate(ctx context.Context, args []string) error {
	var server string
	f, operands, err := c.parseEditFlags("registry-auth token rotate", tokenRotateUsage, withTokens|withEditFlags, args, defineServer(&server))
	if err != nil {
		return err
	}
	name, err := oneName("token rotate", operands)
	if err != nil {
		return err
	}
	secret, digest := tokens.NewSecret()
	out, err := c.editTokens(ctx, f, name, func(file *tokens.File) error { return file.Rotate(name, digest, time.Now()) })
	if err != nil {
		return err
	}
	fmt.Fprintf(c.env.Stdout, "gave token %s in %s a new secret: the old one is refused from the moment the service loads the file\n", name, f.tokens)
	c.printSecret(name, secret, server)
	return c.waitLoaded(ctx, f, map[string][]byte{readyTokens: out}, readyTokens)
}

// editTokens changes the tokens file under its lock: it reads the file, applies change, and
// replaces the file with the result once it reads back as the whole edit and nothing else.
// It returns what it wrote.
func (c *editCLI) editTokens(ctx context.Context, f *editFlags, name string, change func(*tokens.File) error) ([]byte, error) {
	unlock, err := c.lock(ctx, f.tokens)
	if err != nil {
		return nil, err
	}
	defer unlock()
	st, err := c.editor.read(f.tokens)
	if err != nil {
		return nil, err
	}
	file, err := tokens.Parse(st.data, st.path)
	if err != nil {
		return nil, fmt.Errorf("%v: fix it first (registry-auth check names the problem): %w", err, errEditRefused)
	}
	if len(file.Problems) > 0 {
		// No --force here: the commands write the tokens that load, and would drop these.
		var b strings.Builder
		for _, p := range file.Problems {
			fmt.Fprintf(&b, "%s\n", p)
		}
		return nil, fmt.Errorf("%s%s has tokens the service skips (above): fix or remove them first, as a token command rewrites the file with the tokens that load: %w", b.String(), st.path, errEditRefused)
	}
	if err := change(file); err != nil {
		return nil, fmt.Errorf("%s: %w: %w", st.path, err, errEditRefused)
	}
	out := file.Bytes()
	if err := checkTokensEdit(file, out, st.path, name); err != nil {
		return nil, refuse(st.path, err)
	}
	if err := c.editor.replace(st, out, nil); err != nil {
		return nil, err
	}
	return out, nil
}

// checkTokensEdit proves an edit of the file at path: out reads back without problems, with
// the tokens of want, and name's as changed.
func checkTokensEdit(want *tokens.File, out []byte, path, name string) error {
	got, err := tokens.Parse(out, path)
	switch {
	case err != nil:
		return err
	case len(got.Problems) > 0:
		return errors.New(got.Problems[0].String())
	case len(got.Tokens) != len(want.Tokens):
		return fmt.Errorf("%d tokens read back, want %d", len(got.Tokens), len(want.Tokens))
	}
	g, w := got.Get(name), want.Get(name)
	if g == nil || g.Digest != w.Digest || !g.Revoked.Equal(w.Revoked) || !g.Expires.Equal(w.Expires) || strings.Join(g.Scopes, " ") != strings.Join(w.Scopes, " ") {
		return fmt.Errorf("token %q does not read back as written", name)
	}
	return nil
}

func (c *editCLI) tokenList(_ context.Context, args []string) error {
	f, operands, err := c.parseEditFlags("registry-auth token list", tokenListUsage, withTokens, args)
	if err != nil {
		return err
	}
	if len(operands) > 0 {
		return fmt.Errorf("token list takes no arguments, got %q (see --help)", operands[0])
	}
	st, err := c.editor.read(f.tokens)
	if err != nil {
		return err
	}
	if st.info == nil {
		fmt.Fprintf(c.env.Stderr, "%s does not exist yet: no tokens (registry-auth token create makes it)\n", st.path)
		return nil
	}
	file, err := tokens.Parse(st.data, st.path)
	if err != nil {
		return err
	}
	for _, p := range file.Problems {
		fmt.Fprintln(c.env.Stderr, p)
	}
	now := time.Now()
	date := func(t time.Time, zero string) string {
		if t.IsZero() {
			return zero
		}
		return t.UTC().Format(time.RFC3339)
	}
	w := tabwriter.NewWriter(c.env.Stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(w, "NAME\tLOGIN\tSCOPES\tOWNER\tCREATED\tEXPIRES\tSTATE\tDESCRIPTION")
	for _, t := range file.Tokens {
		state := string(t.StateAt(now))
		if !t.Revoked.IsZero() {
			state += " " + date(t.Revoked, "")
		}
		fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", t.Name, tokens.LoginName(t.Name), strings.Join(t.Scopes, " "),
			cmp.Or(t.Owner, "-"), date(t.Created, "-"), date(t.Expires, "never"), state, cmp.Or(t.Description, "-"))
	}
	return w.Flush()
}
