package cli

import (
	"errors"
	"flag"
	"fmt"
	"io"
)

// ExitStatus is an error that asks for a particular exit status. The command has already
// printed what the user needs to know, so nothing more is printed for it.
type ExitStatus int

func (e ExitStatus) Error() string { return fmt.Sprintf("exit status %d", int(e)) }

// ExitCode is the process's exit status for what a command returned: 0 for nil and for
// flag.ErrHelp (the usage was asked for and printed); an ExitStatus's own; otherwise 1, after
// printing err on stderr after name.
func ExitCode(name string, err error, stderr io.Writer) int {
	var status ExitStatus
	switch {
	case err == nil, errors.Is(err, flag.ErrHelp):
		return 0
	case errors.As(err, &status):
		return int(status)
	}
	fmt.Fprintf(stderr, "%s: %v\n", name, err)
	return 1
}
