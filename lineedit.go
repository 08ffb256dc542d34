package main

import (
	"bytes"
	"errors"
	"fmt"
	"github.com/registry-auth/registry-auth/internal/policy"
	"math"
	"slices"
	"strings"
)

// The user and group commands change files that people also edit by hand, so they change
// only the lines they must: a comment, a blank line, a CRLF line end, the order of the users,
// a line the parser warns about, all stay byte for byte. Each edit is checked afterwards by
// the real parser (parseHTPasswd, parseGroups): the file must read as before except for the
// one change asked for, or the edit is refused and the file is left as it was.

// textLine is one logical line of an htpasswd or groups file as Apache reads it: one
// physical line, or several joined by a backslash before the line end (see readLines).
type textLine struct {
	num  int    // its first physical line, 1-based, as the parsers number problems
	raw  string // its physical lines as they are in the file, line ends included
	text string // what Apache reads: continuations joined, white space trimmed; "" for a blank or comment line
	eol  string // the line end of its last physical line: "\n", "\r\n", or "" at the end of the file
}

// physical is how many physical lines l spans.
func (l textLine) physical() int {
	n := strings.Count(l.raw, "\n")
	if l.eol == "" {
		n++ // an unterminated last line
	}
	return n
}

// body is the line without its line end, in a form whose trimmed content is l.text: a
// physical line as it is (its own white space kept), or, where a backslash continues it, l.text.
// An edit changes body and adds eol back, so a continued line becomes one physical line.
func (l textLine) body() string {
	single := strings.TrimSuffix(l.raw, l.eol)
	if l.text != "" && strings.Trim(single, confSpace) != l.text {
		return l.text
	}
	return single
}

// splitTextLines cuts data into logical lines with readLines' continuation rule; joining their
// raw gives data back. Each line's text is what readLines hands the parser for it.
func splitTextLines(data []byte) []textLine {
	var lines []textLine
	num := 1
	for len(data) > 0 {
		l := textLine{num: num}
		end := 0
		var logical []byte // the line as readLines joins it, so far
		for {
			i := bytes.IndexByte(data[end:], '\n')
			if i < 0 {
				end = len(data)
				break
			}
			logical = append(logical, data[end:end+i]...)
			end += i + 1
			num++
			b := bytes.TrimSuffix(logical, []byte("\r"))
			if len(b) == 0 || b[len(b)-1] != '\\' {
				break
			}
			logical = b[:len(b)-1]
		}
		l.raw = string(data[:end])
		switch {
		case strings.HasSuffix(l.raw, "\r\n"):
			l.eol = "\r\n"
		case strings.HasSuffix(l.raw, "\n"):
			l.eol = "\n"
		}
		// readLines itself, on this line alone, says what Apache reads of it.
		var ignored lineProblems
		readLines(strings.NewReader(l.raw), math.MaxInt32, &ignored, func(_ int, text string) { l.text = text })
		lines = append(lines, l)
		if l.eol == "" {
			num++ // an unterminated last line still counts
		}
		data = data[end:]
	}
	return lines
}

// joinTextLines is the file made of lines.
func joinTextLines(lines []textLine) []byte {
	var b bytes.Buffer
	for _, l := range lines {
		b.WriteString(l.raw)
	}
	return b.Bytes()
}

// lineEnd is the line end a new line gets: the one of the file's last terminated line, so a
// CRLF file stays CRLF; LF for a file without any.
func lineEnd(lines []textLine) string {
	for i := len(lines) - 1; i >= 0; i-- {
		if lines[i].eol != "" {
			return lines[i].eol
		}
	}
	return "\n"
}

// appendLine adds a line with content body at the end of lines, first ending an unterminated
// last line.
func appendLine(lines []textLine, body string) []textLine {
	eol := lineEnd(lines)
	if n := len(lines); n > 0 && lines[n-1].eol == "" {
		lines[n-1].raw += eol
		lines[n-1].eol = eol
	}
	next := 1
	if n := len(lines); n > 0 {
		next = lines[n-1].num + lines[n-1].physical()
	}
	return append(lines, textLine{num: next, raw: body + eol, text: strings.Trim(body, confSpace), eol: eol})
}

// withBody is l with its content replaced by body and its line end kept.
func (l textLine) withBody(body string) textLine {
	l.raw = body + l.eol
	l.text = strings.Trim(body, confSpace)
	return l
}

// htpasswdUser is the user and hash of an htpasswd line as parseHTPasswd reads them; ok is
// false for a line that names no user (no colon, empty name, blank, comment).
func htpasswdUser(text string) (user, hash string, ok bool) {
	user, rest, found := strings.Cut(text, ":")
	if !found || user == "" {
		return "", "", false
	}
	hash, _, _ = strings.Cut(strings.TrimLeft(rest, ":"), ":")
	return user, hash, true
}

// htpasswdDoc is an htpasswd file as lines, with what the parser made of it.
type htpasswdDoc struct {
	path   string // for messages
	lines  []textLine
	parsed htpasswdFile
}

// readHTPasswdDoc reads data; the error is the parser's, for a file that cannot be used at all.
func readHTPasswdDoc(path string, data []byte) (htpasswdDoc, error) {
	parsed, err := parseHTPasswd(bytes.NewReader(data))
	if err != nil {
		return htpasswdDoc{}, fmt.Errorf("%s: %w; fix that line first", path, err)
	}
	for i := range parsed.problems {
		parsed.problems[i].file = path
	}
	return htpasswdDoc{path: path, lines: splitTextLines(data), parsed: parsed}, nil
}

// entries are the indexes in d.lines of the lines of user, in file order: the first is the
// one Apache uses, even when it is refused; later ones are ignored duplicates.
func (d htpasswdDoc) entries(user string) []int {
	var idx []int
	for i, l := range d.lines {
		if u, _, ok := htpasswdUser(l.text); ok && u == user {
			idx = append(idx, i)
		}
	}
	return idx
}

// users are the names of the file in the order of their first line.
func (d htpasswdDoc) users() []string {
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

// problemsOnLines are the parser's problems on the lines at idx.
func problemsOnLines(problems lineProblems, lines []textLine, idx ...int) []lineProblem {
	var ps []lineProblem
	for _, p := range problems {
		for _, i := range idx {
			if p.line == lines[i].num {
				ps = append(ps, p)
			}
		}
	}
	return ps
}

// errorsOffLines are the error-level problems that are not on the lines at fixed: what an edit
// leaves broken.
func errorsOffLines(problems lineProblems, lines []textLine, fixed ...int) []lineProblem {
	var ps []lineProblem
	for _, p := range problems {
		if p.severity == severityError && len(problemsOnLines(lineProblems{p}, lines, fixed...)) == 0 {
			ps = append(ps, p)
		}
	}
	return ps
}

// errEditRefused says that an edit was not made; the message says why and what to do.
var errEditRefused = errors.New("nothing was changed")

// brokenLines refuses an edit of a file with lines the service skips, unless force: the edit
// would load fine and leave them unnoticed.
func brokenLines(path string, broken []lineProblem, force bool) error {
	if len(broken) == 0 || force {
		return nil
	}
	var b strings.Builder
	for _, p := range broken {
		fmt.Fprintf(&b, "%s\n", p)
	}
	fmt.Fprintf(&b, "%s has lines the service skips (above): fix them first (`registry-auth check` lists every problem), or pass --force to edit it anyway", path)
	return fmt.Errorf("%s: %w", b.String(), errEditRefused)
}

// setHash gives user the hash: on the line Apache uses for it, or on a new last line. Only
// the hash's bytes change on that line. It returns the 1-based line number edited.
func (d *htpasswdDoc) setHash(user, hash string) int {
	idx := d.entries(user)
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

// remove deletes every line of user (the one Apache uses and ignored duplicates, so that no
// stale duplicate takes over) and returns their line numbers.
func (d *htpasswdDoc) remove(user string) []int {
	idx := d.entries(user)
	var nums []int
	for _, i := range idx {
		nums = append(nums, d.lines[i].num)
	}
	for _, i := range slices.Backward(idx) {
		d.lines = slices.Delete(d.lines, i, i+1)
	}
	return nums
}

// bytes is the file's content.
func (d htpasswdDoc) bytes() []byte { return joinTextLines(d.lines) }

// checkEdit proves with the parser that after differs from before only in user: it
// has hash (or, for "", is gone), every other user keeps their entry, and no line is newly
// skipped.
func (d htpasswdDoc) checkEdit(after []byte, user, hash string) error {
	before := d.parsed
	got, err := parseHTPasswd(bytes.NewReader(after))
	if err != nil {
		return fmt.Errorf("the edited file would not load: %w", err)
	}
	if e, ok := got.users[user]; hash == "" && ok {
		return fmt.Errorf("user %q would still be read from line %d", user, e.line)
	} else if hash != "" && (!ok || e.hash != hash) {
		return fmt.Errorf("user %q would not be read with the new hash", user)
	}
	for u, e := range before.users {
		if g, ok := got.users[u]; u != user && (!ok || g.hash != e.hash) {
			return fmt.Errorf("user %q would change too", u)
		}
	}
	for u := range got.users {
		if _, ok := before.users[u]; u != user && !ok {
			return fmt.Errorf("user %q would appear", u)
		}
	}
	if n, was := countErrors(got.problems), countErrors(before.problems); n > was {
		return fmt.Errorf("%d lines would be skipped instead of %d", n, was)
	}
	return nil
}

func countErrors(problems lineProblems) int {
	n := 0
	for _, p := range problems {
		if p.severity == severityError {
			n++
		}
	}
	return n
}

// groupsLine is a groups file line split as parseGroups reads it: the group's name and each
// member word with its position in the line's body, so one can be cut out exactly.
type groupsLine struct {
	group   string
	members []memberWord
	end     int // where the content ends in body: new members go here
}

// memberWord is one member of a groups line: body[start:end] is the word as written (quoted
// or not); prevEnd is where the word before it (or the colons) ends, so that cutting
// body[prevEnd:end] removes it with the white space in front.
type memberWord struct {
	name                string
	prevEnd, start, end int
}

// splitGroupsLine reads body (a textLine's body) like parseGroups; ok is false for a line
// that is not a group (blank, comment, no colon, empty name).
func splitGroupsLine(body string) (g groupsLine, ok bool) {
	content := strings.TrimRight(body, confSpace)
	trimmed := strings.TrimLeft(content, confSpace)
	if trimmed == "" || trimmed[0] == '#' {
		return g, false
	}
	name, _, found := strings.Cut(trimmed, ":")
	if g.group = strings.TrimRight(name, confSpace); !found || g.group == "" {
		return g, false
	}
	pos := strings.IndexByte(content, ':')
	for pos < len(content) && content[pos] == ':' {
		pos++
	}
	g.end = len(content)
	for rest := content[pos:]; ; {
		word := strings.TrimLeft(rest, confSpace)
		if word == "" {
			return g, true
		}
		start := len(content) - len(word)
		name, after := nextConfWord(word)
		end := len(content) - len(after)
		end = start + len(strings.TrimRight(content[start:end], confSpace))
		if name != "" { // parseGroups skips an empty quoted word
			g.members = append(g.members, memberWord{name: name, prevEnd: pos, start: start, end: end})
		}
		pos, rest = end, after
	}
}

// groupsDoc is a groups file as lines, with what the parser made of it.
type groupsDoc struct {
	path   string
	lines  []textLine
	parsed groupsFile
}

func readGroupsDoc(path string, data []byte) (groupsDoc, error) {
	parsed, err := parseGroups(bytes.NewReader(data))
	if err != nil {
		return groupsDoc{}, fmt.Errorf("%s: %w; fix that line first", path, err)
	}
	for i := range parsed.problems {
		parsed.problems[i].file = path
	}
	return groupsDoc{path: path, lines: splitTextLines(data), parsed: parsed}, nil
}

// groupLines are the indexes of the lines of group (compared without regard to case, as
// Apache and the service do), or of every group line when group is "".
func (d groupsDoc) groupLines(group string) []int {
	var idx []int
	key := policy.GroupKey(group)
	for i, l := range d.lines {
		if g, ok := splitGroupsLine(l.body()); ok && (group == "" || policy.GroupKey(g.group) == key) {
			idx = append(idx, i)
		}
	}
	return idx
}

// groupMembers is one group of the file with its members in the order they first appear.
type groupMembers struct {
	name    string // as first written
	members []string
	lines   []int // 1-based line numbers
}

// groups are the file's groups in the order they first appear, spellings that differ only
// in case merged.
func (d groupsDoc) groups() []groupMembers {
	var out []groupMembers
	at := map[string]int{}
	for _, l := range d.lines {
		g, ok := splitGroupsLine(l.body())
		if !ok {
			continue
		}
		key := policy.GroupKey(g.group)
		i, seen := at[key]
		if !seen {
			i = len(out)
			at[key] = i
			out = append(out, groupMembers{name: g.group})
		}
		out[i].lines = append(out[i].lines, l.num)
		for _, m := range g.members {
			if !slices.Contains(out[i].members, m.name) {
				out[i].members = append(out[i].members, m.name)
			}
		}
	}
	return out
}

// quoteMember writes name as a groups file word that ap_getword_conf reads back as name.
func quoteMember(name string) string {
	if !strings.ContainsAny(name, confSpace+`"'\`) {
		return name
	}
	r := strings.NewReplacer(`\`, `\\`, `"`, `\"`)
	return `"` + r.Replace(name) + `"`
}

// addMembers adds users to group at the end of its first line, or on a new last line when
// the group has none. It returns the 1-based line number edited.
func (d *groupsDoc) addMembers(group string, users []string) int {
	words := make([]string, len(users))
	for i, u := range users {
		words[i] = quoteMember(u)
	}
	idx := d.groupLines(group)
	if len(idx) == 0 {
		d.lines = appendLine(d.lines, group+": "+strings.Join(words, " "))
		return d.lines[len(d.lines)-1].num
	}
	l := d.lines[idx[0]]
	body := l.body()
	g, _ := splitGroupsLine(body)
	d.lines[idx[0]] = l.withBody(body[:g.end] + " " + strings.Join(words, " ") + body[g.end:])
	return l.num
}

// removeMember takes user out of group (of every group when group is "") on every line that
// names it, and returns the groups (as written) and line numbers it was taken from.
func (d *groupsDoc) removeMember(group, user string) (groups []string, nums []int) {
	for _, i := range d.groupLines(group) {
		l := d.lines[i]
		body := l.body()
		g, _ := splitGroupsLine(body)
		cut := body
		for _, m := range slices.Backward(g.members) {
			if m.name == user {
				cut = cut[:m.prevEnd] + cut[m.end:]
			}
		}
		if cut != body {
			d.lines[i] = l.withBody(cut)
			groups = append(groups, g.group)
			nums = append(nums, l.num)
		}
	}
	return groups, nums
}

func (d groupsDoc) bytes() []byte { return joinTextLines(d.lines) }

// checkEdit proves with the parser that after has exactly the members want (by group,
// names folded to lower case as the service folds them) and no newly skipped line.
func (d groupsDoc) checkEdit(after []byte, want map[string]map[string]bool) error {
	before := d.parsed
	got, err := parseGroups(bytes.NewReader(after))
	if err != nil {
		return fmt.Errorf("the edited file would not load: %w", err)
	}
	folded := foldGroupNames(got.members)
	for _, g := range sortedKeys(want) {
		if len(want[g]) == 0 && len(folded[g]) == 0 {
			continue
		}
		if !mapsEqual(folded[g], want[g]) {
			return fmt.Errorf("group %q would have the members %v, want %v", g, sortedKeys(folded[g]), sortedKeys(want[g]))
		}
	}
	for g, members := range folded {
		if _, ok := want[g]; !ok && len(members) > 0 {
			return fmt.Errorf("group %q would appear", g)
		}
	}
	if n, was := countErrors(got.problems), countErrors(before.problems); n > was {
		return fmt.Errorf("%d lines would be skipped instead of %d", n, was)
	}
	return nil
}

func mapsEqual(a, b map[string]bool) bool {
	if len(a) != len(b) {
		return false
	}
	for k := range a {
		if !b[k] {
			return false
		}
	}
	return true
}

// membership is a copy of the service's view of d: members by group key (groupKey).
func (d groupsDoc) membership() map[string]map[string]bool {
	return foldGroupNames(d.parsed.members) // new maps: the caller may change them
}

// The documents' API for the commands, which never touch their lines.

// lineNum is the line number, as messages give it, of the document's line i.
func (d htpasswdDoc) lineNum(i int) int { return d.lines[i].num }

// hashAt is the hash on the document's line i ("" on a line that names no user).
func (d htpasswdDoc) hashAt(i int) string {
	_, hash, _ := htpasswdUser(d.lines[i].text)
	return hash
}

// user is the user name as the service loads it, and whether it does.
func (d htpasswdDoc) user(name string) (htpasswdEntry, bool) {
	e, ok := d.parsed.users[name]
	return e, ok
}

// errorsBesides are the file's errors except those on its lines fixed, which an edit replaces.
func (d htpasswdDoc) errorsBesides(fixed ...int) []lineProblem {
	return errorsOffLines(d.parsed.problems, d.lines, fixed...)
}

// problemsOn are the problems on the document's lines idx.
func (d htpasswdDoc) problemsOn(idx ...int) []lineProblem {
	return problemsOnLines(d.parsed.problems, d.lines, idx...)
}

// strayProblems are the problems on lines that name no user (a listing of users misses them).
func (d htpasswdDoc) strayProblems() []lineProblem {
	var ps []lineProblem
	for _, p := range d.parsed.problems {
		if i := lineIndex(d.lines, p.line); i < 0 || !isUserLine(d.lines[i]) {
			ps = append(ps, p)
		}
	}
	return ps
}

func isUserLine(l textLine) bool { _, _, ok := htpasswdUser(l.text); return ok }

// lineIndex is the index in lines of the line numbered num, or -1.
func lineIndex(lines []textLine, num int) int {
	for i, l := range lines {
		if l.num == num {
			return i
		}
	}
	return -1
}

// errorsBesides are the file's errors except those on its lines fixed.
func (d groupsDoc) errorsBesides(fixed ...int) []lineProblem {
	return errorsOffLines(d.parsed.problems, d.lines, fixed...)
}

// problems are the file's problems as the service's parser reports them.
func (d groupsDoc) problems() lineProblems { return d.parsed.problems }
