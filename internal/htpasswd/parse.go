package htpasswd

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/registry-auth/registry-auth/internal/policy"
)

// Longest lines Apache 2.4 reads, not counting the final LF (a CR counts). mod_authn_file
// reads the htpasswd file with ap_cfg_getline into MAX_STRING_LEN (8192) bytes: one is the
// NUL, one the LF, so 8190 remain, and at a longer line Apache stops reading and silently
// ignores the rest of the file (checked against Apache 2.4.71); we refuse such a file instead.
// mod_authz_groupfile grows its buffer up to 16 MiB.
const (
	MaxLine       = 8190
	maxGroupsLine = 16 << 20
)

// ErrLineTooLong is returned (wrapped with the line number) for a line Apache would not read.
var ErrLineTooLong = errors.New("Apache would ignore it and every line after it")

// confSpace is apr_isspace: the white space Apache trims and splits words at (C locale).
const confSpace = " \t\n\v\f\r"

// Entry is one user of an htpasswd file.
type Entry struct {
	Hash string // as written in the file
	Kind Kind   // its format
	Line int    // the line it was read from
}

// File is a parsed htpasswd file. The zero value has no users.
type File struct {
	Users    map[string]Entry // the usable users by name, as written (case matters)
	Problems Problems         // every line skipped (Error) or loaded with a warning
}

// readLines calls fn with each logical line of r as Apache's ap_cfg_getline makes them,
// numbered by its first physical line: a line ending in a backslash (before its LF or CRLF)
// continues on the next one, without the backslash and line end, even a comment; white space
// is trimmed at both ends; blank and comment lines are skipped. Each continued line is
// added to problems as a warning, as it may hide a user. A logical line longer than max bytes (not counting
// its final LF) is an error, as Apache stops reading there.
func readLines(r io.Reader, max int, problems *Problems, fn func(n int, line string)) error {
	br := bufio.NewReader(r)
	var line []byte // the logical line read so far
	first := 1
	for n := 1; ; n++ {
		var err error
		for {
			var chunk []byte
			chunk, err = br.ReadSlice('\n')
			line = append(line, chunk...)
			if !errors.Is(err, bufio.ErrBufferFull) || len(line) > max+1 {
				break
			}
		}
		if err != nil && !errors.Is(err, io.EOF) && !errors.Is(err, bufio.ErrBufferFull) {
			return err
		}
		body, hadLF := bytes.CutSuffix(line, []byte("\n"))
		if len(body) > max {
			return fmt.Errorf("line %d: longer than %d bytes counting its newline: %w", first, max+1, ErrLineTooLong)
		}
		if hadLF {
			if b := bytes.TrimSuffix(body, []byte("\r")); len(b) > 0 && b[len(b)-1] == '\\' {
				line = b[:len(b)-1]
				continue
			}
		}
		if n != first {
			problems.Add(first, Warning,
				"lines %d to %d are read as one line, as Apache does: a line that ends in a backslash continues on the next", first, n)
		}
		if text := strings.Trim(string(body), confSpace); text != "" && text[0] != '#' {
			fn(first, text)
		}
		if !hadLF { // io.EOF after the last, possibly unterminated, line
			return nil
		}
		line, first = line[:0], n+1
	}
}

// Parse reads an htpasswd file with mod_authn_file's rules: one `user:hash` per line,
// the hash ending at the next colon, the first entry of a user winning. Lines that cannot be
// used are skipped and reported in problems; the error is for a file that must not be used
// at all (unreadable, or a line Apache would cut).
func Parse(r io.Reader) (File, error) {
	f := File{Users: make(map[string]Entry)}
	problem := f.Problems.Add
	firstLine := make(map[string]int) // of each user, loaded or refused
	err := readLines(r, MaxLine, &f.Problems, func(n int, line string) {
		user, rest, found := strings.Cut(line, ":")
		if !found {
			problem(n, Error, "no colon: want user:hash")
			return
		}
		if user == "" {
			problem(n, Error, "empty user name")
			return
		}
		// ap_getword skips every colon after the user, so `user::hash` is user and hash.
		hash, _, _ := strings.Cut(strings.TrimLeft(rest, ":"), ":")
		// Apache stops at the first line of a user, usable or not: a refused entry shadows
		// later ones too, so they are not a way around the refusal.
		if prev, dup := firstLine[user]; dup {
			problem(n, Warning, "duplicate user %q ignored: the entry on line %d wins, as in Apache", user, prev)
			return
		}
		firstLine[user] = n
		kind := Classify(hash)
		if err := validate(kind, hash); err != nil {
			problem(n, Error, "user %q skipped: %v", user, err)
			return
		}
		if kind.Weak() {
			problem(n, Warning, "user %q has a weak %s hash; re-create it with `registry-auth hash` (bcrypt)", user, kind)
		}
		if strings.HasPrefix(hash, "$2x$") {
			// $2x$ asks for the sign-extension bug of old crypt_blowfish, which Apache emulates
			// and Go's bcrypt does not: a password with non-ASCII bytes would not verify.
			problem(n, Warning, "user %q has a legacy $2x$ bcrypt hash: a password with non-ASCII characters will not verify; re-create it with `registry-auth hash`", user)
		}
		f.Users[user] = Entry{Hash: hash, Kind: kind, Line: n}
	})
	return f, err
}

// GroupFile is a parsed groups file: members by group. The zero value has no groups.
type GroupFile struct {
	Members  map[string]map[string]bool // the members of each group, by its name as written
	Problems Problems                   // every line skipped
	// MemberLine is the line where each member of each group is first named, for messages.
	MemberLine map[[2]string]int
}

// ByKey is the members by group key (policy.GroupKey): groups whose names are one group to
// the service (spelt with another case, or a DN with other spaces) merged. The maps are new.
func (f GroupFile) ByKey() map[string]map[string]bool {
	byKey := make(map[string]map[string]bool, len(f.Members))
	for group, users := range f.Members {
		key := policy.GroupKey(group)
		if byKey[key] == nil {
			byKey[key] = make(map[string]bool, len(users))
		}
		for u := range users {
			byKey[key][u] = true
		}
	}
	return byKey
}

// ParseGroups reads a groups file with mod_authz_groupfile's rules (Apache 2.4):
// `group: member ...`, white space before the colon not part of the name, members separated
// by white space and optionally quoted, a group's lines adding up.
func ParseGroups(r io.Reader) (GroupFile, error) {
	f := GroupFile{Members: make(map[string]map[string]bool), MemberLine: make(map[[2]string]int)}
	problem := f.Problems.Add
	err := readLines(r, maxGroupsLine, &f.Problems, func(n int, line string) {
		group, rest, found := strings.Cut(line, ":")
		if !found {
			problem(n, Error, "no colon: want group: user1 user2 ...")
			return
		}
		group = strings.TrimRight(group, confSpace) // as groups_for_user does since 2.4
		if group == "" {
			problem(n, Error, "empty group name")
			return
		}
		members := f.Members[group]
		if members == nil {
			members = make(map[string]bool)
			f.Members[group] = members
		}
		// ap_getword skips every colon after the name.
		for rest = strings.TrimLeft(rest, ":"); rest != ""; {
			var word string
			word, rest = nextConfWord(rest)
			if word != "" && !members[word] {
				members[word] = true
				f.MemberLine[[2]string{group, word}] = n
			}
		}
	})
	return f, err
}

// nextConfWord splits the first word off s exactly like Apache's ap_getword_conf: leading
// white space is skipped; a word quoted with ' or " runs to the matching quote, inside which
// a backslash escapes that quote or a backslash; an unquoted word runs to the next white space
// and a double backslash in it is one backslash.
func nextConfWord(s string) (word, rest string) {
	s = strings.TrimLeft(s, confSpace)
	if s == "" {
		return "", ""
	}
	if q := s[0]; q == '"' || q == '\'' {
		i := 1
		for i < len(s) && s[i] != q {
			if s[i] == '\\' && i+1 < len(s) && (s[i+1] == q || s[i+1] == '\\') {
				i += 2
			} else {
				i++
			}
		}
		word = unescapeConfWord(s[1:i], q)
		if i < len(s) {
			i++ // the closing quote
		}
		return word, strings.TrimLeft(s[i:], confSpace)
	}
	end := strings.IndexAny(s, confSpace)
	if end < 0 {
		end = len(s)
	}
	return unescapeConfWord(s[:end], 0), strings.TrimLeft(s[end:], confSpace)
}

// unescapeConfWord is Apache's substring_conf: a backslash before a backslash, or before the
// quote of a quoted word, is dropped.
func unescapeConfWord(s string, quote byte) string {
	if !strings.Contains(s, "\\") {
		return s
	}
	b := make([]byte, 0, len(s))
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+1 < len(s) && (s[i+1] == '\\' || (quote != 0 && s[i+1] == quote)) {
			i++
		}
		b = append(b, s[i])
	}
	return string(b)
}
