package cli

import (
	"bytes"
	"errors"
	"flag"
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"
)

// FlagSet is a flag.FlagSet whose Env* flags also read REGISTRY_AUTH_* variables, whose --help
// prints the usage on standard output, and whose Parse also runs the checks of its flags.
type FlagSet struct {
	*flag.FlagSet
	lookupEnv func(string) (string, bool)
	errs      []error
	checks    []func() error // run by Parse after the flags are set
	withEnv   bool           // some flag is backed by a variable: say so in the usage
	// help receives the usage that --help asks for (standard output, so that it pipes to
	// less or grep); usageTo receives it otherwise (standard error, after an error).
	help, usageTo io.Writer
}

// NewFlagSet is the flag set of the command name: usage is its text before the flags; --help
// prints both to env.Stdout, and errors (followed by the usage) go to env.Stderr.
func NewFlagSet(name, usage string, env Env) *FlagSet {
	lookupEnv, stdout, stderr := env.LookupEnv, env.Stdout, env.Stderr
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	efs := &FlagSet{FlagSet: fs, lookupEnv: lookupEnv, help: stdout, usageTo: stderr}
	fs.Usage = func() {
		w := efs.usageTo
		fmt.Fprint(w, usage)
		if efs.withEnv {
			fmt.Fprintln(w, "\nFlags (a variable in brackets may set the flag instead; the flag wins):")
		} else {
			fmt.Fprintln(w, "\nFlags:")
		}
		fs.SetOutput(w)
		fs.PrintDefaults()
		fs.SetOutput(stderr)
	}
	return efs
}

// EnvName is the variable that backs a flag: --push-group is REGISTRY_AUTH_PUSH_GROUP.
func EnvName(flagName string) string {
	return "REGISTRY_AUTH_" + strings.ToUpper(strings.ReplaceAll(flagName, "-", "_"))
}

// EnvString defines a string flag whose default comes from its variable when that is set
// (even to the empty string, which some flags give a meaning).
func (fs *FlagSet) EnvString(p *string, name, def, usage string) {
	if v, ok := fs.env(name); ok {
		def = v
	}
	fs.StringVar(p, name, def, fmt.Sprintf("%s [%s]", usage, EnvName(name)))
}

// EnvDuration defines a duration flag backed by its variable.
func (fs *FlagSet) EnvDuration(p *time.Duration, name string, def time.Duration, usage string) {
	if v, ok := fs.env(name); ok {
		d, err := time.ParseDuration(v)
		if err != nil {
			fs.errs = append(fs.errs, fmt.Errorf("%s=%q: want a duration such as 5m, 30s or 0: %v", EnvName(name), v, err))
		}
		def = d
	}
	fs.DurationVar(p, name, def, fmt.Sprintf("%s [%s]", usage, EnvName(name)))
}

// EnvBool defines a boolean flag backed by its variable (true, false, 1, 0...).
func (fs *FlagSet) EnvBool(p *bool, name string, def bool, usage string) {
	if v, ok := fs.env(name); ok {
		b, err := strconv.ParseBool(v)
		if err != nil {
			fs.errs = append(fs.errs, fmt.Errorf("%s=%q: want true or false", EnvName(name), v))
		}
		def = b
	}
	fs.BoolVar(p, name, def, fmt.Sprintf("%s [%s]", usage, EnvName(name)))
}

// EnvInt defines an integer flag backed by its variable.
func (fs *FlagSet) EnvInt(p *int, name string, def int, usage string) {
	if v, ok := fs.env(name); ok {
		// The same parse as the flag's own: fmt.Sscan would take "1e5" for 1 and "12abc" for 12.
		n, err := strconv.ParseInt(v, 0, strconv.IntSize)
		if err != nil {
			fs.errs = append(fs.errs, fmt.Errorf("%s=%q: want a whole number", EnvName(name), v))
		}
		def = int(n)
	}
	fs.IntVar(p, name, def, fmt.Sprintf("%s [%s]", usage, EnvName(name)))
}

// env returns the variable backing flag name. Unset and empty differ:
// REGISTRY_AUTH_GROUPS="" means "no groups file".
func (fs *FlagSet) env(name string) (string, bool) {
	fs.withEnv = true
	return fs.lookupEnv(EnvName(name))
}

// Given reports whether the flag name was set on the command line or by its variable.
func (fs *FlagSet) Given(name string) bool {
	if _, ok := fs.lookupEnv(EnvName(name)); ok {
		return true
	}
	set := false
	fs.Visit(func(f *flag.Flag) { set = set || f.Name == name })
	return set
}

// Parse parses args and returns the problems with them, with the variables, or (once every
// flag is set) with the values the flags' checks refuse.
func (fs *FlagSet) Parse(args []string) error {
	// The usage Parse prints goes to stdout for --help, to stderr after an error.
	var usage bytes.Buffer
	stderr := fs.usageTo
	fs.usageTo = &usage
	err := fs.FlagSet.Parse(args)
	fs.usageTo = stderr
	if errors.Is(err, flag.ErrHelp) {
		fs.help.Write(usage.Bytes())
	} else {
		stderr.Write(usage.Bytes())
	}
	if err != nil {
		return err
	}
	errs := fs.errs
	for _, check := range fs.checks {
		errs = append(errs, check())
	}
	return errors.Join(errs...)
}

// Check adds a check of the flags' values that Parse runs once they are set.
func (fs *FlagSet) Check(check func() error) { fs.checks = append(fs.checks, check) }
