package cli

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"

	"golang.org/x/term"
)

// ReadPassword reads a password from stdin: on a terminal it asks on prompt without echo,
// twice when confirm (a new password, which a typo must not set); otherwise it reads the first
// line, without its line end.
func ReadPassword(stdin io.Reader, prompt io.Writer, confirm bool) ([]byte, error) {
	f, ok := stdin.(*os.File)
	if !ok || !term.IsTerminal(int(f.Fd())) {
		line, err := bufio.NewReader(stdin).ReadBytes('\n')
		if err != nil && !errors.Is(err, io.EOF) {
			return nil, fmt.Errorf("reading the password from standard input: %w", err)
		}
		return bytes.TrimRight(line, "\r\n"), nil
	}
	ask := func(label string) ([]byte, error) {
		fmt.Fprint(prompt, label)
		password, err := term.ReadPassword(int(f.Fd()))
		fmt.Fprintln(prompt)
		return password, err
	}
	first, err := ask("Password: ")
	if err != nil || !confirm {
		return first, err
	}
	second, err := ask("Again: ")
	if err != nil {
		return nil, err
	}
	if !bytes.Equal(first, second) {
		return nil, errors.New("the passwords differ")
	}
	return first, nil
}
