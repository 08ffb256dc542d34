package editcmd

import (
	"context"
	"fmt"
	"os"
	"strings"
	"text/tabwriter"

	"github.com/registry-auth/registry-auth/internal/cli"
	"github.com/registry-auth/registry-auth/internal/htpasswd"
)

// userProgram is the table of the user commands.
var userProgram = cli.Program{
	Name:     "registry-auth user",
	Synopsis: "COMMAND [flags] [NAME]",
	Intro: `Changes the users of the htpasswd file while the service runs, the safe way: under a lock
(FILE.lock beside the file), by writing a new file and renaming it over the old one (the
service never reads half a file), keeping the file's mode, owner and group, and changing only
the lines the command is about.`,
	Commands: []cli.Command{
		{Name: "add", Args: "NAME", Summary: "add a user; the password is read from standard input", Run: run((*editCLI).userAdd)},
		{Name: "passwd", Args: "NAME", Summary: "change the password of a user", Run: run((*editCLI).userPasswd)},
		{Name: "remove", Args: "NAME", Summary: "remove a user, from the htpasswd file and from every group", Run: run((*editCLI).userRemove)},
		{Name: "list", Summary: "list the users, their hash format and groups; ! marks a weak or refused hash", Run: run((*editCLI).userList)},
		{Name: "verify", Args: "NAME", Summary: "check a password read from standard input: exit 0 if it is right, 1 if not", Run: run((*editCLI).userVerify)},
	},
}

// User runs `registry-auth user COMMAND ...`.
func User(ctx context.Context, env cli.Env, args []string) error {
	return userProgram.Run(ctx, env, args)
}

const userAddUsage = `Usage: registry-auth user add [flags] NAME

Adds the user NAME to the htpasswd file with a bcrypt hash ($2y$, as htpasswd -B writes) of a
password read from standard input: asked twice without echo on a terminal, otherwise the
first line is used. Creates the file (mode 0640, or the groups file's mode, owner and group)
if it does not exist. Refuses a name the file already has (change its password with 'user
passwd') and a name Apache would read differently: empty, starting with #, with a colon,
white space or control characters, or too long for Apache's 8190-byte lines.
Example: registry-auth user add --htpasswd auth/htpasswd --wait http://127.0.0.1:8080 alice
`

const userPasswdUsage = `Usage: registry-auth user passwd [flags] NAME

Replaces the hash of the user NAME with a bcrypt hash of a password read from standard input
(asked twice without echo on a terminal, otherwise the first line). Only the hash changes on
the user's line, which is the first line that names it, as Apache reads it.
`

const userRemoveUsage = `Usage: registry-auth user remove [flags] NAME

Removes the user NAME: every line of the htpasswd file that names it, and, unless --groups is
empty, the user from every group of the groups file (first, so that a crash between the two
never leaves a removed user with more rights). Says what it removed.
`

const userListUsage = `Usage: registry-auth user list [flags]

Prints one user per line, in file order: the name, the hash format, the groups, and after a !
the problems 'registry-auth check' reports for the user's lines (a weak hash such as MD5 or
SHA-1 that the service accepts with a warning, or a refused one that it skips).
`

const userVerifyUsage = `Usage: registry-auth user verify [flags] NAME

Reads a password from standard input (asked once without echo on a terminal, otherwise the
first line) and says whether it is the password of the user NAME, as the service would check
it. Exit status 0 if it is, 1 if not, as for 'htpasswd -v'.
`

func (c *editCLI) userAdd(ctx context.Context, args []string) error {
	f, operands, err := c.parseEditFlags("registry-auth user add", userAddUsage, withEditFlags|withCost, args)
	if err != nil {
		return err
	}
	name, err := oneName("user add", operands)
	if err != nil {
		return err
	}
	if err := htpasswd.CheckUserName(name); err != nil {
		return err
	}
	return c.setPassword(ctx, f, name, true)
}

func (c *editCLI) userPasswd(ctx context.Context, args []string) error {
	f, operands, err := c.parseEditFlags("registry-auth user passwd", userPasswdUsage, withEditFlags|withCost, args)
	if err != nil {
		return err
	}
	name, err := oneName("user passwd", operands)
	if err != nil {
		return err
	}
	return c.setPassword(ctx, f, name, false)
}

// setPassword adds user name (add) or changes the hash of an existing one.
func (c *editCLI) setPassword(ctx context.Context, f *editFlags, name string, add bool) error {
	// The password is asked for, and hashed, before the lock is taken: another command
	// need not wait for a person to type.
	password, err := cli.ReadPassword(c.env.Stdin, c.env.Stderr, true)
	if err != nil {
		return err
	}
	hash, err := htpasswd.NewBcrypt(password, f.cost)
	if err != nil {
		return err
	}
	unlock, err := c.lock(ctx, f.htpasswd)
	if err != nil {
		return err
	}
	defer unlock()
	st, err := c.editor.read(f.htpasswd)
	if err != nil {
		return err
	}
	if st.info == nil && !add {
		return fmt.Errorf("%s does not exist: create it with `registry-auth user add %s`", st.path, name)
	}
	doc, err := htpasswd.ReadDoc(st.path, st.data)
	if err != nil {
		return err
	}
	entries := doc.Entries(name)
	switch {
	case add && len(entries) > 0:
		return fmt.Errorf("user %q exists (%s:%d): change its password with `registry-auth user passwd %s`: %w", name, st.path, doc.LineNum(entries[0]), name, errEditRefused)
	case !add && len(entries) == 0:
		return fmt.Errorf("no user %q in %s: add it with `registry-auth user add %s`: %w", name, st.path, name, errEditRefused)
	}
	// The new hash mends the user's own line, if it was refused.
	if err := brokenLines(st.path, doc.ErrorsBesides(entries...), f.force); err != nil {
		return err
	}
	line := doc.SetHash(name, hash)
	out := doc.Bytes()
	if err := doc.CheckEdit(out, name, hash); err != nil {
		return refuse(st.path, err)
	}
	if err := c.editor.replace(st, out, statOrNil(f.groups)); err != nil {
		return err
	}
	unlock()
	if add {
		c.wrote(st, fmt.Sprintf("added user %s to %s (line %d)", name, st.path, line))
	} else {
		c.wrote(st, fmt.Sprintf("changed the password of %s in %s (line %d)", name, st.path, line))
		for _, i := range entries[1:] {
			fmt.Fprintf(c.env.Stderr, "%s:%d: also names %s and is ignored, as Apache reads the first line; `registry-auth user remove %s` removes every line of a user\n", st.path, doc.LineNum(i), name, name)
		}
	}
	return c.waitLoaded(ctx, f, map[string][]byte{readyHTPasswd: out}, readyHTPasswd)
}

func (c *editCLI) userRemove(ctx context.Context, args []string) error {
	f, operands, err := c.parseEditFlags("registry-auth user remove", userRemoveUsage, withEditFlags, args)
	if err != nil {
		return err
	}
	name, err := oneName("user remove", operands)
	if err != nil {
		return err
	}
	paths := []string{f.htpasswd}
	if f.groups != "" {
		paths = append(paths, f.groups)
	}
	unlock, err := c.lock(ctx, paths...)
	if err != nil {
		return err
	}
	defer unlock()

	st, err := c.editor.read(f.htpasswd)
	if err != nil {
		return err
	}
	if st.info == nil {
		return fmt.Errorf("%s does not exist (check --htpasswd)", st.path)
	}
	doc, err := htpasswd.ReadDoc(st.path, st.data)
	if err != nil {
		return err
	}
	entries := doc.Entries(name)
	if len(entries) > 0 {
		if err := brokenLines(st.path, doc.ErrorsBesides(entries...), f.force); err != nil {
			return err
		}
	}
	removedLines := doc.Remove(name)
	out := doc.Bytes()
	if err := doc.CheckEdit(out, name, ""); err != nil {
		return refuse(st.path, err)
	}

	// The groups file, read and checked before anything is written.
	var gst fileState
	var gdoc htpasswd.GroupsDoc
	var gout []byte
	var fromGroups []string
	var groupLines []int
	if f.groups != "" {
		if gst, err = c.editor.read(f.groups); err != nil {
			return err
		}
		if gst.info != nil {
			if gdoc, err = htpasswd.ReadGroupsDoc(gst.path, gst.data); err != nil {
				return err
			}
			want := gdoc.Membership()
			for _, members := range want {
				delete(members, name)
			}
			fromGroups, groupLines = gdoc.RemoveMember("", name)
			if len(fromGroups) > 0 { // a file that is not written hides nothing
				if err := brokenLines(gst.path, gdoc.ErrorsBesides(), f.force); err != nil {
					return err
				}
			}
			gout = gdoc.Bytes()
			if err := gdoc.CheckEdit(gout, want); err != nil {
				return refuse(gst.path, err)
			}
		}
	}
	if len(removedLines) == 0 && len(fromGroups) == 0 {
		where := st.path
		if gst.info != nil {
			where += " nor in " + gst.path
		}
		return fmt.Errorf("no user %q in %s (`registry-auth user list` lists the users): %w", name, where, errEditRefused)
	}

	// The groups first: a crash between the two writes leaves the user without groups (able
	// to pull, not to push), never gone from the htpasswd file but still in a group, whose
	// rights a new user of that name would inherit.
	wrote := map[string][]byte{}
	roles := []string{readyHTPasswd}
	if len(fromGroups) > 0 {
		if err := c.editor.replace(gst, gout, nil); err != nil {
			return err
		}
		wrote[readyGroups] = gout
		roles = append(roles, readyGroups)
	}
	if len(removedLines) > 0 {
		if err := c.editor.replace(st, out, nil); err != nil {
			return err
		}
		wrote[readyHTPasswd] = out
	}
	unlock()
	if len(removedLines) > 0 {
		fmt.Fprintf(c.env.Stdout, "removed user %s from %s (%s)\n", name, st.path, lineList(removedLines))
	} else {
		fmt.Fprintf(c.env.Stdout, "%s has no user %s\n", st.path, name)
	}
	switch {
	case len(fromGroups) > 0:
		fmt.Fprintf(c.env.Stdout, "removed %s from the groups %s in %s (%s)\n", name, strings.Join(fromGroups, ", "), gst.path, lineList(groupLines))
	case f.groups == "":
	case gst.info == nil:
		fmt.Fprintf(c.env.Stdout, "no groups file at %s\n", gst.path)
	default:
		fmt.Fprintf(c.env.Stdout, "%s was in no group of %s\n", name, gst.path)
	}
	return c.waitLoaded(ctx, f, wrote, roles...)
}

// lineList is "line 3" or "lines 3, 7".
func lineList(nums []int) string {
	s := make([]string, len(nums))
	for i, n := range nums {
		s[i] = fmt.Sprint(n)
	}
	if len(nums) == 1 {
		return "line " + s[0]
	}
	return "lines " + strings.Join(s, ", ")
}

func (c *editCLI) userList(_ context.Context, args []string) error {
	f, operands, err := c.parseEditFlags("registry-auth user list", userListUsage, 0, args)
	if err != nil {
		return err
	}
	if len(operands) > 0 {
		return fmt.Errorf("unexpected argument %q: user list takes flags only (see --help)", operands[0])
	}
	data, err := os.ReadFile(f.htpasswd)
	if err != nil {
		return fmt.Errorf("reading the htpasswd file (check --htpasswd): %w", err)
	}
	doc, err := htpasswd.ReadDoc(f.htpasswd, data)
	if err != nil {
		return err
	}
	groupsOf := map[string][]string{}
	if f.groups != "" {
		if data, err := os.ReadFile(f.groups); err == nil {
			if gdoc, err := htpasswd.ReadGroupsDoc(f.groups, data); err == nil {
				for _, g := range gdoc.Groups() {
					for _, m := range g.Members {
						groupsOf[m] = append(groupsOf[m], g.Name)
					}
				}
			}
		}
	}
	tw := tabwriter.NewWriter(c.env.Stdout, 0, 8, 2, ' ', 0)
	for _, u := range doc.Users() {
		entries := doc.Entries(u)
		hash := doc.HashAt(entries[0])
		groups := strings.Join(groupsOf[u], ",")
		if groups == "" {
			groups = "-"
		}
		var notes []string
		for _, p := range doc.ProblemsOn(entries...) {
			notes = append(notes, fmt.Sprintf("line %d: %s: %s", p.Line, p.Severity, p.Message))
		}
		row := fmt.Sprintf("%s\t%s\t%s", u, htpasswd.Classify(hash), groups)
		if len(notes) > 0 {
			row += "\t! " + strings.Join(notes, "; ")
		}
		fmt.Fprintln(tw, row)
	}
	tw.Flush()
	// Lines that name no user are not in the list; say what they are.
	for _, p := range doc.StrayProblems() {
		fmt.Fprintln(c.env.Stderr, p)
	}
	return nil
}

func (c *editCLI) userVerify(_ context.Context, args []string) error {
	f, operands, err := c.parseEditFlags("registry-auth user verify", userVerifyUsage, 0, args)
	if err != nil {
		return err
	}
	name, err := oneName("user verify", operands)
	if err != nil {
		return err
	}
	data, err := os.ReadFile(f.htpasswd)
	if err != nil {
		return fmt.Errorf("reading the htpasswd file (check --htpasswd): %w", err)
	}
	doc, err := htpasswd.ReadDoc(f.htpasswd, data)
	if err != nil {
		return err
	}
	entry, ok := doc.User(name)
	if !ok {
		if idx := doc.Entries(name); len(idx) > 0 {
			return fmt.Errorf("the service refuses the line of %s (%s:%d): give it a new password with `registry-auth user passwd %s`",
				name, f.htpasswd, doc.LineNum(idx[0]), name)
		}
		return fmt.Errorf("no user %q in %s", name, f.htpasswd)
	}
	password, err := cli.ReadPassword(c.env.Stdin, c.env.Stderr, false)
	if err != nil {
		return err
	}
	match, err := htpasswd.Verify(entry.Hash, password)
	if err != nil {
		return fmt.Errorf("the hash of %s on line %d cannot be checked: %w", name, entry.Line, err)
	}
	if !match {
		fmt.Fprintf(c.env.Stdout, "wrong password for %s\n", name)
		return cli.ExitStatus(1)
	}
	fmt.Fprintf(c.env.Stdout, "password for %s is correct\n", name)
	return nil
}
