// Package cli is registry-auth's command layer: the command table that drives dispatch and
// every usage text, flags backed by REGISTRY_AUTH_* variables, the flags several commands
// share (each defined once), the exit status, and the password reader.
package cli

import "io"

// Env is what a command runs with: the process's environment variables and standard streams,
// or a test's.
type Env struct {
	LookupEnv      func(string) (string, bool)
	Stdin          io.Reader
	Stdout, Stderr io.Writer
}
