package main

import (
	"bufio"
	"bytes"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// The vectors of testdata/formats.htpasswd: user, password, the format the service must see.
// testdata/make-vectors.sh made them with Apache's htpasswd, openssl passwd and libxcrypt.
var formatVectors = []struct {
	user, password string
	kind           hashKind
}{
	{"bcrypt4", "correct horse battery staple", hashBcrypt}, // htpasswd -B -C 4
	{"bcrypt5", "pässwörd-ünïcode", hashBcrypt},             // htpasswd -B (its default cost 5), UTF-8 password
	{"bcrypt10", "Tr0ub4dor&3", hashBcrypt},                 // htpasswd -B -C 10, the cost people should use
	{"bcrypt-colon", "a:b:c", hashBcrypt},                   // a password may hold colons
	{"bcrypt-long80", "0123456789012345678901234567890123456789012345678901234567890123456789-past-72!", hashBcrypt}, // 80 bytes
	{"apr1", "apr1-secret", hashAPR1},                     // htpasswd -m, its default
	{"sha1", "sha1-secret", hashSHA1},                     // htpasswd -s
	{"sha256", "sha256-secret", hashSHA256Crypt},          // htpasswd -2
	{"sha256-rounds", "sha256 rounds", hashSHA256Crypt},   // htpasswd -2 -r 10000
	{"sha512", "sha512-secret", hashSHA512Crypt},          // htpasswd -5
	{"sha512-rounds", "sha512 rounds", hashSHA512Crypt},   // htpasswd -5 -r 1000
	{"openssl-md5", "md5crypt-secret", hashMD5Crypt},      // openssl passwd -1
	{"openssl-apr1", "openssl-apr1", hashAPR1},            // openssl passwd -apr1
	{"openssl-sha256", "openssl-sha256", hashSHA256Crypt}, // openssl passwd -5
	{"openssl-sha512", "openssl-sha512", hashSHA512Crypt}, // openssl passwd -6
	{"crypt-2a", "libxcrypt 2a", hashBcrypt},              // crypt(3) with a $2a$ salt
	{"crypt-2b", "libxcrypt 2b", hashBcrypt},              // crypt(3) with a $2b$ salt
	{"crypt-2x", "libxcrypt 2x", hashBcrypt},              // crypt(3) with a $2x$ salt, ASCII password
	{"crypt-md5", "libxcrypt md5", hashMD5Crypt},          // crypt(3) with a $1$ salt
}

// readTestdata returns a fixture's bytes.
func readTestdata(t testing.TB, name string) []byte {
	t.Helper()
	data, err := os.ReadFile(filepath.Join("testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	return data
}

// parseTestdata parses an htpasswd fixture; a file-level error fails the test.
func parseTestdata(t testing.TB, name string) htpasswdFile {
	t.Helper()
	f, err := parseHTPasswd(bytes.NewReader(readTestdata(t, name)))
	if err != nil {
		t.Fatalf("parsing %s: %v", name, err)
	}
	return f
}

// lineOf returns the number of the first line of data that starts with prefix.
func lineOf(t testing.TB, data []byte, prefix string) int {
	t.Helper()
	sc := bufio.NewScanner(bytes.NewReader(data))
	for n := 1; sc.Scan(); n++ {
		if strings.HasPrefix(sc.Text(), prefix) {
			return n
		}
	}
	t.Fatalf("no line starts with %q", prefix)
	return 0
}

// problemsAt returns the problems reported for line n.
func problemsAt(problems []lineProblem, n int) []lineProblem {
	var at []lineProblem
	for _, p := range problems {
		if p.line == n {
			at = append(at, p)
		}
	}
	return at
}

// wrongPasswords are near misses of password, none of which may verify. The first is
// "x" + password. Changes past byte 72 are left out: bcrypt does not see them.
func wrongPasswords(password string) []string {
	wrong := []string{"x" + password, "", password[1:], " " + password}
	if flipped := strings.ToUpper(password[:1]); flipped != password[:1] {
		wrong = append(wrong, flipped+password[1:])
	} else if flipped := strings.ToLower(password[:1]); flipped != password[:1] {
		wrong = append(wrong, flipped+password[1:])
	}
	if len(password) < 72 {
		wrong = append(wrong, password+"x", password[:len(password)-1])
	}
	return wrong
}

// TestFormatVectorsTableMatchesFile: every user of formats.htpasswd is in formatVectors and
// the other way round, so no vector goes untested.
func TestFormatVectorsTableMatchesFile(t *testing.T) {
	t.Parallel()
	f := parseTestdata(t, "formats.htpasswd")
	var inFile, inTable []string
	for user := range f.users {
		inFile = append(inFile, user)
	}
	for _, v := range formatVectors {
		inTable = append(inTable, v.user)
	}
	slices.Sort(inFile)
	slices.Sort(inTable)
	if !slices.Equal(inFile, inTable) {
		t.Errorf("got users %q in formats.htpasswd, want %q", inFile, inTable)
	}
}

// TestVerifyFormatVectors: each vector verifies with its password and not with near misses,
// and is classified as its format.
func TestVerifyFormatVectors(t *testing.T) {
	t.Parallel()
	f := parseTestdata(t, "formats.htpasswd")
	for _, v := range formatVectors {
		t.Run(v.user, func(t *testing.T) {
			t.Parallel()
			e, ok := f.users[v.user]
			if !ok {
				t.Fatalf("user %q not loaded", v.user)
			}
			if e.kind != v.kind || classifyHash(e.hash) != v.kind {
				t.Errorf("got kind %v (classifyHash %v), want %v", e.kind, classifyHash(e.hash), v.kind)
			}
			if ok, err := verifyPassword(e.hash, []byte(v.password)); !ok || err != nil {
				t.Errorf("right password: got %v, %v, want true, nil", ok, err)
			}
			wrong := wrongPasswords(v.password)
			if v.user == "bcrypt10" {
				wrong = wrong[:2] // about a second each under -race
			}
			for _, wrong := range wrong {
				if ok, err := verifyPassword(e.hash, []byte(wrong)); ok || err != nil {
					t.Errorf("wrong password %q: got %v, %v, want false, nil", wrong, ok, err)
				}
			}
		})
	}
}

// TestBcryptVectorReadsOnly72Bytes: like Apache (and C bcrypt), a bcrypt hash checks only the first
// 72 bytes of a password, so an 80-byte password's tail does not matter. This is why
// `registry-auth hash` refuses passwords over 72 bytes.
func TestBcryptVectorReadsOnly72Bytes(t *testing.T) {
	t.Parallel()
	f := parseTestdata(t, "formats.htpasswd")
	hash := f.users["bcrypt-long80"].hash
	password := "0123456789012345678901234567890123456789012345678901234567890123456789-past-72!"
	tests := []struct {
		name     string
		password string
		want     bool
	}{
		{"first 72 bytes", password[:72], true},
		{"other tail", password[:72] + "something else", true},
		{"71 bytes", password[:71], false},
	}
	for _, tt := range tests {
		if got, err := verifyPassword(hash, []byte(tt.password)); got != tt.want || err != nil {
			t.Errorf("%s: got %v, %v, want %v, nil", tt.name, got, err, tt.want)
		}
	}
}

// TestFormatVectorsAgreeWithApache runs Apache's own `htpasswd -vb` on every vector: the
// fixture's passwords are what Apache itself accepts.
func TestFormatVectorsAgreeWithApache(t *testing.T) {
	t.Parallel()
	htpasswdBin := apacheHTPasswd(t)
	for _, v := range formatVectors {
		t.Run(v.user, func(t *testing.T) {
			t.Parallel()
			file := filepath.Join("testdata", "formats.htpasswd")
			if out, err := exec.Command(htpasswdBin, "-vb", file, v.user, v.password).CombinedOutput(); err != nil {
				t.Errorf("htpasswd -vb with the right password: %v: %s", err, out)
			}
			if out, err := exec.Command(htpasswdBin, "-vb", file, v.user, wrongPasswords(v.password)[0]).CombinedOutput(); err == nil {
				t.Errorf("htpasswd -vb accepted a wrong password: %s", out)
			}
		})
	}
}

// apacheHTPasswd returns the path of Apache's htpasswd, which these tests compare against.
func apacheHTPasswd(t *testing.T) string {
	t.Helper()
	path, err := exec.LookPath("htpasswd")
	if err != nil {
		t.Fatalf("Apache's htpasswd is needed (Debian: apt-get install apache2-utils): %v", err)
	}
	return path
}

// TestClassifyHash: the format is read from the prefix, as apr_password_validate does.
func TestClassifyHash(t *testing.T) {
	t.Parallel()
	tests := []struct {
		hash string
		want hashKind
		weak bool
	}{
		{"$2y$05$X5C2yIiARH96c5RIEe63p.ZFsNuzim0.NL8gSxeB/n/mdNnX0OYJe", hashBcrypt, false},
		{"$2a$04$", hashBcrypt, false}, // the prefix decides; validateHash checks the rest
		{"$2b$04$", hashBcrypt, false},
		{"$2x$04$", hashBcrypt, false},
		{"$2z$04$abc", hashUnsupported, false}, // no such bcrypt variant
		{"$2$04$abc", hashUnsupported, false},  // the original 1999 variant: not accepted
		{"$apr1$UkEtRE0r$92uIQhpwvEVnfrfw5oMZm0", hashAPR1, true},
		{"$1$qtwxeDPE$3mwlyRjBOG9WJgSWtW/Ad/", hashMD5Crypt, true},
		{"{SHA}F/WZ9PxtuIpP2yyadrWdU4eK0og=", hashSHA1, true},
		{"{SSHA}F/WZ9PxtuIpP2yyadrWdU4eK0og=", hashUnsupported, false}, // LDAP's salted SHA: not Apache's
		{"{sha}F/WZ9PxtuIpP2yyadrWdU4eK0og=", hashUnsupported, false},  // the tag is case-sensitive
		{"$5$A2ViiKBAF8sLvoI/$iyCHWfVqKzjR5VXjvIGDKQrHb47/KFlzCj7eBe95Wm3", hashSHA256Crypt, false},
		{"$5$rounds=10000$F9qtjWSlEnPJwOVD$69NVRhOwaKDtkbIMlnkaQvq8mu5g/ntI/GJxK7quQC1", hashSHA256Crypt, false},
		{"$6$DLjhz5YLH6quIRMz$Ri13zf", hashSHA512Crypt, false},
		{"5SDgZoPskSJPc", hashDES, false}, // htpasswd -d
		{"5SDgZoPskSJP", hashUnsupported, false},
		{"5SDgZoPskSJP$", hashUnsupported, false},
		{"plain-secret", hashUnsupported, false}, // htpasswd -p
		{"", hashUnsupported, false},
		{"$y$j9T$abc$def", hashUnsupported, false}, // yescrypt (Debian's /etc/shadow default): Apache on Linux would pass it to crypt(3); we refuse
	}
	for _, tt := range tests {
		got := classifyHash(tt.hash)
		if got != tt.want {
			t.Errorf("classifyHash(%q): got %v, want %v", tt.hash, got, tt.want)
		}
		if got.weak() != tt.weak {
			t.Errorf("%v.weak(): got %v, want %v", got, got.weak(), tt.weak)
		}
	}
}

// TestWeakHashesWarned: every weak vector loads with a warning on its own line, and nothing
// else in formats.htpasswd draws a problem except the legacy $2x$ entry.
func TestWeakHashesWarned(t *testing.T) {
	t.Parallel()
	data := readTestdata(t, "formats.htpasswd")
	f := parseTestdata(t, "formats.htpasswd")
	want := map[int]string{}
	for _, v := range formatVectors {
		switch {
		case v.kind.weak():
			want[lineOf(t, data, v.user+":")] = "weak " + v.kind.String()
		case v.user == "crypt-2x":
			want[lineOf(t, data, v.user+":")] = "legacy $2x$"
		}
	}
	if len(f.problems) != len(want) {
		t.Errorf("got %d problems, want %d: %v", len(f.problems), len(want), f.problems)
	}
	for _, p := range f.problems {
		if p.severity != severityWarning || !strings.Contains(p.message, want[p.line]) || want[p.line] == "" {
			t.Errorf("got %v on line %d, want a warning containing %q", p, p.line, want[p.line])
		}
	}
}

// TestLegacy2xWithNonASCIIPassword: a $2x$ hash asks for the sign-extension bug of old
// crypt_blowfish. Apache (and libxcrypt) emulate it, Go's bcrypt does not, so a password with
// non-ASCII bytes verifies in Apache but not here: denied, and warned about at load.
func TestLegacy2xWithNonASCIIPassword(t *testing.T) {
	t.Parallel()
	f := parseTestdata(t, "bcrypt-2x-8bit.htpasswd")
	e, ok := f.users["legacy2x"]
	if !ok {
		t.Fatal("legacy2x not loaded")
	}
	if len(f.problems) != 1 || !strings.Contains(f.problems[0].message, "legacy $2x$") {
		t.Errorf("got problems %v, want one legacy $2x$ warning", f.problems)
	}
	if ok, err := verifyPassword(e.hash, []byte("pässwort")); ok || err != nil {
		t.Errorf("got %v, %v, want false, nil (Go's bcrypt has no $2x$ bug mode)", ok, err)
	}
	htpasswdBin := apacheHTPasswd(t)
	if out, err := exec.Command(htpasswdBin, "-vb", filepath.Join("testdata", "bcrypt-2x-8bit.htpasswd"), "legacy2x", "pässwort").CombinedOutput(); err != nil {
		t.Errorf("Apache's htpasswd -vb refused the vector's password: %v: %s", err, out)
	}
}

// TestRefusedLinesSkipped: DES and plain-text lines are skipped with an error naming the line
// (and, through buildSnapshot, the file); the other users still load.
func TestRefusedLinesSkipped(t *testing.T) {
	t.Parallel()
	data := readTestdata(t, "refused.htpasswd")
	res, err := buildSnapshot(testFileSet("testdata/refused.htpasswd", data, "", nil), sources{pushGroup: "pusher"})
	if err != nil {
		t.Fatal(err)
	}
	var users []string
	for u := range res.snap.users {
		users = append(users, u)
	}
	slices.Sort(users)
	if want := []string{"good1", "good2"}; !slices.Equal(users, want) {
		t.Errorf("got users %q, want %q", users, want)
	}
	tests := []struct {
		line int
		want string
	}{
		{7, `testdata/refused.htpasswd:7: error: user "des" skipped: DES crypt hash refused`},
		{10, `testdata/refused.htpasswd:10: error: user "plain" skipped: plain-text or unknown hash refused`},
		{13, `testdata/refused.htpasswd:13: warning: user "good2" has a weak APR1-MD5 hash`},
	}
	for _, tt := range tests {
		at := problemsAt(res.problems, tt.line)
		if len(at) != 1 || !strings.HasPrefix(at[0].String(), tt.want) {
			t.Errorf("line %d: got %v, want one problem starting %q", tt.line, at, tt.want)
		}
	}
	for _, p := range res.problems {
		if p.severity == severityError && !strings.Contains(p.message, "registry-auth hash") {
			t.Errorf("got %q, want the error to say how to fix it (registry-auth hash)", p)
		}
	}
}

// TestApacheStyleFile: a file as people keep them (comments, blank and indented lines, CRLF,
// a duplicate user, a line without colon, extra fields, no final newline) loads as Apache's
// mod_authn_file reads it.
func TestApacheStyleFile(t *testing.T) {
	t.Parallel()
	f := parseTestdata(t, "apache.htpasswd")
	logins := []struct {
		user, password string
		want           bool
	}{
		{"alice", "alice-pw", true},      // line 5, CRLF
		{"alice", "alice-second", false}, // line 16: the first alice wins
		{"bob", "bob-pw", true},          // indented, trailing spaces and tab
		{"carol", "carol-pw", true},      // extra :fields after the hash
		{"dave", "dave-pw", true},        // {SHA}, CRLF
		{"erin", "erin-pw", true},        // last line, no newline
	}
	for _, l := range logins {
		e, ok := f.users[l.user]
		if !ok {
			t.Errorf("user %q not loaded", l.user)
			continue
		}
		if got, err := verifyPassword(e.hash, []byte(l.password)); got != l.want || err != nil {
			t.Errorf("%s with %q: got %v, %v, want %v, nil", l.user, l.password, got, err, l.want)
		}
	}
	if len(f.users) != 5 {
		t.Errorf("got %d users, want 5", len(f.users))
	}
	if got := f.users["alice"].line; got != 5 {
		t.Errorf("alice: got line %d, want 5", got)
	}
	problems := []struct {
		line     int
		severity severity
		text     string
	}{
		{9, severityWarning, `user "bob" has a weak APR1-MD5 hash`},
		{16, severityWarning, `duplicate user "alice" ignored: the entry on line 5 wins`},
		{17, severityError, "no colon"},
		{21, severityWarning, `user "dave" has a weak SHA-1 hash`},
	}
	for _, want := range problems {
		at := problemsAt(f.problems, want.line)
		if len(at) != 1 || at[0].severity != want.severity || !strings.Contains(at[0].message, want.text) {
			t.Errorf("line %d: got %v, want one %v containing %q", want.line, at, want.severity, want.text)
		}
	}
	if len(f.problems) != len(problems) {
		t.Errorf("got %d problems, want %d: %v", len(f.problems), len(problems), f.problems)
	}
}

// TestParseHTPasswdLines covers Apache's line rules one at a time; each case was checked
// against Apache 2.4.71's mod_authn_file.
func TestParseHTPasswdLines(t *testing.T) {
	t.Parallel()
	h := testHash(t, "pw")
	tests := []struct {
		name  string
		file  string
		users map[string]string // user: hash
		lines []int             // lines with a problem
	}{
		{"first entry wins", "bob:" + h + "\nbob:{SHA}F/WZ9PxtuIpP2yyadrWdU4eK0og=\n",
			map[string]string{"bob": h}, []int{2}},
		{"a refused first entry shadows later ones", "bob:plain\nbob:" + h + "\n",
			map[string]string{}, []int{1, 2}}, // Apache stops at the first bob and fails
		{"user names are case-sensitive", "bob:" + h + "\nBob:" + h + "\n",
			map[string]string{"bob": h, "Bob": h}, nil},
		{"double colon after the user", "bob::" + h + "\n", // ap_getword skips repeated colons
			map[string]string{"bob": h}, nil},
		{"extra fields", "bob:" + h + ":Bob:x\n", map[string]string{"bob": h}, nil},
		{"C white space trimmed", "\v\f bob:" + h + "\t\r\n", map[string]string{"bob": h}, nil},
		{"no-break space is not white space", "\u00a0bob:" + h + "\n", map[string]string{"\u00a0bob": h}, nil},
		{"space before the colon is part of the name", "bob :" + h + "\n", map[string]string{"bob ": h}, nil},
		{"empty user", ":" + h + "\n", map[string]string{}, []int{1}},
		{"empty hash", "bob:\n", map[string]string{}, []int{1}},
		{"space after the colon", "bob: " + h + "\n", map[string]string{}, []int{1}},
		{"comment after white space", "  # bob:" + h + "\n", map[string]string{}, nil},
		{"continued hash", "bob:" + h[:20] + "\\\n" + h[20:] + "\n",
			map[string]string{"bob": h}, []int{1}},
		{"continued hash with CRLF", "bob:" + h[:20] + "\\\r\n" + h[20:] + "\r\n",
			map[string]string{"bob": h}, []int{1}},
		{"comment continued onto a user", "# old \\\nbob:" + h + "\ncarol:" + h + "\n",
			map[string]string{"carol": h}, []int{1}}, // Apache never sees bob
		{"backslash at end of file", "bob:" + h + "\ncarol:x\\", map[string]string{"bob": h}, []int{2}},
		{"NUL in the hash", "bob:" + h + "\x00\n", map[string]string{}, []int{1}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			f, err := parseHTPasswd(strings.NewReader(tt.file))
			if err != nil {
				t.Fatal(err)
			}
			got := map[string]string{}
			for u, e := range f.users {
				got[u] = e.hash
			}
			if !equalMaps(got, tt.users) {
				t.Errorf("got users %q, want %q", got, tt.users)
			}
			var lines []int
			for _, p := range f.problems {
				lines = append(lines, p.line)
			}
			if !slices.Equal(lines, tt.lines) {
				t.Errorf("got problems on lines %v, want %v: %v", lines, tt.lines, f.problems)
			}
		})
	}
}

func equalMaps[V comparable](a, b map[string]V) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if w, ok := b[k]; !ok || w != v {
			return false
		}
	}
	return true
}

// TestLineLength: Apache reads htpasswd lines into 8192 bytes, one of them the NUL: a line
// of 8191 bytes with its LF is read, a longer one makes Apache ignore the rest of the file
// (all four limits checked against Apache 2.4.71). The service refuses such a file, naming
// the line.
func TestLineLength(t *testing.T) {
	t.Parallel()
	h := testHash(t, "pw")
	good := "bob:" + h + "\n"
	// line returns a user line of exactly n bytes before its line end.
	line := func(n int) string {
		s := "carol:" + h + ":"
		return s + strings.Repeat("x", n-len(s))
	}
	tests := []struct {
		name string
		file string
		ok   bool
	}{
		{"8190 bytes and LF", good + line(8190) + "\n", true},
		{"8191 bytes and LF", good + line(8191) + "\n", false},
		{"8189 bytes and CRLF", good + line(8189) + "\r\n", true},
		{"8190 bytes and CRLF", good + line(8190) + "\r\n", false},
		{"8190 bytes at the end without LF", good + line(8190), true},
		{"8191 bytes at the end without LF", good + line(8191), false},
		{"long comment", good + "#" + strings.Repeat("x", 9000) + "\n", false},
		{"very long", good + line(100000) + "\n", false},
		{"continued lines that add up to too much", good + line(5000) + "\\\n" + strings.Repeat("y", 3191) + "\n", false},
		{"continued lines that fit", good + line(5000) + "\\\n" + strings.Repeat("y", 3190) + "\n", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			f, err := parseHTPasswd(strings.NewReader(tt.file))
			if tt.ok {
				if err != nil {
					t.Fatalf("got error %v, want none", err)
				}
				if _, ok := f.users["carol"]; !ok {
					t.Errorf("carol not loaded; problems: %v", f.problems)
				}
				return
			}
			if !errors.Is(err, errLineTooLong) {
				t.Fatalf("got error %v, want errLineTooLong", err)
			}
			if want := "line 2: longer than 8191 bytes"; !strings.HasPrefix(err.Error(), want) {
				t.Errorf("got %q, want it to start with %q", err, want)
			}
		})
	}
}

// TestEmptyFile: a file with no users parses, and buildSnapshot refuses it with a message
// that says how to add one.
func TestEmptyFile(t *testing.T) {
	t.Parallel()
	tests := []struct{ name, data, want string }{
		{"empty.htpasswd", string(readTestdata(t, "empty.htpasswd")), "users.htpasswd: no usable users: add one with `registry-auth user add --htpasswd users.htpasswd USER`"},
		{"zero bytes", "", "users.htpasswd: no usable users: add one with `registry-auth user add --htpasswd users.htpasswd USER`"},
		// The skipped lines are named, so the operator need not run check to see why.
		{"only refused users", "bob:plain\n", "users.htpasswd: no usable users; skipped line 1: user \"bob\" skipped: plain-text or unknown hash refused (Apache accepts plain text only on Windows); re-create the user with `registry-auth hash` or `htpasswd -B`: fix those lines, or add a user with `registry-auth user add --htpasswd users.htpasswd USER`"},
		{"five bad lines", "a\nb\nc\nd\ne\n", "users.htpasswd: no usable users; skipped line 1: no colon: want user:hash; line 2: no colon: want user:hash; line 3: no colon: want user:hash; and 2 more (registry-auth check lists them): fix those lines, or add a user with `registry-auth user add --htpasswd users.htpasswd USER`"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			f, err := parseHTPasswd(strings.NewReader(tt.data))
			if err != nil || len(f.users) != 0 {
				t.Fatalf("got %d users, error %v, want 0 users, no error", len(f.users), err)
			}
			_, err = buildSnapshot(testFileSet("users.htpasswd", []byte(tt.data), "", nil), sources{pushGroup: "pusher"})
			want := tt.want
			if err == nil || err.Error() != want {
				t.Errorf("got %v, want %q", err, want)
			}
		})
	}
}

// TestBrokenHashesReported: damaged hashes are found at load, each with its line, and never
// loaded; the good user of the same file still is.
func TestBrokenHashesReported(t *testing.T) {
	t.Parallel()
	f := parseTestdata(t, "broken.htpasswd")
	if len(f.users) != 1 || f.users["fine"].hash == "" {
		t.Errorf("got users %v, want only fine", f.users)
	}
	if ok, err := verifyPassword(f.users["fine"].hash, []byte("fine-pw")); !ok || err != nil {
		t.Errorf("fine: got %v, %v, want true, nil", ok, err)
	}
	tests := []struct {
		line int
		text string
	}{
		{5, `"truncated-bcrypt" skipped: malformed bcrypt hash`},
		{6, `"bcrypt-cost-99" skipped: malformed bcrypt hash`},
		{7, `"sha-not-base64" skipped: malformed {SHA} hash`},
		{8, `"sha-too-short" skipped: malformed {SHA} hash`},
		{9, `"apr1-no-hash" skipped: malformed APR1-MD5 hash`},
		{10, `"sha256-bad-rounds" skipped: malformed SHA-256-crypt hash`},
		{11, `"sha512-short" skipped: malformed SHA-512-crypt hash`},
		{12, `"empty-hash" skipped: plain-text or unknown hash refused`},
		{13, "empty user name"},
	}
	for _, tt := range tests {
		at := problemsAt(f.problems, tt.line)
		if len(at) != 1 || at[0].severity != severityError || !strings.Contains(at[0].message, tt.text) {
			t.Errorf("line %d: got %v, want one error containing %q", tt.line, at, tt.text)
		}
	}
	if len(f.problems) != len(tests) {
		t.Errorf("got %d problems, want %d: %v", len(f.problems), len(tests), f.problems)
	}
}

// TestVerifyPasswordBrokenHash: a hash that cannot be checked is an error, never a match.
func TestVerifyPasswordBrokenHash(t *testing.T) {
	t.Parallel()
	tests := []string{
		"$2y$04$elwPmXwtJIq7yHwiJOhiQOKtZjQRha6J/laFLMCAUqk", // truncated bcrypt
		"{SHA}not*base64*at*all=",
		"plain-secret",
		"5SDgZoPskSJPc", // DES is never checked, even if it reached verifyPassword
	}
	for _, hash := range tests {
		if ok, err := verifyPassword(hash, []byte("plain-secret")); ok || err == nil {
			t.Errorf("verifyPassword(%q): got %v, %v, want false and an error", hash, ok, err)
		}
	}
}
