package htpasswd

import (
	"bytes"
	"slices"
	"strings"
	"testing"

	"github.com/registry-auth/registry-auth/internal/htpasswd/htpasswdtest"
)

// members returns the sorted members of group in f, nil if the group is absent.
func members(f GroupFile, group string) []string {
	m, ok := f.Members[group]
	if !ok {
		return nil
	}
	list := []string{}
	for u := range m {
		list = append(list, u)
	}
	slices.Sort(list)
	return list
}

// TestApacheGroupsFile: testdata/apache.groups as mod_authz_groupfile reads it. The
// memberships of alice, bob, carol, dave and erin were checked against Apache 2.4.71.
func TestApacheGroupsFile(t *testing.T) {
	t.Parallel()
	f, err := ParseGroups(bytes.NewReader(htpasswdtest.Read(t, "apache.groups")))
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		group string
		want  []string
	}{
		// lines 3, 6 and 8 add up; 'a b' and "c\"d" are quoted; `pusher :` is pusher
		{"pusher", []string{"a b", "alice", "bob", `c"d`, "erin"}},
		{"readers", []string{"carol", "dave"}}, // tab after the colon, CRLF
		{"admins", []string{"alice", "bob", "erin"}},
		{"ghosts", []string{"alice", "frank"}},
		{"nobody", []string{}},
		{"pusher ", nil}, // white space before the colon is not part of the name
	}
	for _, tt := range tests {
		if got := members(f, tt.group); !slices.Equal(got, tt.want) || (got == nil) != (tt.want == nil) {
			t.Errorf("group %q: got %q, want %q", tt.group, got, tt.want)
		}
	}
	if len(f.Members) != 5 {
		t.Errorf("got %d groups, want 5", len(f.Members))
	}
	if len(f.Problems) != 0 {
		t.Errorf("got problems %v, want none", f.Problems)
	}
}

// TestParseGroupsLines covers mod_authz_groupfile's rules one at a time; each case was
// checked against Apache 2.4.71.
func TestParseGroupsLines(t *testing.T) {
	t.Parallel()
	long := strings.Repeat("member ", 3000) + "alice" // 21005 bytes: Apache 2.4 grows its buffer
	tests := []struct {
		name  string
		file  string
		group string
		want  []string
		lines []int // lines with a problem
	}{
		{"members add up", "g: a\ng: b\n", "g", []string{"a", "b"}, nil},
		{"several spaces and tabs", "g:\t a \t\tb  \n", "g", []string{"a", "b"}, nil},
		{"no space after the colon", "g:a b\n", "g", []string{"a", "b"}, nil},
		{"space before the colon", "g \t: a\n", "g", []string{"a"}, nil},
		{"double colon", "g:: a\n", "g", []string{"a"}, nil},
		{"vertical tab and form feed separate", "g: a\vb\fc\n", "g", []string{"a", "b", "c"}, nil},
		{"no-break space does not separate", "g: a\u00a0b\n", "g", []string{"a\u00a0b"}, nil},
		{"double quotes", `g: "a b" c` + "\n", "g", []string{"a b", "c"}, nil},
		{"single quotes", `g: 'a b' c` + "\n", "g", []string{"a b", "c"}, nil},
		{"escaped quote", `g: "c\"d" 'o\'k'` + "\n", "g", []string{`c"d`, "o'k"}, nil},
		{"escaped backslash in quotes", `g: "x\\" erin` + "\n", "g", []string{`x\`, "erin"}, nil},
		{"double backslash unquoted", `g: a\\b` + "\n", "g", []string{`a\b`}, nil},
		{"single backslash unquoted", `g: a\b` + "\n", "g", []string{`a\b`}, nil},
		{"word after a closing quote", `g: "c"d erin` + "\n", "g", []string{"c", "d", "erin"}, nil},
		{"unterminated quote", `g: "a b` + "\n", "g", []string{"a b"}, nil},
		{"empty quotes", `g: "" a` + "\n", "g", []string{"a"}, nil},
		{"names are case-sensitive", "g: Alice\n", "g", []string{"Alice"}, nil},
		{"continued line", "g: alice \\\n  bob\n", "g", []string{"alice", "bob"}, []int{1}},
		{"comment continued onto a group line", "# x \\\ng: alice\n", "g", nil, []int{1}},
		{"line longer than htpasswd's limit", "g: " + long + "\n", "g", []string{"alice", "member"}, nil},
		{"no colon", "g a b\n", "g a b", nil, []int{1}},
		{"empty name", ": a\n", "", nil, []int{1}},
		{"comment", "# g: a\n", "g", nil, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			f, err := ParseGroups(strings.NewReader(tt.file))
			if err != nil {
				t.Fatal(err)
			}
			got := members(f, tt.group)
			slices.Sort(tt.want)
			if !slices.Equal(got, tt.want) {
				t.Errorf("group %q: got %q, want %q", tt.group, got, tt.want)
			}
			var lines []int
			for _, p := range f.Problems {
				lines = append(lines, p.Line)
			}
			if !slices.Equal(lines, tt.lines) {
				t.Errorf("got problems on lines %v, want %v: %v", lines, tt.lines, f.Problems)
			}
		})
	}
}

// TestNextConfWord: the word splitting of Apache's ap_getword_conf.
func TestNextConfWord(t *testing.T) {
	t.Parallel()
	tests := []struct {
		in   string
		want []string
	}{
		{"a b", []string{"a", "b"}},
		{"  a", []string{"a"}},
		{`"a b"c`, []string{"a b", "c"}},
		{`'a "b"'`, []string{`a "b"`}},
		{`"a \"b\""`, []string{`a "b"`}},
		{`"a\'b"`, []string{`a\'b`}}, // only the word's own quote is escaped
		{`'a\"b'`, []string{`a\"b`}},
		{`"a\\\"b"`, []string{`a\"b`}},
		{`a\"b`, []string{`a\"b`}}, // unquoted: only a double backslash is an escape
		{`a\\\\b`, []string{`a\\b`}},
		{`a\`, []string{`a\`}},
		{`"a\`, []string{`a\`}},
		{`""`, []string{""}},
		{`"`, []string{""}},
		{"\t\r\n", nil},
	}
	for _, tt := range tests {
		var got []string
		for rest := tt.in; strings.Trim(rest, confSpace) != ""; {
			var word string
			word, rest = nextConfWord(rest)
			got = append(got, word)
		}
		if !slices.Equal(got, tt.want) {
			t.Errorf("words of %q: got %q, want %q", tt.in, got, tt.want)
		}
	}
}
