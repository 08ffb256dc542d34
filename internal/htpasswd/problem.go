package htpasswd

import (
	"fmt"
)

// Severity says whether a problem stops an entry from loading.
type Severity int

// The severities.
const (
	Warning Severity = iota // the entry loads; the operator should fix it
	Error                   // the line is skipped
)

// String is "warning" or "error", as messages print it.
func (s Severity) String() string {
	if s == Error {
		return "error"
	}
	return "warning"
}

// Problem is something wrong with one line of a file.
type Problem struct {
	File     string // the file's name; the parsers leave it empty for the caller that knows it
	Line     int    // 1-based; 0 means the whole file
	Severity Severity
	Message  string // what is wrong and how to fix it
}

// String is the problem as `registry-auth check` prints it: file:line: severity: message.
func (p Problem) String() string {
	if p.Line == 0 {
		return fmt.Sprintf("%s: %s: %s", p.File, p.Severity, p.Message)
	}
	return fmt.Sprintf("%s:%d: %s: %s", p.File, p.Line, p.Severity, p.Message)
}

// Problems collects the problems of one file as it is parsed.
type Problems []Problem

// Add records a problem on line n.
func (ps *Problems) Add(n int, s Severity, format string, args ...any) {
	*ps = append(*ps, Problem{Line: n, Severity: s, Message: fmt.Sprintf(format, args...)})
}
