package main

// Fuzz targets for the two file parsers and Basic credentials (registry requests have theirs in
// internal/registry). `go test`
// runs their seeds; scripts/test.sh fuzzes each for a number of inputs, one target per
// command (a count, not a duration: see the script for why):
//
//	go test -run='^$' -fuzz='^FuzzParseHTPasswd$' -fuzztime=50000x .
//
// A failing input is written to testdata/fuzz/<target>/; check it in, it becomes a seed.

import (
	"bytes"
	"encoding/base64"
	"errors"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"testing/iotest"
	"unicode/utf8"
)

// addTestdataSeeds adds every testdata file matching pattern to f's corpus.
func addTestdataSeeds(f *testing.F, pattern string) {
	f.Helper()
	files, err := filepath.Glob(filepath.Join("testdata", pattern))
	if err != nil || len(files) == 0 {
		f.Fatalf("no seeds match testdata/%s: %v", pattern, err)
	}
	for _, file := range files {
		f.Add(readTestdata(f, filepath.Base(file)))
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
		got, err := parseHTPasswd(bytes.NewReader(data))
		if err != nil {
			if !errors.Is(err, errLineTooLong) {
				t.Fatalf("got error %v, want only errLineTooLong from an in-memory file", err)
			}
			return
		}
		lines := physicalLines(data)
		for user, e := range got.users {
			switch {
			case user == "" || strings.ContainsAny(user, ":\n"):
				t.Errorf("user %q: empty or holds a colon or newline", user)
			case strings.Trim(user[:1], confSpace) == "":
				t.Errorf("user %q starts with white space", user)
			case strings.Contains(e.hash, ":"):
				t.Errorf("user %q: hash %q holds a colon", user, e.hash)
			case e.kind != classifyHash(e.hash) || e.kind == hashDES || e.kind == hashUnsupported:
				t.Errorf("user %q: kind %v for hash %q (classifyHash %v)", user, e.kind, e.hash, classifyHash(e.hash))
			case validateHash(e.kind, e.hash) != nil:
				t.Errorf("user %q: loaded hash %q fails validation: %v", user, e.hash, validateHash(e.kind, e.hash))
			case e.line < 1 || e.line > lines:
				t.Errorf("user %q: line %d of a %d-line file", user, e.line, lines)
			}
		}
		for _, p := range got.problems {
			if p.line < 1 || p.line > lines || p.message == "" {
				t.Errorf("problem %+v: line outside 1..%d or no message", p, lines)
			}
		}
		// The same bytes give the same result, however the reader hands them out.
		again, err := parseHTPasswd(iotest.OneByteReader(bytes.NewReader(data)))
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
		got, err := parseGroups(bytes.NewReader(data))
		if err != nil {
			if !errors.Is(err, errLineTooLong) {
				t.Fatalf("got error %v, want only errLineTooLong from an in-memory file", err)
			}
			return
		}
		lines := physicalLines(data)
		for group, members := range got.members {
			if group == "" || strings.Contains(group, ":") || strings.Trim(group, confSpace) != group {
				t.Errorf("group %q: empty, holds a colon or has white space around it", group)
			}
			for m := range members {
				if m == "" || strings.Contains(m, "\n") {
					t.Errorf("group %q: member %q is empty or holds a newline", group, m)
				}
			}
		}
		for _, p := range got.problems {
			if p.line < 1 || p.line > lines || p.message == "" {
				t.Errorf("problem %+v: line outside 1..%d or no message", p, lines)
			}
		}
		again, err := parseGroups(iotest.OneByteReader(bytes.NewReader(data)))
		if err != nil || !reflect.DeepEqual(got, again) {
			t.Errorf("a second parse, one byte at a time, differs: %+v, %v; first %+v", again, err, got)
		}
	})
}

func FuzzBasicCredentials(f *testing.F) {
	// Seeds: the users and passwords of the vectors, each also as the header a client sends.
	for _, v := range formatVectors {
		f.Add(v.user, v.password, "Basic "+base64.StdEncoding.EncodeToString([]byte(v.user+":"+v.password)))
	}
	for _, header := range []string{"", "Basic", "Basic ", "basic Ym9iOnB3", "BASIC  Ym9iOnB3 ", "Bearer Ym9iOnB3",
		"Basic Ym9iOnB3\x00", "Basic !!!!", "Basic Ym9i", "Basic OnB3", "Basic Ym9iOnB3AA==", "Basic\tYm9iOnB3"} {
		f.Add("bob", "pw", header)
	}
	f.Add("a:b", "c", "")
	f.Add("bo\x7fb", "pw", "")
	f.Add("bob", "p\x00w", "")
	f.Add("b\xffob", "pw", "")
	f.Fuzz(func(t *testing.T, user, password, header string) {
		// Any header: accepted credentials are well formed and are what the header encodes.
		u, p, reason := basicCredentials([]string{header})
		if reason == "" {
			scheme, encoded, _ := strings.Cut(header, " ")
			raw, err := base64.StdEncoding.DecodeString(strings.TrimSpace(encoded))
			switch {
			case !strings.EqualFold(scheme, "Basic") || err != nil || string(raw) != u+":"+string(p):
				t.Errorf("header %q gave user %q, password %q: not what it encodes", header, u, p)
			case u == "" || strings.Contains(u, ":") || !utf8.ValidString(u) || strings.IndexFunc(u, isControl) >= 0:
				t.Errorf("header %q gave a malformed user %q", header, u)
			case bytes.IndexByte(p, 0) >= 0:
				t.Errorf("header %q gave a password with NUL", header)
			}
		} else if u != "" || p != nil {
			t.Errorf("header %q: refused (%s) but gave user %q, password %q", header, reason, u, p)
		}
		if _, _, reason := basicCredentials([]string{header, header}); reason != "several_authorization_headers" {
			t.Errorf("two headers: got reason %q, want several_authorization_headers", reason)
		}

		// What a client sends for user and password comes back as sent, unless the user holds a
		// colon (the password then starts after the first one, as RFC 7617 says), or the
		// user or password cannot be checked safely.
		sent := "Basic " + base64.StdEncoding.EncodeToString([]byte(user+":"+password))
		u, p, reason = basicCredentials([]string{sent})
		name, rest, _ := strings.Cut(user, ":")
		wantPassword := password
		if strings.Contains(user, ":") {
			wantPassword = rest + ":" + password
		}
		valid := name != "" && utf8.ValidString(name) && strings.IndexFunc(name, isControl) < 0 &&
			!strings.Contains(wantPassword, "\x00")
		if valid && (reason != "" || u != name || string(p) != wantPassword) {
			t.Errorf("user %q, password %q: got %q, %q, reason %q", user, password, u, p, reason)
		}
		if !valid && reason == "" {
			t.Errorf("user %q, password %q: accepted as %q, %q, want a refusal", user, password, u, p)
		}
	})
}
