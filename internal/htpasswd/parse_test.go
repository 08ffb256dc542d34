package htpasswd

import (
	"bytes"
	"errors"
	"maps"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/registry-auth/registry-auth/internal/htpasswd/htpasswdtest"
)

// The vectors of testdata/formats.htpasswd: user, password, the format the service must see.
// testdata/make-vectors.sh made them with Apache's htpasswd, openssl passwd and libxcrypt.
var formatVectors = []struct {
	user, password string
	kind           Kind
}{
	{"bcrypt4", "correct horse battery staple", Bcrypt}, // htpasswd -B -C 4
	{"bcrypt5", "pässwörd-ünïcode", Bcrypt},             // htpasswd -B (its default cost 5), UTF-8 password
	{"bcrypt10", "Tr0ub4dor&3", Bcrypt},                 // htpasswd -B -C 10, the cost people should use
	{"bcrypt-colon", "a:b:c", Bcrypt},                   // a password may hold colons
	{"bcrypt-long80", "0123456789012345678901234567890123456789012345678901234567890123456789-past-72!", Bcrypt}, // 80 bytes
	{"apr1", "apr1-secret", APR1},                     // htpasswd -m, its default
	{"sha1", "sha1-secret", SHA1},                     // htpasswd -s
	{"sha256", "sha256-secret", SHA256Crypt},          // htpasswd -2
	{"sha256-rounds", "sha256 rounds", SHA256Crypt},   // htpasswd -2 -r 10000
	{"sha512", "sha512-secret", SHA512Crypt},          // htpasswd -5
	{"sha512-rounds", "sha512 rounds", SHA512Crypt},   // htpasswd -5 -r 1000
	{"openssl-md5", "md5crypt-secret", MD5Crypt},      // openssl passwd -1
	{"openssl-apr1", "openssl-apr1", APR1},            // openssl passwd -apr1
	{"openssl-sha256", "openssl-sha256", SHA256Crypt}, // openssl passwd -5
	{"openssl-sha512", "openssl-sha512", SHA512Crypt}, // openssl passwd -6
	{"crypt-2a", "libxcrypt 2a", Bcrypt},              // crypt(3) with a $2a$ salt
	{"crypt-2b", "libxcrypt 2b", Bcrypt},              // crypt(3) with a $2b$ salt
	{"crypt-2x", "libxcrypt 2x", Bcrypt},              // crypt(3) with a $2x$ salt, ASCII password
	{"crypt-md5", "libxcrypt md5", MD5Crypt},          // crypt(3) with a $1$ salt
}

// parseTestdata parses an htpasswd fixture; a file-level error fails the test.
func parseTestdata(t testing.TB, name string) File {
	t.Helper()
	f, err := Parse(bytes.NewReader(htpasswdtest.Read(t, name)))
	if err != nil {
		t.Fatalf("parsing %s: %v", name, err)
	}
	return f
}

// problemsAt returns the problems reported for line n.
func problemsAt(problems []Problem, n int) []Problem {
	var at []Problem
	for _, p := range problems {
		if p.Line == n {
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
	for user := range f.Users {
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
			e, ok := f.Users[v.user]
			if !ok {
				t.Fatalf("user %q not loaded", v.user)
			}
			if e.Kind != v.kind || Classify(e.Hash) != v.kind {
				t.Errorf("got kind %v (Classify %v), want %v", e.Kind, Classify(e.Hash), v.kind)
			}
			if ok, err := Verify(e.Hash, []byte(v.password)); !ok || err != nil {
				t.Errorf("right password: got %v, %v, want true, nil", ok, err)
			}
			wrong := wrongPasswords(v.password)
			if v.user == "bcrypt10" {
				wrong = wrong[:2] // about a second each under -race
			}
			for _, wrong := range wrong {
				if ok, err := Verify(e.Hash, []byte(wrong)); ok || err != nil {
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
	hash := f.Users["bcrypt-long80"].Hash
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
		if got, err := Verify(hash, []byte(tt.password)); got != tt.want || err != nil {
			t.Errorf("%s: got %v, %v, want %v, nil", tt.name, got, err, tt.want)
		}
	}
}

// TestFormatVectorsAgreeWithApache runs Apache's own `htpasswd -vb` on every vector: the
// fixture's passwords are what Apache itself accepts.
func TestFormatVectorsAgreeWithApache(t *testing.T) {
	t.Parallel()
	htpasswdBin := htpasswdtest.Apache(t)
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

// TestClassifyHash: the format is read from the prefix, as apr_password_validate does.
func TestClassifyHash(t *testing.T) {
	t.Parallel()
	tests := []struct {
		hash string
		want Kind
		weak bool
	}{
		{"$2y$05$X5C2yIiARH96c5RIEe63p.ZFsNuzim0.NL8gSxeB/n/mdNnX0OYJe", Bcrypt, false},
		{"$2a$04$", Bcrypt, false}, // the prefix decides; validate checks the rest
		{"$2b$04$", Bcrypt, false},
		{"$2x$04$", Bcrypt, false},
		{"$2z$04$abc", Unsupported, false}, // no such bcrypt variant
		{"$2$04$abc", Unsupported, false},  // the original 1999 variant: not accepted
		{"$apr1$UkEtRE0r$92uIQhpwvEVnfrfw5oMZm0", APR1, true},
		{"$1$qtwxeDPE$3mwlyRjBOG9WJgSWtW/Ad/", MD5Crypt, true},
		{"{SHA}F/WZ9PxtuIpP2yyadrWdU4eK0og=", SHA1, true},
		{"{SSHA}F/WZ9PxtuIpP2yyadrWdU4eK0og=", Unsupported, false}, // LDAP's salted SHA: not Apache's
		{"{sha}F/WZ9PxtuIpP2yyadrWdU4eK0og=", Unsupported, false},  // the tag is case-sensitive
		{"$5$A2ViiKBAF8sLvoI/$iyCHWfVqKzjR5VXjvIGDKQrHb47/KFlzCj7eBe95Wm3", SHA256Crypt, false},
		{"$5$rounds=10000$F9qtjWSlEnPJwOVD$69NVRhOwaKDtkbIMlnkaQvq8mu5g/ntI/GJxK7quQC1", SHA256Crypt, false},
		{"$6$DLjhz5YLH6quIRMz$Ri13zf", SHA512Crypt, false},
		{"5SDgZoPskSJPc", DES, false}, // htpasswd -d
		{"5SDgZoPskSJP", Unsupported, false},
		{"5SDgZoPskSJP$", Unsupported, false},
		{"plain-secret", Unsupported, false}, // htpasswd -p
		{"", Unsupported, false},
		{"$y$j9T$abc$def", Unsupported, false}, // yescrypt (Debian's /etc/shadow default): Apache on Linux would pass it to crypt(3); we refuse
	}
	for _, tt := range tests {
		got := Classify(tt.hash)
		if got != tt.want {
			t.Errorf("Classify(%q): got %v, want %v", tt.hash, got, tt.want)
		}
		if got.Weak() != tt.weak {
			t.Errorf("%v.Weak(): got %v, want %v", got, got.Weak(), tt.weak)
		}
	}
}

// TestWeakHashesWarned: every weak vector loads with a warning on its own line, and nothing
// else in formats.htpasswd draws a problem except the legacy $2x$ entry.
func TestWeakHashesWarned(t *testing.T) {
	t.Parallel()
	data := htpasswdtest.Read(t, "formats.htpasswd")
	f := parseTestdata(t, "formats.htpasswd")
	want := map[int]string{}
	for _, v := range formatVectors {
		switch {
		case v.kind.Weak():
			want[htpasswdtest.LineOf(t, data, v.user+":")] = "weak " + v.kind.String()
		case v.user == "crypt-2x":
			want[htpasswdtest.LineOf(t, data, v.user+":")] = "legacy $2x$"
		}
	}
	if len(f.Problems) != len(want) {
		t.Errorf("got %d problems, want %d: %v", len(f.Problems), len(want), f.Problems)
	}
	for _, p := range f.Problems {
		if p.Severity != Warning || !strings.Contains(p.Message, want[p.Line]) || want[p.Line] == "" {
			t.Errorf("got %v on line %d, want a warning containing %q", p, p.Line, want[p.Line])
		}
	}
}

// TestLegacy2xWithNonASCIIPassword: a $2x$ hash asks for the sign-extension bug of old
// crypt_blowfish. Apache (and libxcrypt) emulate it, Go's bcrypt does not, so a password with
// non-ASCII bytes verifies in Apache but not here: denied, and warned about at load.
func TestLegacy2xWithNonASCIIPassword(t *testing.T) {
	t.Parallel()
	f := parseTestdata(t, "bcrypt-2x-8bit.htpasswd")
	e, ok := f.Users["legacy2x"]
	if !ok {
		t.Fatal("legacy2x not loaded")
	}
	if len(f.Problems) != 1 || !strings.Contains(f.Problems[0].Message, "legacy $2x$") {
		t.Errorf("got problems %v, want one legacy $2x$ warning", f.Problems)
	}
	if ok, err := Verify(e.Hash, []byte("pässwort")); ok || err != nil {
		t.Errorf("got %v, %v, want false, nil (Go's bcrypt has no $2x$ bug mode)", ok, err)
	}
	htpasswdBin := htpasswdtest.Apache(t)
	if out, err := exec.Command(htpasswdBin, "-vb", filepath.Join("testdata", "bcrypt-2x-8bit.htpasswd"), "legacy2x", "pässwort").CombinedOutput(); err != nil {
		t.Errorf("Apache's htpasswd -vb refused the vector's password: %v: %s", err, out)
	}
}

// TestRefusedLinesSkipped: DES and plain-text lines are skipped with an error naming the line
// and saying how to fix it; the other users still load.
func TestRefusedLinesSkipped(t *testing.T) {
	t.Parallel()
	f := parseTestdata(t, "refused.htpasswd")
	users := slices.Sorted(maps.Keys(f.Users))
	if want := []string{"good1", "good2"}; !slices.Equal(users, want) {
		t.Errorf("got users %q, want %q", users, want)
	}
	tests := []struct {
		line     int
		severity Severity
		want     string
	}{
		{7, Error, `user "des" skipped: DES crypt hash refused`},
		{10, Error, `user "plain" skipped: plain-text or unknown hash refused`},
		{13, Warning, `user "good2" has a weak APR1-MD5 hash`},
	}
	for _, tt := range tests {
		at := problemsAt(f.Problems, tt.line)
		if len(at) != 1 || at[0].Severity != tt.severity || !strings.HasPrefix(at[0].Message, tt.want) {
			t.Errorf("line %d: got %v, want one %v starting %q", tt.line, at, tt.severity, tt.want)
		}
	}
	for _, p := range f.Problems {
		if p.Severity == Error && !strings.Contains(p.Message, "registry-auth hash") {
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
		e, ok := f.Users[l.user]
		if !ok {
			t.Errorf("user %q not loaded", l.user)
			continue
		}
		if got, err := Verify(e.Hash, []byte(l.password)); got != l.want || err != nil {
			t.Errorf("%s with %q: got %v, %v, want %v, nil", l.user, l.password, got, err, l.want)
		}
	}
	if len(f.Users) != 5 {
		t.Errorf("got %d users, want 5", len(f.Users))
	}
	if got := f.Users["alice"].Line; got != 5 {
		t.Errorf("alice: got line %d, want 5", got)
	}
	problems := []struct {
		line     int
		Severity Severity
		text     string
	}{
		{9, Warning, `user "bob" has a weak APR1-MD5 hash`},
		{16, Warning, `duplicate user "alice" ignored: the entry on line 5 wins`},
		{17, Error, "no colon"},
		{21, Warning, `user "dave" has a weak SHA-1 hash`},
	}
	for _, want := range problems {
		at := problemsAt(f.Problems, want.line)
		if len(at) != 1 || at[0].Severity != want.Severity || !strings.Contains(at[0].Message, want.text) {
			t.Errorf("line %d: got %v, want one %v containing %q", want.line, at, want.Severity, want.text)
		}
	}
	if len(f.Problems) != len(problems) {
		t.Errorf("got %d problems, want %d: %v", len(f.Problems), len(problems), f.Problems)
	}
}

// TestParseHTPasswdLines covers Apache's line rules one at a time; each case was checked
// against Apache 2.4.71's mod_authn_file.
func TestParseHTPasswdLines(t *testing.T) {
	t.Parallel()
	h := htpasswdtest.Hash(t, "pw")
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
			f, err := Parse(strings.NewReader(tt.file))
			if err != nil {
				t.Fatal(err)
			}
			got := map[string]string{}
			for u, e := range f.Users {
				got[u] = e.Hash
			}
			if !equalMaps(got, tt.users) {
				t.Errorf("got users %q, want %q", got, tt.users)
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
	h := htpasswdtest.Hash(t, "pw")
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
			f, err := Parse(strings.NewReader(tt.file))
			if tt.ok {
				if err != nil {
					t.Fatalf("got error %v, want none", err)
				}
				if _, ok := f.Users["carol"]; !ok {
					t.Errorf("carol not loaded; problems: %v", f.Problems)
				}
				return
			}
			if !errors.Is(err, ErrLineTooLong) {
				t.Fatalf("got error %v, want ErrLineTooLong", err)
			}
			if want := "line 2: longer than 8191 bytes"; !strings.HasPrefix(err.Error(), want) {
				t.Errorf("got %q, want it to start with %q", err, want)
			}
		})
	}
}

// TestEmptyFile: a file with no usable users parses, with no error (the loader refuses it).
func TestEmptyFile(t *testing.T) {
	t.Parallel()
	for _, data := range []string{string(htpasswdtest.Read(t, "empty.htpasswd")), "", "bob:plain\n", "a\nb\nc\nd\ne\n"} {
		f, err := Parse(strings.NewReader(data))
		if err != nil || len(f.Users) != 0 {
			t.Errorf("%q: got %d users, error %v, want 0 users, no error", data, len(f.Users), err)
		}
	}
}

// TestBrokenHashesReported: damaged hashes are found at load, each with its line, and never
// loaded; the good user of the same file still is.
func TestBrokenHashesReported(t *testing.T) {
	t.Parallel()
	f := parseTestdata(t, "broken.htpasswd")
	if len(f.Users) != 1 || f.Users["fine"].Hash == "" {
		t.Errorf("got users %v, want only fine", f.Users)
	}
	if ok, err := Verify(f.Users["fine"].Hash, []byte("fine-pw")); !ok || err != nil {
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
		at := problemsAt(f.Problems, tt.line)
		if len(at) != 1 || at[0].Severity != Error || !strings.Contains(at[0].Message, tt.text) {
			t.Errorf("line %d: got %v, want one error containing %q", tt.line, at, tt.text)
		}
	}
	if len(f.Problems) != len(tests) {
		t.Errorf("got %d problems, want %d: %v", len(f.Problems), len(tests), f.Problems)
	}
}

// TestVerifyPasswordBrokenHash: a hash that cannot be checked is an error, never a match.
func TestVerifyPasswordBrokenHash(t *testing.T) {
	t.Parallel()
	tests := []string{
		"$2y$04$elwPmXwtJIq7yHwiJOhiQOKtZjQRha6J/laFLMCAUqk", // truncated bcrypt
		"{SHA}not*base64*at*all=",
		"plain-secret",
		"5SDgZoPskSJPc", // DES is never checked, even if it reached Verify
	}
	for _, hash := range tests {
		if ok, err := Verify(hash, []byte("plain-secret")); ok || err == nil {
			t.Errorf("Verify(%q): got %v, %v, want false and an error", hash, ok, err)
		}
	}
}
