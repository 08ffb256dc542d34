// Package editcmd is the user, group and token commands: they change the htpasswd, groups and
// tokens files while the service runs, the safe way (under a lock, by rename, keeping mode and
// owner, changing only what a command is about, each edit proved by the parser), and with
// --wait wait until the service has loaded what they wrote.
package editcmd

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"strings"
	"time"

	"github.com/registry-auth/registry-auth/internal/cli"
	"github.com/registry-auth/registry-auth/internal/htpasswd"
)

// editCLI runs the user and group commands: what they read and print, and the editor that
// writes the files.
type editCLI struct {
	env    cli.Env
	editor fileEditor
}

// editFlags are the flags of the user, group and token commands.
type editFlags struct {
	htpasswd, groups string
	tokens           string // the token commands' file, instead of htpasswd and groups
	force            bool
	wait             string // checked base URL, "" for no wait
	waitTimeout      time.Duration
	cost             int
}

// Which flags a command has, besides --htpasswd and --groups.
const (
	withEditFlags = 1 << iota // --force, --wait, --wait-timeout: the command writes
	withCost                  // --cost: the command hashes a password
	withTokens                // --tokens instead of --htpasswd and --groups: a token command
)

// parseEditFlags parses the flags of a user, group or token command and returns them with
// the operands; define adds the command's own flags. Flags may also follow the operands (user
// add alice --cost 12); after "--" every argument is an operand.
func (c *editCLI) parseEditFlags(name, usage string, which int, args []string, define ...func(*cli.FlagSet)) (*editFlags, []string, error) {
	f := &editFlags{}
	fs := cli.NewFlagSet(name, usage, c.env)
	if which&withTokens != 0 {
		fs.Tokens(&f.tokens)
	} else {
		fs.HTPasswd(&f.htpasswd)
		fs.Groups(&f.groups)
	}
	for _, d := range define {
		d(fs)
	}
	if which&withEditFlags != 0 && which&withTokens == 0 {
		// Not for tokens: their commands rewrite the file with the tokens that load.
		fs.BoolVar(&f.force, "force", false, "edit even though the file has lines the service skips (errors that 'registry-auth check' lists)")
	}
	if which&withEditFlags != 0 {
		fs.StringVar(&f.wait, "wait", "", "after the write, wait until the service at this base URL (such as http://127.0.0.1:8080) has loaded it, and print how long that took")
		fs.DurationVar(&f.waitTimeout, "wait-timeout", 10*time.Second, "how long --wait waits before it fails")
	}
	if which&withCost != 0 {
		fs.Cost(&f.cost)
	}
	var operands []string
	for {
		if err := fs.Parse(args); err != nil {
			return nil, nil, err
		}
		rest := fs.Args()
		if len(rest) == 0 {
			break
		}
		if i := len(args) - len(rest) - 1; i >= 0 && args[i] == "--" {
			operands = append(operands, rest...)
			break
		}
		operands, args = append(operands, rest[0]), rest[1:]
	}
	var errs []error
	switch {
	case which&withTokens != 0 && f.tokens == "":
		errs = append(errs, errors.New("--tokens is empty: give the path of the tokens file the service reads"))
	case which&withTokens == 0 && f.htpasswd == "":
		errs = append(errs, errors.New("--htpasswd is empty: give the path of the htpasswd file"))
	}
	if f.waitTimeout <= 0 && which&withEditFlags != 0 {
		errs = append(errs, fmt.Errorf("--wait-timeout %v: want a positive duration such as 10s", f.waitTimeout))
	}
	wait, err := waitURL(f.wait)
	f.wait = wait
	errs = append(errs, err)
	if err := errors.Join(errs...); err != nil {
		return nil, nil, err
	}
	return f, operands, nil
}

// oneName returns the only operand, or says how the command is used.
func oneName(cmd string, operands []string) (string, error) {
	if len(operands) != 1 {
		return "", fmt.Errorf("%s takes exactly one NAME, got %d arguments (see --help)", cmd, len(operands))
	}
	return operands[0], nil
}

// lock takes the locks of paths (htpasswd first) and says which leftovers of an interrupted
// edit it removed. The returned unlock may be called more than once.
func (c *editCLI) lock(ctx context.Context, paths ...string) (func(), error) {
	unlock, leftovers, err := c.editor.lock(ctx, paths...)
	if err != nil {
		return nil, err
	}
	for _, l := range leftovers {
		fmt.Fprintf(c.env.Stderr, "removed %s, a temporary file left by an interrupted edit\n", l)
	}
	done := false
	return func() {
		if !done {
			done = true
			unlock()
		}
	}, nil
}

// statOrNil is the file's info, or nil if it cannot be had.
func statOrNil(path string) fs.FileInfo {
	if path == "" {
		return nil
	}
	info, err := os.Stat(path)
	if err != nil {
		return nil
	}
	return info
}

// wrote tells what a command wrote, for the report and --wait.
func (c *editCLI) wrote(st fileState, what string) {
	if st.info == nil {
		fmt.Fprintf(c.env.Stdout, "created %s\n", st.path)
	}
	fmt.Fprintln(c.env.Stdout, what)
}

// waitLoaded waits, with --wait, until the service has loaded what the command wrote.
func (c *editCLI) waitLoaded(ctx context.Context, f *editFlags, wrote map[string][]byte, roles ...string) error {
	if f.wait == "" {
		return nil
	}
	clientCA, _ := c.env.LookupEnv("REGISTRY_AUTH_TLS_CLIENT_CA")
	w := loadWait{baseURL: f.wait, timeout: f.waitTimeout, wrote: wrote, clientCA: clientCA,
		paths: map[string]string{readyHTPasswd: f.htpasswd, readyGroups: f.groups, readyTokens: f.tokens}}
	took, err := w.wait(ctx, roles)
	if err != nil {
		return err
	}
	fmt.Fprintf(c.env.Stdout, "the service at %s loaded it after %v\n", f.wait, took.Round(time.Millisecond))
	return nil
}

// refuse says that an edit was checked and not made.
func refuse(path string, err error) error {
	return fmt.Errorf("the edited file would not read as intended (%v), so %s is left as it was; a line that ends in a backslash joins the next one, is that it?: %w", err, path, errEditRefused)
}

// errEditRefused says that an edit was not made; the message says why and what to do.
var errEditRefused = errors.New("nothing was changed")

// brokenLines refuses an edit of a file with lines the service skips, unless force: the edit
// would load fine and leave them unnoticed.
func brokenLines(path string, broken []htpasswd.Problem, force bool) error {
	if len(broken) == 0 || force {
		return nil
	}
	var b strings.Builder
	for _, p := range broken {
		fmt.Fprintf(&b, "%s\n", p)
	}
	fmt.Fprintf(&b, "%s has lines the service skips (above): fix them first (`registry-auth check` lists every problem), or pass --force to edit it anyway", path)
	return fmt.Errorf("%s: %w", b.String(), errEditRefused)
}

// run is a command of the table that runs f with an editCLI of its own.
func run(f func(*editCLI, context.Context, []string) error) func(context.Context, cli.Env, []string) error {
	return func(ctx context.Context, env cli.Env, args []string) error {
		return f(&editCLI{env: env}, ctx, args)
	}
}
