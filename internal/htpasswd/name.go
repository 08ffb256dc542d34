package htpasswd

import (
	"fmt"
	"strings"
	"unicode"
)

// MaxNameLen is the longest user name whose bcrypt line fits Apache's htpasswd line limit.
const MaxNameLen = MaxLine - len(":") - 60

// CheckName refuses a new user or group name (what says which) that Apache would not read
// back as typed. The user and group commands and `registry-auth hash` apply it alike.
func CheckName(what, name string) error {
	var why string
	switch {
	case name == "":
		why = "it is empty"
	case strings.HasPrefix(name, "#"):
		why = "a line starting with # is a comment"
	case strings.Contains(name, ":"):
		why = "a colon ends the name"
	case strings.IndexFunc(name, func(r rune) bool { return unicode.IsSpace(r) || unicode.IsControl(r) }) >= 0:
		why = "it has white space or a control character"
	case len(name) > MaxNameLen:
		why = fmt.Sprintf("it is %d bytes, and Apache reads lines of at most %d", len(name), MaxLine)
	default:
		return nil
	}
	return fmt.Errorf("%s name %q refused: %s; choose another name", what, name, why)
}
