package cli

import (
	"context"
	"errors"
	"flag"
	"strings"
	"testing"
)

// testProgram records which command ran with which arguments.
func testProgram(ran *string) Program {
	cmd := func(name string) func(context.Context, Env, []string) error {
		return func(_ context.Context, _ Env, args []string) error {
			*ran = name + " " + strings.Join(args, " ")
			return nil
		}
	}
	return Program{Name: "registry-auth tool", Synopsis: "COMMAND [flags]", Intro: "Does things.", Commands: []Command{
		{Name: "add", Args: "NAME", Summary: "add one", Run: cmd("add")},
		{Name: "explain", Args: "USER METHOD URI AND MORE", Summary: "a long head", Run: cmd("explain")},
		{Name: "list", Summary: "list them", Run: cmd("list")},
	}}
}

// TestProgramDispatch: the first argument picks the command, which gets the rest; help words
// print the usage on stdout; no command or an unknown one prints it on stderr and names the
// commands in the error; Default runs when the first argument is a flag or there is none.
func TestProgramDispatch(t *testing.T) {
	t.Parallel()
	tests := []struct {
		def       string
		args      []string
		ran       string
		err       string // "" for none; "help" for flag.ErrHelp
		stdout    bool   // the usage on stdout
		stderrHas bool   // the usage on stderr
	}{
		{"", []string{"add", "--x", "bob"}, "add --x bob", "", false, false},
		{"", []string{"list"}, "list ", "", false, false},
		{"", nil, "", "tool needs a command: add, explain or list", false, true},
		{"", []string{"frob"}, "", `unknown tool command "frob": want add, explain or list`, false, true},
		{"", []string{"--help"}, "", "help", true, false},
		{"", []string{"-h"}, "", "help", true, false},
		{"", []string{"help"}, "", "", true, false},
		{"list", nil, "list ", "", false, false},
		{"list", []string{"--flag"}, "list --flag", "", false, false},
		{"list", []string{"add", "x"}, "add x", "", false, false},
		{"list", []string{""}, "", `unknown tool command ""`, false, true},
	}
	for _, tt := range tests {
		var ran string
		p := testProgram(&ran)
		p.Default = tt.def
		var stdout, stderr strings.Builder
		err := p.Run(context.Background(), Env{Stdout: &stdout, Stderr: &stderr}, tt.args)
		switch {
		case tt.err == "help" && !errors.Is(err, flag.ErrHelp),
			tt.err == "" && err != nil,
			tt.err != "" && tt.err != "help" && (err == nil || !strings.Contains(err.Error(), tt.err)):
			t.Errorf("%q (default %q): got error %v, want %q", tt.args, tt.def, err, tt.err)
		}
		if ran != tt.ran {
			t.Errorf("%q (default %q): ran %q, want %q", tt.args, tt.def, ran, tt.ran)
		}
		if (stdout.String() == p.Usage()) != tt.stdout || (stderr.String() == p.Usage()) != tt.stderrHas {
			t.Errorf("%q: got stdout %q and stderr %q, want the usage on stdout %v, on stderr %v", tt.args, stdout.String(), stderr.String(), tt.stdout, tt.stderrHas)
		}
	}
}

// TestProgramUsage: the usage is written from the table: every command with its operands and
// summary in one column, a head too long for it on a line of its own.
func TestProgramUsage(t *testing.T) {
	t.Parallel()
	var ran string
	want := `Usage: registry-auth tool COMMAND [flags]

Does things.

Commands:
  add NAME   add one
  explain USER METHOD URI AND MORE
             a long head
  list       list them

Run 'registry-auth tool COMMAND --help' for the flags of a command.
`
	if got := testProgram(&ran).Usage(); got != want {
		t.Errorf("got\n%s\nwant\n%s", got, want)
	}
}

// TestExitCode: one mechanism for every command's exit status.
func TestExitCode(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		err     error
		code    int
		printed string
	}{
		{nil, 0, ""},
		{flag.ErrHelp, 0, ""},
		{ExitStatus(2), 2, ""},
		{ExitStatus(1), 1, ""},
		{errors.New("no such file"), 1, "registry-auth: no such file\n"},
	} {
		var stderr strings.Builder
		if got := ExitCode("registry-auth", tt.err, &stderr); got != tt.code || stderr.String() != tt.printed {
			t.Errorf("%v: got %d and %q, want %d and %q", tt.err, got, stderr.String(), tt.code, tt.printed)
		}
	}
}
