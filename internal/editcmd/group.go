package editcmd

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"maps"
	"os"
	"slices"
	"strings"

	"github.com/registry-auth/registry-auth/internal/cli"
	"github.com/registry-auth/registry-auth/internal/htpasswd"
	"github.com/registry-auth/registry-auth/internal/policy"
)

// groupProgram is the table of the group commands.
var groupProgram = cli.Program{
	Name:     "registry-auth group",
	Synopsis: "COMMAND [flags] GROUP [USER...]",
	Intro: `Changes the groups file while the service runs, the safe way (see 'registry-auth user
--help'): under a lock, by rename, keeping mode, owner and group, changing only the lines the
command is about. Group names compare without regard to case, as in Apache.`,
	Commands: []cli.Command{
		{Name: "add", Args: "GROUP USER...", Summary: "add users to a group (made if it does not exist)", Run: run((*editCLI).groupAdd)},
		{Name: "remove", Args: "GROUP USER...", Summary: "take users out of a group", Run: run((*editCLI).groupRemove)},
		{Name: "list", Args: "[GROUP]", Summary: "list the groups and their members, or the members of GROUP", Run: run((*editCLI).groupList)},
	},
}

const groupAddUsage = `Usage: registry-auth group add [flags] GROUP USER...

Adds the users to GROUP, at the end of the group's first line, or on a new line "GROUP: USER..."
if the file has no such group. Creates the file (with the htpasswd file's mode, owner and
group) if it does not exist. A user already in the group is left as it is. A user that the
htpasswd file lacks is refused (add it with 'registry-auth user add' first), unless --force.
`

const groupRemoveUsage = `Usage: registry-auth group remove [flags] GROUP USER...

Takes the users out of GROUP, on every line of the group that names them; a line left without
members stays, as "GROUP:". Refuses, and changes nothing, if a user is not in the group.
`

const groupListUsage = `Usage: registry-auth group list [flags] [GROUP]

Without GROUP, prints each group as "GROUP: USER...", in file order; with GROUP, its members,
one per line. Members that the htpasswd file lacks are named on standard error.
`

// Group runs `registry-auth group COMMAND ...`.
func Group(ctx context.Context, env cli.Env, args []string) error {
	return groupProgram.Run(ctx, env, args)
}

func (c *editCLI) groupAdd(ctx context.Context, args []string) error {
	return c.groupEdit(ctx, args, true)
}

func (c *editCLI) groupRemove(ctx context.Context, args []string) error {
	return c.groupEdit(ctx, args, false)
}

// groupEdit adds users to a group, or takes them out.
func (c *editCLI) groupEdit(ctx context.Context, args []string, add bool) error {
	cmd, usage := "group add", groupAddUsage
	if !add {
		cmd, usage = "group remove", groupRemoveUsage
	}
	f, operands, err := c.parseEditFlags("registry-auth "+cmd, usage, withEditFlags, args)
	if err != nil {
		return err
	}
	if len(operands) < 2 {
		return fmt.Errorf("%s takes a GROUP and at least one USER (see --help)", cmd)
	}
	if f.groups == "" {
		return errors.New("--groups is empty: give the path of the groups file")
	}
	group, users := operands[0], []string{}
	for _, u := range operands[1:] {
		if !slices.Contains(users, u) {
			users = append(users, u)
		}
	}
	if add {
		if err := htpasswd.CheckName("group", group); err != nil {
			return err
		}
		for _, u := range users {
			if err := htpasswd.CheckName("user", u); err != nil {
				return err
			}
		}
	}

	// The htpasswd file's lock too when adding: a `user remove` running at the same time must
	// not remove a user between the check below and the write.
	paths := []string{f.groups}
	if add {
		paths = []string{f.htpasswd, f.groups}
	}
	unlock, err := c.lock(ctx, paths...)
	if err != nil {
		return err
	}
	defer unlock()
	st, err := c.editor.read(f.groups)
	if err != nil {
		return err
	}
	if st.info == nil && !add {
		return fmt.Errorf("%s does not exist (check --groups): %w", st.path, errEditRefused)
	}
	doc, err := htpasswd.ReadGroupsDoc(st.path, st.data)
	if err != nil {
		return err
	}
	if err := brokenLines(st.path, doc.ErrorsBesides(), f.force); err != nil {
		return err
	}
	want := doc.Membership()
	key := policy.GroupKey(group)
	members := want[key]
	if members == nil {
		members = map[string]bool{}
		want[key] = members
	}

	var changed, unchanged []string
	var lines []int
	if add {
		known, err := c.htpasswdUsers(f.htpasswd)
		if err != nil && !f.force {
			return err
		}
		for _, u := range users {
			switch {
			case members[u]:
				unchanged = append(unchanged, u)
			case !known[u] && !f.force:
				return fmt.Errorf("%s is not a user of %s: add it first with `registry-auth user add %s`, or pass --force: %w", u, f.htpasswd, u, errEditRefused)
			default:
				changed = append(changed, u)
				members[u] = true
			}
		}
		if len(changed) > 0 {
			lines = []int{doc.AddMembers(group, changed)}
		}
	} else {
		if !doc.HasGroup(group) {
			return fmt.Errorf("no group %q in %s (`registry-auth group list` lists them): %w", group, st.path, errEditRefused)
		}
		for _, u := range users {
			if !members[u] {
				return fmt.Errorf("%s is not in group %s of %s (its members: %s): %w", u, group, st.path, strings.Join(slices.Sorted(maps.Keys(members)), " "), errEditRefused)
			}
		}
		for _, u := range users {
			delete(members, u)
			_, nums := doc.RemoveMember(group, u)
			lines = append(lines, nums...)
		}
		changed = users
		lines = slices.Compact(slices.Sorted(slices.Values(lines)))
	}

	wrote := map[string][]byte{}
	if len(changed) > 0 {
		out := doc.Bytes()
		if err := doc.CheckEdit(out, want); err != nil {
			return refuse(st.path, err)
		}
		if err := c.editor.replace(st, out, statOrNil(f.htpasswd)); err != nil {
			return err
		}
		wrote[readyGroups] = out
		unlock()
		if add {
			c.wrote(st, fmt.Sprintf("added %s to group %s in %s (%s)", strings.Join(changed, ", "), group, st.path, lineList(lines)))
		} else {
			c.wrote(st, fmt.Sprintf("removed %s from group %s in %s (%s)", strings.Join(changed, ", "), group, st.path, lineList(lines)))
		}
	}
	unlock()
	if len(unchanged) > 0 {
		fmt.Fprintf(c.env.Stdout, "already in group %s: %s\n", group, strings.Join(unchanged, ", "))
	}
	return c.waitLoaded(ctx, f, wrote, readyGroups)
}

// htpasswdUsers are the users the service would load from the htpasswd file.
func (c *editCLI) htpasswdUsers(path string) (map[string]bool, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("reading the htpasswd file to check the users (check --htpasswd, or pass --force): %w", err)
	}
	hf, err := htpasswd.Parse(bytes.NewReader(data))
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	known := make(map[string]bool, len(hf.Users))
	for u := range hf.Users {
		known[u] = true
	}
	return known, nil
}

func (c *editCLI) groupList(_ context.Context, args []string) error {
	f, operands, err := c.parseEditFlags("registry-auth group list", groupListUsage, 0, args)
	if err != nil {
		return err
	}
	if len(operands) > 1 {
		return fmt.Errorf("group list takes at most one GROUP, got %d (see --help)", len(operands))
	}
	if f.groups == "" {
		return errors.New("--groups is empty: give the path of the groups file")
	}
	data, err := os.ReadFile(f.groups)
	if err != nil {
		return fmt.Errorf("reading the groups file (check --groups): %w", err)
	}
	doc, err := htpasswd.ReadGroupsDoc(f.groups, data)
	if err != nil {
		return err
	}
	known, _ := c.htpasswdUsers(f.htpasswd) // nil when unreadable: then nobody is flagged
	groups := doc.Groups()
	if len(operands) == 1 {
		key := policy.GroupKey(operands[0])
		i := slices.IndexFunc(groups, func(g htpasswd.GroupMembers) bool { return policy.GroupKey(g.Name) == key })
		if i < 0 {
			return fmt.Errorf("no group %q in %s (`registry-auth group list` lists them)", operands[0], f.groups)
		}
		groups = groups[i : i+1]
		for _, m := range groups[0].Members {
			fmt.Fprintln(c.env.Stdout, m)
		}
	} else {
		for _, g := range groups {
			fmt.Fprintf(c.env.Stdout, "%s: %s\n", g.Name, strings.Join(quoteAll(g.Members), " "))
		}
	}
	for _, g := range groups {
		for _, m := range g.Members {
			if known != nil && !known[m] {
				fmt.Fprintf(c.env.Stderr, "member %s of group %s is not a user of %s\n", m, g.Name, f.htpasswd)
			}
		}
	}
	for _, p := range doc.Problems() {
		if p.Severity == htpasswd.Error {
			fmt.Fprintln(c.env.Stderr, p)
		}
	}
	return nil
}

func quoteAll(names []string) []string {
	q := make([]string, len(names))
	for i, n := range names {
		q[i] = htpasswd.QuoteMember(n)
	}
	return q
}
