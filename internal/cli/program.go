package cli

import (
	"context"
	"flag"
	"fmt"
	"strings"
)

// Command is one command of a Program.
type Command struct {
	Name    string // as typed
	Args    string // its operands in the usage, such as "USER" or "GROUP USER..."
	Summary string // one line for the usage
	Run     func(ctx context.Context, env Env, args []string) error
}

// Program is a table of commands: it dispatches on the first argument and writes its usage.
// The usage lists the commands in the table's order.
type Program struct {
	Name     string // "registry-auth", or "registry-auth user" for a command of commands
	Synopsis string // after Name on the usage's first line, such as "COMMAND [flags] [NAME]"
	Intro    string // a paragraph before the list of commands; may be empty
	// Default is the command run when the first argument is a flag or there is none; ""
	// means that a command must be named.
	Default  string
	Commands []Command
}

// Run runs the command args[0] names with the rest of args. "help" prints the usage on
// stdout; -h and --help do too and return flag.ErrHelp. No command or an unknown one prints
// the usage on stderr and returns an error that names the commands.
func (p Program) Run(ctx context.Context, env Env, args []string) error {
	name := p.Default
	if len(args) > 0 && (p.Default == "" || args[0] == "" || args[0][0] != '-') {
		name, args = args[0], args[1:]
	}
	for _, c := range p.Commands {
		if c.Name == name {
			return c.Run(ctx, env, args)
		}
	}
	switch name {
	case "help":
		fmt.Fprint(env.Stdout, p.Usage())
		return nil
	case "-h", "-help", "--help":
		fmt.Fprint(env.Stdout, p.Usage())
		return flag.ErrHelp
	}
	fmt.Fprint(env.Stderr, p.Usage())
	var names []string
	for _, c := range p.Commands {
		names = append(names, c.Name)
	}
	want := strings.Join(names[:len(names)-1], ", ") + " or " + names[len(names)-1]
	sub := strings.TrimPrefix(strings.TrimPrefix(p.Name, "registry-auth"), " ")
	if name == "" && len(args) == 0 && p.Default == "" {
		return fmt.Errorf("%s needs a command: %s", sub, want)
	}
	if sub != "" {
		sub += " "
	}
	return fmt.Errorf("unknown %scommand %q: want %s", sub, name, want)
}

// Usage is the program's usage text: its synopsis, its intro, and a line per command.
func (p Program) Usage() string {
	var b strings.Builder
	fmt.Fprintf(&b, "Usage: %s %s\n\n", p.Name, p.Synopsis)
	if p.Intro != "" {
		fmt.Fprintf(&b, "%s\n\n", strings.TrimSpace(p.Intro))
	}
	// One column for the summaries, wide enough for the commands with short operands; a
	// longer one gets its summary on the next line.
	const widest = 20
	width := 0
	for _, c := range p.Commands {
		if n := len(strings.TrimSpace(c.Name + " " + c.Args)); n <= widest {
			width = max(width, n)
		}
	}
	fmt.Fprintln(&b, "Commands:")
	for _, c := range p.Commands {
		head := strings.TrimSpace(c.Name + " " + c.Args)
		if len(head) > width {
			fmt.Fprintf(&b, "  %s\n  %-*s   %s\n", head, width, "", c.Summary)
			continue
		}
		fmt.Fprintf(&b, "  %-*s   %s\n", width, head, c.Summary)
	}
	fmt.Fprintf(&b, "\nRun '%s COMMAND --help' for the flags of a command.\n", p.Name)
	return b.String()
}
