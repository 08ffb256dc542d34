package htpasswd

import (
	"bytes"
	"fmt"
	"slices"
	"strings"
)

// The user and group commands change files that people also edit by hand, so they change
// only the lines they must: a comment, a blank line, a CRLF line end, the order of the users,
// a line the parser warns about, all stay byte for byte. Each edit is checked afterwards by
// the real parser (Parse, ParseGroups): the file must read as before except for the
// one change asked for, or the edit is refused and the file is left as it was.

// htpasswdUser is the user and hash of an htpasswd line as Parse reads them; ok is
// false for a line that names no user (no colon, empty name, blank, comment).
func htpasswdUser(text string) (user, hash string, ok bool) {
	user, rest, found := strings.Cut(text, ":")
	if !found || user == "" {
		return "", "", false
	}
	hash, _, _ = strings.Cut(strings.TrimLeft(rest, ":"), ":")
	return user, hash, true
}

// Doc is an htpasswd file as lines, with what the parser made of it.
type Doc struct {
	path   string // for messages
	lines  []textLine
	parsed File
}

// ReadDoc reads data; the error is the parser's, for a file that cannot be used at all.
func ReadDoc(path string, data []byte) (Doc, error) {
	parsed, err := Parse(bytes.NewReader(data))
	if err != nil {
		return Doc{}, fmt.Errorf("%s: %w; fix that line first", path, err)
	}
	for i := range parsed.Problems {
		parsed.Problems[i].File = path
	}
	return Doc{path: path, lines: splitTextLines(data), parsed: parsed}, nil
}

// Entries are the indexes of the lines of user (for LineNum, HashAt, ProblemsOn), in file order: the first is the
// one Apache uses, even when it is refused; later ones are ignored duplicates.
func (d Doc) Entries(user string) []int {
	var idx []int
	for i, l := range d.lines {
		if u, _, ok := htpasswdUser(l.text); ok && u == user {
			idx = append(idx, i)
		}
	}
	return idx
}

// Users are the names of the file in the order of their first line.
func (d Doc) Users() []string {
	var names []string
	seen := map[string]bool{}
	for _, l := range d.lines {
		if u, _, ok := htpasswdUser(l.text); ok && !seen[u] {
			seen[u] = true
			names = append(names, u)
		}
	}
	return names
}

// SetHash gives user the hash: on the line Apache uses for it, or on a new last line. Only
// the hash's bytes change on that line. It returns the 1-based line number edited.
func (d *Doc) SetHash(user, hash string) int {
	idx := d.Entries(user)
	if len(idx) == 0 {
		d.lines = appendLine(d.lines, user+":"+hash)
		return d.lines[len(d.lines)-1].num
	}
	l := d.lines[idx[0]]
	body := l.body()
	content := strings.TrimRight(body, confSpace)
	start := strings.IndexByte(content, ':')
	for start < len(content) && content[start] == ':' {
		start++ // ap_getword skips every colon after the user
	}
	end := len(content)
	if i := strings.IndexByte(content[start:], ':'); i >= 0 {
		end = start + i
	}
	d.lines[idx[0]] = l.withBody(body[:start] + hash + body[end:])
	return l.num
}

// Remove deletes every line of user (the one Apache uses and ignored duplicates, so that no
// stale duplicate takes over) and returns their line numbers.
func (d *Doc) Remove(user string) []int {
	idx := d.Entries(user)
	var nums []int
	for _, i := range idx {
		nums = append(nums, d.lines[i].num)
	}
	for _, i := range slices.Backward(idx) {
		d.lines = slices.Delete(d.lines, i, i+1)
	}
	return nums
}

// Bytes is the file's content.
func (d Doc) Bytes() []byte { return joinTextLines(d.lines) }

// CheckEdit proves with the parser that after differs from before only in user: it
// has hash (or, for "", is gone), every other user keeps their entry, and no line is newly
// skipped.
func (d Doc) CheckEdit(after []byte, user, hash string) error {
	before := d.parsed
	got, err := Parse(bytes.NewReader(after))
	if err != nil {
		return fmt.Errorf("the edited file would not load: %w", err)
	}
	if e, ok := got.Users[user]; hash == "" && ok {
		return fmt.Errorf("user %q would still be read from line %d", user, e.Line)
	} else if hash != "" && (!ok || e.Hash != hash) {
		return fmt.Errorf("user %q would not be read with the new hash", user)
	}
	for u, e := range before.Users {
		if g, ok := got.Users[u]; u != user && (!ok || g.Hash != e.Hash) {
			return fmt.Errorf("user %q would change too", u)
		}
	}
	for u := range got.Users {
		if _, ok := before.Users[u]; u != user && !ok {
			return fmt.Errorf("user %q would appear", u)
		}
	}
	if n, was := countErrors(got.Problems), countErrors(before.Problems); n > was {
		return fmt.Errorf("%d lines would be skipped instead of %d", n, was)
	}
	return nil
}

// The documents' API for the commands, which never touch their lines.

// LineNum is the line number, as messages give it, of the document's line i.
func (d Doc) LineNum(i int) int { return d.lines[i].num }

// HashAt is the hash on the document's line i ("" on a line that names no user).
func (d Doc) HashAt(i int) string {
	_, hash, _ := htpasswdUser(d.lines[i].text)
	return hash
}

// User is the entry of the user name as the service loads it, and whether it loads.
func (d Doc) User(name string) (Entry, bool) {
	e, ok := d.parsed.Users[name]
	return e, ok
}

// ErrorsBesides are the file's errors except those on its lines fixed, which an edit replaces.
func (d Doc) ErrorsBesides(fixed ...int) []Problem {
	return errorsOffLines(d.parsed.Problems, d.lines, fixed...)
}

// ProblemsOn are the problems on the document's lines idx.
func (d Doc) ProblemsOn(idx ...int) []Problem {
	return problemsOnLines(d.parsed.Problems, d.lines, idx...)
}

// StrayProblems are the problems on lines that name no user (a listing of users misses them).
func (d Doc) StrayProblems() []Problem {
	var ps []Problem
	for _, p := range d.parsed.Problems {
		if i := lineIndex(d.lines, p.Line); i < 0 || !isUserLine(d.lines[i]) {
			ps = append(ps, p)
		}
	}
	return ps
}

func isUserLine(l textLine) bool { _, _, ok := htpasswdUser(l.text); return ok }
