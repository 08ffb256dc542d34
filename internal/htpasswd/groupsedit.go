package htpasswd

import (
	"bytes"
	"fmt"
	"maps"
	"slices"
	"strings"

	"github.com/registry-auth/registry-auth/internal/policy"
)

// groupsLine is a groups file line split as ParseGroups reads it: the group's name and each
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

// splitGroupsLine reads body (a textLine's body) like ParseGroups; ok is false for a line
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
		if name != "" { // ParseGroups skips an empty quoted word
			g.members = append(g.members, memberWord{name: name, prevEnd: pos, start: start, end: end})
		}
		pos, rest = end, after
	}
}

// GroupsDoc is a groups file as lines, with what the parser made of it.
type GroupsDoc struct {
	path   string
	lines  []textLine
	parsed GroupFile
}

func ReadGroupsDoc(path string, data []byte) (GroupsDoc, error) {
	parsed, err := ParseGroups(bytes.NewReader(data))
	if err != nil {
		return GroupsDoc{}, fmt.Errorf("%s: %w; fix that line first", path, err)
	}
	for i := range parsed.Problems {
		parsed.Problems[i].File = path
	}
	return GroupsDoc{path: path, lines: splitTextLines(data), parsed: parsed}, nil
}

// groupLines are the indexes of the lines of group (compared without regard to case, as
// Apache and the service do), or of every group line when group is "".
func (d GroupsDoc) groupLines(group string) []int {
	var idx []int
	key := policy.GroupKey(group)
	for i, l := range d.lines {
		if g, ok := splitGroupsLine(l.body()); ok && (group == "" || policy.GroupKey(g.group) == key) {
			idx = append(idx, i)
		}
	}
	return idx
}

// GroupMembers is one group of the file with its members in the order they first appear.
type GroupMembers struct {
	Name    string // as first written
	Members []string
	Lines   []int // 1-based line numbers
}

// Groups are the file's groups in the order they first appear, spellings that differ only
// in case merged.
func (d GroupsDoc) Groups() []GroupMembers {
	var out []GroupMembers
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
			out = append(out, GroupMembers{Name: g.group})
		}
		out[i].Lines = append(out[i].Lines, l.num)
		for _, m := range g.members {
			if !slices.Contains(out[i].Members, m.name) {
				out[i].Members = append(out[i].Members, m.name)
			}
		}
	}
	return out
}

// QuoteMember writes name as a groups file word that ap_getword_conf reads back as name.
func QuoteMember(name string) string {
	if !strings.ContainsAny(name, confSpace+`"'\`) {
		return name
	}
	r := strings.NewReplacer(`\`, `\\`, `"`, `\"`)
	return `"` + r.Replace(name) + `"`
}

// AddMembers adds users to group at the end of its first line, or on a new last line when
// the group has none. It returns the 1-based line number edited.
func (d *GroupsDoc) AddMembers(group string, users []string) int {
	words := make([]string, len(users))
	for i, u := range users {
		words[i] = QuoteMember(u)
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

// RemoveMember takes user out of group (of every group when group is "") on every line that
// names it, and returns the groups (as written) and line numbers it was taken from.
func (d *GroupsDoc) RemoveMember(group, user string) (groups []string, nums []int) {
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

func (d GroupsDoc) Bytes() []byte { return joinTextLines(d.lines) }

// CheckEdit proves with the parser that after has exactly the members want (by group,
// names folded to lower case as the service folds them) and no newly skipped line.
func (d GroupsDoc) CheckEdit(after []byte, want map[string]map[string]bool) error {
	before := d.parsed
	got, err := ParseGroups(bytes.NewReader(after))
	if err != nil {
		return fmt.Errorf("the edited file would not load: %w", err)
	}
	folded := got.ByKey()
	for _, g := range slices.Sorted(maps.Keys(want)) {
		if len(want[g]) == 0 && len(folded[g]) == 0 {
			continue
		}
		if !maps.Equal(folded[g], want[g]) {
			return fmt.Errorf("group %q would have the members %v, want %v", g, slices.Sorted(maps.Keys(folded[g])), slices.Sorted(maps.Keys(want[g])))
		}
	}
	for g, members := range folded {
		if _, ok := want[g]; !ok && len(members) > 0 {
			return fmt.Errorf("group %q would appear", g)
		}
	}
	if n, was := countErrors(got.Problems), countErrors(before.Problems); n > was {
		return fmt.Errorf("%d lines would be skipped instead of %d", n, was)
	}
	return nil
}

// Membership is a copy of the service's view of d: members by group key (GroupFile.ByKey).
func (d GroupsDoc) Membership() map[string]map[string]bool {
	return d.parsed.ByKey() // new maps: the caller may change them
}

// ErrorsBesides are the file's errors except those on its lines fixed.
func (d GroupsDoc) ErrorsBesides(fixed ...int) []Problem {
	return errorsOffLines(d.parsed.Problems, d.lines, fixed...)
}

// Problems are the file's problems as the service's parser reports them.
func (d GroupsDoc) Problems() Problems { return d.parsed.Problems }

// HasGroup reports whether the file has a line of group (compared as groupLines compares).
func (d GroupsDoc) HasGroup(group string) bool { return len(d.groupLines(group)) > 0 }
