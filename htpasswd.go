package main

import (
	"bufio"
	"bytes"
	"crypto/sha1"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"

	"github.com/GehirnInc/crypt"
	_ "github.com/GehirnInc/crypt/apr1_crypt"   // $apr1$, htpasswd's default
	_ "github.com/GehirnInc/crypt/md5_crypt"    // $1$
	_ "github.com/GehirnInc/crypt/sha256_crypt" // $5$, htpasswd -2
	_ "github.com/GehirnInc/crypt/sha512_crypt" // $6$, htpasswd -5
	"golang.org/x/crypto/bcrypt"
)

// Longest lines Apache 2.4 reads, not counting the final LF (a CR counts). mod_authn_file
// reads the htpasswd file with ap_cfg_getline into MAX_STRING_LEN (8192) bytes: one is the
// NUL, one the LF, so 8190 remain, and at a longer line Apache stops reading and silently
// ignores the rest of the file (checked against Apache 2.4.71); we refuse such a file instead.
// mod_authz_groupfile grows its buffer up to 16 MiB.
const (
	maxHTPasswdLine = 8190
	maxGroupsLine   = 16 << 20
)

// errLineTooLong is returned (wrapped with the line number) for a line Apache would not read.
var errLineTooLong = errors.New("Apache would ignore it and every line after it")

// confSpace is apr_isspace: the white space Apache trims and splits words at (C locale).
const confSpace = " \t\n\v\f\r"

// hashKind is the format of a stored password hash.
type hashKind int

const (
	hashUnsupported hashKind = iota // plain text or an unknown scheme: refused
	hashDES                         // traditional crypt(3): reads only 8 characters, refused
	hashBcrypt                      // $2a$ $2b$ $2x$ $2y$
	hashAPR1                        // $apr1$
	hashMD5Crypt                    // $1$
	hashSHA1                        // {SHA}
	hashSHA256Crypt                 // $5$
	hashSHA512Crypt                 // $6$
)

func (k hashKind) String() string {
	switch k {
	case hashDES:
		return "DES crypt"
	case hashBcrypt:
		return "bcrypt"
	case hashAPR1:
		return "APR1-MD5"
	case hashMD5Crypt:
		return "MD5-crypt"
	case hashSHA1:
		return "SHA-1"
	case hashSHA256Crypt:
		return "SHA-256-crypt"
	case hashSHA512Crypt:
		return "SHA-512-crypt"
	}
	return "plain text or unknown"
}

// weak reports whether the format is accepted but too cheap to resist offline guessing.
func (k hashKind) weak() bool {
	return k == hashAPR1 || k == hashMD5Crypt || k == hashSHA1
}

// desAlphabet holds the characters of a traditional DES crypt hash.
const desAlphabet = "./0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"

// classifyHash names the format of hash by its prefix, as apr_password_validate does.
func classifyHash(hash string) hashKind {
	switch {
	case strings.HasPrefix(hash, "$2a$"), strings.HasPrefix(hash, "$2b$"),
		strings.HasPrefix(hash, "$2x$"), strings.HasPrefix(hash, "$2y$"):
		return hashBcrypt
	case strings.HasPrefix(hash, "$apr1$"):
		return hashAPR1
	case strings.HasPrefix(hash, "$1$"):
		return hashMD5Crypt
	case strings.HasPrefix(hash, "{SHA}"):
		return hashSHA1
	case strings.HasPrefix(hash, "$5$"):
		return hashSHA256Crypt
	case strings.HasPrefix(hash, "$6$"):
		return hashSHA512Crypt
	case len(hash) == 13 && strings.Trim(hash, desAlphabet) == "":
		return hashDES
	}
	return hashUnsupported
}

// validateHash checks that hash is well formed for its kind, so that a broken entry is
// reported at load and not discovered on a user's first login.
func validateHash(kind hashKind, hash string) error {
	switch kind {
	case hashBcrypt:
		if _, err := bcrypt.Cost([]byte(hash)); err != nil {
			return fmt.Errorf("malformed bcrypt hash: %v", err)
		}
		// bcrypt.Cost reads only the prefix; a cut or lengthened hash would never match.
		if len(hash) != 60 || strings.Trim(hash[7:], cryptAlphabet) != "" {
			return errors.New("malformed bcrypt hash: want 60 characters, $2y$NN$ and 53 of [./A-Za-z0-9]")
		}
	case hashSHA1:
		sum, err := base64.StdEncoding.DecodeString(hash[len("{SHA}"):])
		if err != nil || len(sum) != sha1.Size {
			return errors.New("malformed {SHA} hash: want base64 of 20 bytes")
		}
	case hashAPR1, hashMD5Crypt, hashSHA256Crypt, hashSHA512Crypt:
		if err := validateCryptShape(kind, hash); err != nil {
			return fmt.Errorf("malformed %s hash: %v", kind, err)
		}
	case hashDES:
		return errors.New("DES crypt hash refused: it reads only the first 8 characters of a password; re-create the user with `registry-auth hash` or `htpasswd -B`")
	default:
		return errors.New("plain-text or unknown hash refused (Apache accepts plain text only on Windows); re-create the user with `registry-auth hash` or `htpasswd -B`")
	}
	return nil
}

// cryptAlphabet holds the characters of crypt(3)'s base 64, bcrypt's included.
const cryptAlphabet = "./0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"

// validateCryptShape checks a $1$, $apr1$, $5$ or $6$ hash without computing it: the prefix,
// for $5$ and $6$ an optional rounds=N$, the salt, and a digest of the format's length. A
// salt longer than the format's maximum, or rounds that are out of range or not written the
// canonical way, are rewritten by crypt (Apache's and ours), so such a hash never matches.
// Computing a probe instead would let one entry with rounds=999999999 stall a load for minutes.
func validateCryptShape(kind hashKind, hash string) error {
	prefix, saltMax, digestLen := "$1$", 8, 22
	switch kind {
	case hashAPR1:
		prefix = "$apr1$"
	case hashSHA256Crypt:
		prefix, saltMax, digestLen = "$5$", 16, 43
	case hashSHA512Crypt:
		prefix, saltMax, digestLen = "$6$", 16, 86
	}
	rest := strings.TrimPrefix(hash, prefix)
	if kind == hashSHA256Crypt || kind == hashSHA512Crypt {
		if r, ok := strings.CutPrefix(rest, "rounds="); ok {
			n, after, _ := strings.Cut(r, "$")
			rounds, err := strconv.Atoi(n)
			if err != nil || rounds < 1000 || rounds > 999999999 || strconv.Itoa(rounds) != n {
				return fmt.Errorf("rounds=%s: want a number from 1000 to 999999999", n)
			}
			rest = after
		}
	}
	salt, digest, found := strings.Cut(rest, "$")
	switch {
	case !found:
		return errors.New("no $ between salt and digest")
	case len(salt) > saltMax:
		return fmt.Errorf("salt of %d characters: at most %d", len(salt), saltMax)
	case len(digest) != digestLen || strings.Trim(digest, cryptAlphabet) != "":
		return fmt.Errorf("digest must be %d characters of [./0-9A-Za-z]", digestLen)
	}
	return nil
}

// verifyPassword reports whether password matches hash. A wrong password is (false, nil); an
// error means the stored hash itself is broken. It is safe for concurrent use.
func verifyPassword(hash string, password []byte) (bool, error) {
	switch classifyHash(hash) {
	case hashBcrypt:
		err := bcrypt.CompareHashAndPassword([]byte(hash), password)
		if errors.Is(err, bcrypt.ErrMismatchedHashAndPassword) {
			return false, nil
		}
		return err == nil, err
	case hashSHA1:
		want, err := base64.StdEncoding.DecodeString(hash[len("{SHA}"):])
		if err != nil {
			return false, fmt.Errorf("malformed {SHA} hash: %w", err)
		}
		got := sha1.Sum(password)
		return subtle.ConstantTimeCompare(got[:], want) == 1, nil
	case hashAPR1, hashMD5Crypt, hashSHA256Crypt, hashSHA512Crypt:
		err := crypt.NewFromHash(hash).Verify(hash, password)
		if errors.Is(err, crypt.ErrKeyMismatch) {
			return false, nil
		}
		return err == nil, err
	}
	return false, errors.New("unsupported hash format")
}

// severity says whether a problem stops an entry from loading.
type severity int

const (
	severityWarning severity = iota // the entry loads; the operator should fix it
	severityError                   // the line is skipped
)

func (s severity) String() string {
	if s == severityError {
		return "error"
	}
	return "warning"
}

// lineProblem is something wrong with one line of a file. Line 0 means the whole file; file
// is filled in by the caller that knows the file's name.
type lineProblem struct {
	file     string
	line     int
	severity severity
	message  string
}

func (p lineProblem) String() string {
	if p.line == 0 {
		return fmt.Sprintf("%s: %s: %s", p.file, p.severity, p.message)
	}
	return fmt.Sprintf("%s:%d: %s: %s", p.file, p.line, p.severity, p.message)
}

// lineProblems collects the problems of one file as it is parsed.
type lineProblems []lineProblem

// add records a problem on line n.
func (ps *lineProblems) add(n int, s severity, format string, args ...any) {
	*ps = append(*ps, lineProblem{line: n, severity: s, message: fmt.Sprintf(format, args...)})
}

// htpasswdEntry is one user of an htpasswd file.
type htpasswdEntry struct {
	hash string
	kind hashKind
	line int
}

// htpasswdFile is a parsed htpasswd file. The zero value has no users.
type htpasswdFile struct {
	users    map[string]htpasswdEntry
	problems lineProblems
}

// readLines calls fn with each logical line of r as Apache's ap_cfg_getline makes them,
// numbered by its first physical line: a line ending in a backslash (before its LF or CRLF)
// continues on the next one, without the backslash and line end, even a comment; white space
// is trimmed at both ends; blank and comment lines are skipped. Each continued line is
// added to problems as a warning, as it may hide a user. A logical line longer than max bytes (not counting
// its final LF) is an error, as Apache stops reading there.
func readLines(r io.Reader, max int, problems *lineProblems, fn func(n int, line string)) error {
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
			return fmt.Errorf("line %d: longer than %d bytes counting its newline: %w", first, max+1, errLineTooLong)
		}
		if hadLF {
			if b := bytes.TrimSuffix(body, []byte("\r")); len(b) > 0 && b[len(b)-1] == '\\' {
				line = b[:len(b)-1]
				continue
			}
		}
		if n != first {
			problems.add(first, severityWarning,
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

// parseHTPasswd reads an htpasswd file with mod_authn_file's rules: one `user:hash` per line,
// the hash ending at the next colon, the first entry of a user winning. Lines that cannot be
// used are skipped and reported in problems; the error is for a file that must not be used
// at all (unreadable, or a line Apache would cut).
func parseHTPasswd(r io.Reader) (htpasswdFile, error) {
	f := htpasswdFile{users: make(map[string]htpasswdEntry)}
	problem := f.problems.add
	firstLine := make(map[string]int) // of each user, loaded or refused
	err := readLines(r, maxHTPasswdLine, &f.problems, func(n int, line string) {
		user, rest, found := strings.Cut(line, ":")
		if !found {
			problem(n, severityError, "no colon: want user:hash")
			return
		}
		if user == "" {
			problem(n, severityError, "empty user name")
			return
		}
		// ap_getword skips every colon after the user, so `user::hash` is user and hash.
		hash, _, _ := strings.Cut(strings.TrimLeft(rest, ":"), ":")
		// Apache stops at the first line of a user, usable or not: a refused entry shadows
		// later ones too, so they are not a way around the refusal.
		if prev, dup := firstLine[user]; dup {
			problem(n, severityWarning, "duplicate user %q ignored: the entry on line %d wins, as in Apache", user, prev)
			return
		}
		firstLine[user] = n
		kind := classifyHash(hash)
		if err := validateHash(kind, hash); err != nil {
			problem(n, severityError, "user %q skipped: %v", user, err)
			return
		}
		if kind.weak() {
			problem(n, severityWarning, "user %q has a weak %s hash; re-create it with `registry-auth hash` (bcrypt)", user, kind)
		}
		if strings.HasPrefix(hash, "$2x$") {
			// $2x$ asks for the sign-extension bug of old crypt_blowfish, which Apache emulates
			// and Go's bcrypt does not: a password with non-ASCII bytes would not verify.
			problem(n, severityWarning, "user %q has a legacy $2x$ bcrypt hash: a password with non-ASCII characters will not verify; re-create it with `registry-auth hash`", user)
		}
		f.users[user] = htpasswdEntry{hash: hash, kind: kind, line: n}
	})
	return f, err
}

// groupsFile is a parsed groups file: members by group. The zero value has no groups.
type groupsFile struct {
	members  map[string]map[string]bool
	problems lineProblems
	// memberLine is the line where each member of each group is first named, for messages.
	memberLine map[[2]string]int
}

// parseGroups reads a groups file with mod_authz_groupfile's rules (Apache 2.4):
// `group: member ...`, white space before the colon not part of the name, members separated
// by white space and optionally quoted, a group's lines adding up.
func parseGroups(r io.Reader) (groupsFile, error) {
	f := groupsFile{members: make(map[string]map[string]bool), memberLine: make(map[[2]string]int)}
	problem := f.problems.add
	err := readLines(r, maxGroupsLine, &f.problems, func(n int, line string) {
		group, rest, found := strings.Cut(line, ":")
		if !found {
			problem(n, severityError, "no colon: want group: user1 user2 ...")
			return
		}
		group = strings.TrimRight(group, confSpace) // as groups_for_user does since 2.4
		if group == "" {
			problem(n, severityError, "empty group name")
			return
		}
		members := f.members[group]
		if members == nil {
			members = make(map[string]bool)
			f.members[group] = members
		}
		// ap_getword skips every colon after the name.
		for rest = strings.TrimLeft(rest, ":"); rest != ""; {
			var word string
			word, rest = nextConfWord(rest)
			if word != "" && !members[word] {
				members[word] = true
				f.memberLine[[2]string{group, word}] = n
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
