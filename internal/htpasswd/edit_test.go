package htpasswd

import (
	"bytes"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/registry-auth/registry-auth/internal/htpasswd/htpasswdtest"
)

// lineEditSeeds are files whose lines are easy to get wrong: continuations, CRLF, comments,
// white space, a last line without its end.
var lineEditSeeds = []string{
	"",
	"\n",
	"a:h",
	"a:h\r\n\r\nb:h\r\n",
	"# c \\\nb:h\n",
	"a:h\\\nb:h\nc:h\\\r\n\r\nd:h",
	"a\\\\\n\nb:h\n",
	"  a:h  \n\t# x\n  \n",
	"x:y\\",
	"x:y\\\n",
	"p: a 'b c' \"d\\\"e\" f\\\\g\n",
}

// TestSplitTextLinesReadsAsReadLines: joining the lines gives the file back, and the lines
// with content are the ones readLines hands the parsers, with the same numbers and text.
func TestSplitTextLinesReadsAsReadLines(t *testing.T) {
	t.Parallel()
	inputs := slices.Clone(lineEditSeeds)
	files, _ := filepath.Glob(filepath.Join("testdata", "*.htpasswd"))
	groups, _ := filepath.Glob(filepath.Join("testdata", "*.groups"))
	for _, f := range append(files, groups...) {
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		inputs = append(inputs, string(data))
	}
	for _, in := range inputs {
		checkTextLines(t, []byte(in))
	}
}

func FuzzSplitTextLines(f *testing.F) {
	for _, s := range lineEditSeeds {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) { checkTextLines(t, data) })
}

type numberedText struct {
	num  int
	text string
}

func checkTextLines(t *testing.T, data []byte) {
	t.Helper()
	lines := splitTextLines(data)
	if got := joinTextLines(lines); !bytes.Equal(got, data) {
		t.Fatalf("joined lines of %q: got %q", data, got)
	}
	var want, got []numberedText
	var ignored Problems
	readLines(bytes.NewReader(data), 1<<30, &ignored, func(n int, text string) { want = append(want, numberedText{n, text}) })
	for _, l := range lines {
		if l.text != "" {
			got = append(got, numberedText{l.num, l.text})
		}
		if l.text != "" && strings.Trim(l.body(), confSpace) != l.text {
			t.Errorf("%q: body %q does not trim to the text %q", data, l.body(), l.text)
		}
	}
	if !slices.Equal(got, want) {
		t.Errorf("lines of %q: got %v, want %v (readLines)", data, got, want)
	}
}

// TestHTPasswdEditsAreMinimal: only the user's own line changes, and on it only the hash.
func TestHTPasswdEditsAreMinimal(t *testing.T) {
	t.Parallel()
	const H = "$2y$04$NEWNEWNEWNEWNEWNEWNEWuHUkDgYwbA1JNn8V1/t/yvaBk9xlu5ezW"
	tests := []struct {
		name, before string
		edit         func(d *Doc) int // returns the edited line
		after        string
		line         int
	}{
		{"add keeps comments and blank lines", "# users\n\nalice:OLD\n",
			func(d *Doc) int { return d.SetHash("bob", H) }, "# users\n\nalice:OLD\nbob:" + H + "\n", 4},
		{"add to a CRLF file ends with CRLF", "alice:OLD\r\n# c\r\n",
			func(d *Doc) int { return d.SetHash("bob", H) }, "alice:OLD\r\n# c\r\nbob:" + H + "\r\n", 3},
		{"add ends an unterminated last line first", "alice:OLD\r\nbob:OLD",
			func(d *Doc) int { return d.SetHash("carol", H) }, "alice:OLD\r\nbob:OLD\r\ncarol:" + H + "\r\n", 3},
		{"add to an empty file", "",
			func(d *Doc) int { return d.SetHash("bob", H) }, "bob:" + H + "\n", 1},
		{"add after a continued line", "a:x\\\ny\nb:OLD\n",
			func(d *Doc) int { return d.SetHash("c", H) }, "a:x\\\ny\nb:OLD\nc:" + H + "\n", 4},
		{"passwd changes only the hash", "  alice:OLD:extra  \r\nbob:OLD\n",
			func(d *Doc) int { return d.SetHash("alice", H) }, "  alice:" + H + ":extra  \r\nbob:OLD\n", 1},
		{"passwd after the colons Apache skips", "alice:::OLD\n",
			func(d *Doc) int { return d.SetHash("alice", H) }, "alice:::" + H + "\n", 1},
		{"passwd of an empty hash", "alice:\nbob:OLD",
			func(d *Doc) int { return d.SetHash("alice", H) }, "alice:" + H + "\nbob:OLD", 1},
		{"passwd changes the first line, which Apache reads", "x:OLD\nalice:FIRST\nalice:SECOND\n",
			func(d *Doc) int { return d.SetHash("alice", H) }, "x:OLD\nalice:" + H + "\nalice:SECOND\n", 2},
		{"passwd joins a continued line", "# c\nalice:OL\\\r\nD\r\nbob:OLD\r\n",
			func(d *Doc) int { return d.SetHash("alice", H) }, "# c\nalice:" + H + "\r\nbob:OLD\r\n", 2},
		{"user names are case-sensitive", "Alice:OLD\n",
			func(d *Doc) int { return d.SetHash("alice", H) }, "Alice:OLD\nalice:" + H + "\n", 2},
		{"remove takes every line of the user", "alice:A\n# keep\nbob:B\r\nalice:C\nbob:D",
			func(d *Doc) int { return d.Remove("alice")[0] }, "# keep\nbob:B\r\nbob:D", 1},
		{"remove the unterminated last line", "alice:A\nbob:B",
			func(d *Doc) int { return d.Remove("bob")[0] }, "alice:A\n", 2},
		{"remove a continued line", "alice:A\\\nB\nbob:B\n",
			func(d *Doc) int { return d.Remove("alice")[0] }, "bob:B\n", 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			d, err := ReadDoc("htpasswd", []byte(tt.before))
			if err != nil {
				t.Fatal(err)
			}
			line := tt.edit(&d)
			if got := string(d.Bytes()); got != tt.after {
				t.Errorf("got  %q\nwant %q", got, tt.after)
			}
			if line != tt.line {
				t.Errorf("got line %d, want %d", line, tt.line)
			}
		})
	}
}

// TestGroupsEditsAreMinimal: members are added at the end of the group's first line and cut
// out with the white space before them; nothing else moves.
func TestGroupsEditsAreMinimal(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name, before string
		edit         func(d *GroupsDoc)
		after        string
	}{
		{"add to an existing line keeps its spacing", "# g\npusher:\talice   \r\nreaders: bob\r\n",
			func(d *GroupsDoc) { d.AddMembers("pusher", []string{"carol", "dave"}) }, "# g\npusher:\talice carol dave   \r\nreaders: bob\r\n"},
		{"add to the first line of a group, any case", "readers: bob\nPusher: alice\npusher: erin\n",
			func(d *GroupsDoc) { d.AddMembers("pusher", []string{"carol"}) }, "readers: bob\nPusher: alice carol\npusher: erin\n"},
		{"add a new group on a new last line", "readers: bob",
			func(d *GroupsDoc) { d.AddMembers("pusher", []string{"alice"}) }, "readers: bob\npusher: alice\n"},
		{"add to an empty group line", "pusher:\n",
			func(d *GroupsDoc) { d.AddMembers("pusher", []string{"alice"}) }, "pusher: alice\n"},
		{"add quotes what would be split", "pusher: a\n",
			func(d *GroupsDoc) { d.AddMembers("pusher", []string{`"x`, `y\z`}) }, `pusher: a "\"x" "y\\z"` + "\n"},
		{"remove the first member", "pusher: alice bob\n",
			func(d *GroupsDoc) { d.RemoveMember("pusher", "alice") }, "pusher: bob\n"},
		{"remove the last member keeps the line end", "pusher: alice bob \r\n",
			func(d *GroupsDoc) { d.RemoveMember("pusher", "bob") }, "pusher: alice \r\n"},
		{"remove the only member", "pusher:alice\nx: alice\n",
			func(d *GroupsDoc) { d.RemoveMember("pusher", "alice") }, "pusher:\nx: alice\n"},
		{"remove a quoted member", `pusher: 'a b' "c\"d" e` + "\n",
			func(d *GroupsDoc) { d.RemoveMember("pusher", `c"d`) }, `pusher: 'a b' e` + "\n"},
		{"remove from every line of the group", "pusher: alice\nPUSHER : bob alice bob\n",
			func(d *GroupsDoc) { d.RemoveMember("pusher", "bob") }, "pusher: alice\nPUSHER : alice\n"},
		{"remove from every group", "a: x y\n# x\nb:x\nc: y\n",
			func(d *GroupsDoc) { d.RemoveMember("", "x") }, "a: y\n# x\nb:\nc: y\n"},
		{"remove from a continued line joins it", "pusher: alice \\\n bob\nx: y\n",
			func(d *GroupsDoc) { d.RemoveMember("pusher", "alice") }, "pusher:  bob\nx: y\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			d, err := ReadGroupsDoc("groups", []byte(tt.before))
			if err != nil {
				t.Fatal(err)
			}
			tt.edit(&d)
			if got := string(d.Bytes()); got != tt.after {
				t.Errorf("got  %q\nwant %q", got, tt.after)
			}
		})
	}
}

// TestEditChecksCatchWhatTheParserReadsDifferently: an edit that the parser would read as
// more (or other) than the one change asked for is caught.
func TestEditChecksCatchWhatTheParserReadsDifferently(t *testing.T) {
	t.Parallel()
	h := htpasswdtest.Hash(t, "pw")
	// A backslash before the last line end continues onto the line an add appends.
	d, err := ReadDoc("htpasswd", []byte("alice:"+h+"\n# note \\\n"))
	if err != nil {
		t.Fatal(err)
	}
	d.SetHash("bob", h)
	if err := d.CheckEdit(d.Bytes(), "bob", h); err == nil {
		t.Error("bob appended after a continued comment: got no error, want one (the comment swallows him)")
	}
	d, _ = ReadDoc("htpasswd", []byte("alice:"+h+"\nbob:"+h+"\n"))
	if err := d.CheckEdit([]byte("alice:"+h+"\n"), "alice", h); err == nil {
		t.Error("bob lost: got no error, want one")
	}
	if err := d.CheckEdit([]byte("alice:"+h+"\nbob:"+h+"\ncarol:"+h+"\n"), "alice", h); err == nil {
		t.Error("carol appeared: got no error, want one")
	}
	if err := d.CheckEdit([]byte("alice:"+h+"\nbob:"+h+"\nbroken\n"), "alice", h); err == nil {
		t.Error("a new skipped line: got no error, want one")
	}

	g, _ := ReadGroupsDoc("groups", []byte("pusher: alice\n"))
	want := g.Membership()
	want["pusher"]["bob"] = true
	if err := g.CheckEdit([]byte("pusher: alice bob\nreaders: x\n"), want); err == nil {
		t.Error("a group appeared: got no error, want one")
	}
	if err := g.CheckEdit([]byte("pusher: alice\n"), want); err == nil {
		t.Error("bob not added: got no error, want one")
	}
	if err := g.CheckEdit([]byte("Pusher: alice bob\n"), want); err != nil {
		t.Errorf("same members under another case: got %v, want nil", err)
	}
}
