package htpasswd

import (
	"bytes"
	"errors"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"testing/iotest"

	"github.com/registry-auth/registry-auth/internal/htpasswd/htpasswdtest"
)

// Fuzz targets for the two file parsers. `go test`
// runs their seeds; scripts/test.sh fuzzes each for a number of inputs, one target per
// command (a count, not a duration: see the script for why):
//
//	go test -run='^$' -fuzz='^FuzzParseHTPasswd$' -fuzztime=50000x ./internal/htpasswd
//
// A failing input is written to testdata/fuzz/<target>/; check it in, it becomes a seed.

// addTestdataSeeds adds every testdata file matching pattern to f's corpus.
func addTestdataSeeds(f *testing.F, pattern string) {
	f.Helper()
	files, err := filepath.Glob(filepath.Join("testdata", pattern))
	if err != nil || len(files) == 0 {
		f.Fatalf("no seeds match testdata/%s: %v", pattern, err)
	}
	for _, file := range files {
		f.Add(htpasswdtest.Read(f, filepath.Base(file)))
	}
}

// physicalLines is how many lines data has, the last one possibly unterminated.
func physicalLines(data []byte) int {
	return bytes.Count(data, []byte("\n")) + 1
}

func FuzzParseHTPasswd(f *testing.F) {
	addTestdataSeeds(f, "*.htpasswd")
	for _, seed := range []string{
		"",
		"bob::$2y$04$elwPmXwtJIq7yHwiJOhiQOKtZjQRha6J/laFLMCAUqkqPaeHyzKca",
		"bob:$2y$04$elwPmXwtJIq7yHwi\\\r\nJOhiQOKtZjQRha6J/laFLMCAUqkqPaeHyzKca\\",
		"# c \\\nbob:{SHA}F/WZ9PxtuIpP2yyadrWdU4eK0og=\n",
		"a:$5$rounds=999999999$salt$iyCHWfVqKzjR5VXjvIGDKQrHb47/KFlzCj7eBe95Wm3\n",
		"x:" + strings.Repeat("y", 8190) + "\nz:",
	} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		got, err := Parse(bytes.NewReader(data))
		if err != nil {
			if !errors.Is(err, ErrLineTooLong) {
				t.Fatalf("got error %v, want only ErrLineTooLong from an in-memory file", err)
			}
			return
		}
		lines := physicalLines(data)
		for user, e := range got.Users {
			switch {
			case user == "" || strings.ContainsAny(user, ":\n"):
				t.Errorf("user %q: empty or holds a colon or newline", user)
			case strings.Trim(user[:1], confSpace) == "":
				t.Errorf("user %q starts with white space", user)
			case strings.Contains(e.Hash, ":"):
				t.Errorf("user %q: hash %q holds a colon", user, e.Hash)
			case e.Kind != Classify(e.Hash) || e.Kind == DES || e.Kind == Unsupported:
				t.Errorf("user %q: kind %v for hash %q (Classify %v)", user, e.Kind, e.Hash, Classify(e.Hash))
			case validate(e.Kind, e.Hash) != nil:
				t.Errorf("user %q: loaded hash %q fails validation: %v", user, e.Hash, validate(e.Kind, e.Hash))
			case e.Line < 1 || e.Line > lines:
				t.Errorf("user %q: line %d of a %d-line file", user, e.Line, lines)
			}
		}
		for _, p := range got.Problems {
			if p.Line < 1 || p.Line > lines || p.Message == "" {
				t.Errorf("problem %+v: line outside 1..%d or no message", p, lines)
			}
		}
		// The same bytes give the same result, however the reader hands them out.
		again, err := Parse(iotest.OneByteReader(bytes.NewReader(data)))
		if err != nil || !reflect.DeepEqual(got, again) {
			t.Errorf("a second parse, one byte at a time, differs: %+v, %v; first %+v", again, err, got)
		}
	})
}

func FuzzParseGroups(f *testing.F) {
	addTestdataSeeds(f, "*.groups")
	for _, seed := range []string{
		"",
		`g: "a\\" 'b\'c' d\\e "unterminated`,
		"g :: a\vb\fc \\\n d\n: x\nnocolon\n",
		"# c \\\ng: a\n",
	} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		got, err := ParseGroups(bytes.NewReader(data))
		if err != nil {
			if !errors.Is(err, ErrLineTooLong) {
				t.Fatalf("got error %v, want only ErrLineTooLong from an in-memory file", err)
			}
			return
		}
		lines := physicalLines(data)
		for group, members := range got.Members {
			if group == "" || strings.Contains(group, ":") || strings.Trim(group, confSpace) != group {
				t.Errorf("group %q: empty, holds a colon or has white space around it", group)
			}
			for m := range members {
				if m == "" || strings.Contains(m, "\n") {
					t.Errorf("group %q: member %q is empty or holds a newline", group, m)
				}
			}
		}
		for _, p := range got.Problems {
			if p.Line < 1 || p.Line > lines || p.Message == "" {
				t.Errorf("problem %+v: line outside 1..%d or no message", p, lines)
			}
		}
		again, err := ParseGroups(iotest.OneByteReader(bytes.NewReader(data)))
		if err != nil || !reflect.DeepEqual(got, again) {
			t.Errorf("a second parse, one byte at a time, differs: %+v, %v; first %+v", again, err, got)
		}
	})
}
