package htpasswd

import (
	"fmt"
	"strings"
	"unicode"
)

// MaxNameLen is the longest user name whose bcrypt line fits Apache's htpasswd line limit.
const MaxNameLen = MaxLine - len(":") - 60

// TokenPrefix starts the login names of robot tokens (package tokens): no user of the
// htpasswd file may have such a name, so that a person is never taken for a token. The loader
// skips such a line; CheckUserName refuses such a new user.
const TokenPrefix = "token+"

// CheckUserName refuses a new user name that CheckName refuses or that a robot token's login
// name would have. The user commands and `registry-auth hash` apply it; a group's members
// may be tokens, and are checked with CheckName.
func CheckUserName(name string) error {
	if strings.HasPrefix(name, TokenPrefix) {
		return fmt.Errorf("user name %q refused: names starting with %q are robot tokens' (registry-auth token create); choose another name", name, TokenPrefix)
	}
	return CheckName("user", name)
}

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
