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
	"strings"

	"github.com/GehirnInc/crypt"
	_ "github.com/GehirnInc/crypt/apr1_crypt"   // $apr1$, htpasswd's default
	_ "github.com/GehirnInc/crypt/md5_crypt"    // $1$
	_ "github.com/GehirnInc/crypt/sha256_crypt" // $5$, htpasswd -2
	_ "github.com/GehirnInc/crypt/sha512_crypt" // $6$, htpasswd -5
	"golang.org/x/crypto/bcrypt"
)

// maxLineLength is the longest line Apache reads from its files: ap_cfg_getline fills a
// buffer of MAX_STRING_LEN (8192) bytes, one of which is the terminating NUL. Apache silently
// drops the rest of a longer line; we refuse the whole file instead.
const maxLineLength = 8191

// errLineTooLong is returned (wrapped with the line number) for a line Apache would truncate.
var errLineTooLong = errors.New("line longer than 8191 bytes (Apache would silently cut it)")

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
	case hashSHA1:
		sum, err := base64.StdEncoding.DecodeString(hash[len("{SHA}"):])
		if err != nil || len(sum) != sha1.Size {
			return errors.New("malformed {SHA} hash: want base64 of 20 bytes")
		}
	case hashAPR1, hashMD5Crypt, hashSHA256Crypt, hashSHA512Crypt:
		if !crypt.IsHashSupported(hash) || strings.Count(hash, "$") < 3 {
			return fmt.Errorf("malformed %s hash", kind)
		}
		// A wrong-format salt or rounds field makes the library fail at verify time; find out now.
		if err := crypt.NewFromHash(hash).Verify(hash, []byte("registry-auth probe")); err != nil &&
			!errors.Is(err, crypt.ErrKeyMismatch) {
			return fmt.Errorf("malformed %s hash: %v", kind, err)
		}
	case hashDES:
		return errors.New("DES crypt hash refused: it reads only the first 8 characters of a password; re-create the user with `registry-auth hash` or `htpasswd -B`")
	default:
		return errors.New("plain-text or unknown hash refused (Apache accepts plain text only on Windows); re-create the user with `registry-auth hash` or `htpasswd -B`")
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

// htpasswdEntry is one user of an htpasswd file.
type htpasswdEntry struct {
	hash string
	kind hashKind
	line int
}

// htpasswdFile is a parsed htpasswd file. The zero value has no users.
type htpasswdFile struct {
	users    map[string]htpasswdEntry
	problems []lineProblem
}

// readLines calls fn with each line of r, numbered from 1, with surrounding white space
// trimmed and blank and comment lines skipped, as Apache's ap_cfg_getline callers do.
func readLines(r io.Reader, fn func(n int, line string)) error {
	br := bufio.NewReaderSize(r, maxLineLength+2)
	for n := 1; ; n++ {
		raw, err := br.ReadSlice('\n')
		if errors.Is(err, bufio.ErrBufferFull) {
			return fmt.Errorf("line %d: %w", n, errLineTooLong)
		}
		if err != nil && !errors.Is(err, io.EOF) {
			return err
		}
		if len(bytes.TrimRight(raw, "\r\n")) > maxLineLength {
			return fmt.Errorf("line %d: %w", n, errLineTooLong)
		}
		line := strings.TrimSpace(string(raw))
		if line != "" && line[0] != '#' {
			fn(n, line)
		}
		if err != nil { // io.EOF after the last, possibly unterminated, line
			return nil
		}
	}
}

// parseHTPasswd reads an htpasswd file with mod_authn_file's rules: one `user:hash` per line,
// the hash ending at the next colon, the first entry of a user winning. Lines that cannot be
// used are skipped and reported in problems; the error is for a file that must not be used
// at all (unreadable, or a line Apache would cut).
func parseHTPasswd(r io.Reader) (htpasswdFile, error) {
	f := htpasswdFile{users: make(map[string]htpasswdEntry)}
	problem := func(n int, s severity, format string, args ...any) {
		f.problems = append(f.problems, lineProblem{line: n, severity: s, message: fmt.Sprintf(format, args...)})
	}
	err := readLines(r, func(n int, line string) {
		user, rest, found := strings.Cut(line, ":")
		if !found {
			problem(n, severityError, "no colon: want user:hash")
			return
		}
		if user == "" {
			problem(n, severityError, "empty user name")
			return
		}
		hash, _, _ := strings.Cut(rest, ":")
		if prev, dup := f.users[user]; dup {
			problem(n, severityWarning, "duplicate user %q ignored: the entry on line %d wins, as in Apache", user, prev.line)
			return
		}
		kind := classifyHash(hash)
		if err := validateHash(kind, hash); err != nil {
			problem(n, severityError, "user %q skipped: %v", user, err)
			return
		}
		if kind.weak() {
			problem(n, severityWarning, "user %q has a weak %s hash; re-create it with `registry-auth hash` (bcrypt)", user, kind)
		}
		f.users[user] = htpasswdEntry{hash: hash, kind: kind, line: n}
	})
	return f, err
}

// groupsFile is a parsed groups file: members by group. The zero value has no groups.
type groupsFile struct {
	members  map[string]map[string]bool
	problems []lineProblem
}

// parseGroups reads a groups file with mod_authz_groupfile's rules: `group: member ...`,
// members separated by white space and optionally quoted, a group's lines adding up.
func parseGroups(r io.Reader) (groupsFile, error) {
	f := groupsFile{members: make(map[string]map[string]bool)}
	problem := func(n int, s severity, format string, args ...any) {
		f.problems = append(f.problems, lineProblem{line: n, severity: s, message: fmt.Sprintf(format, args...)})
	}
	err := readLines(r, func(n int, line string) {
		group, rest, found := strings.Cut(line, ":")
		if !found {
			problem(n, severityError, "no colon: want group: user1 user2 ...")
			return
		}
		if group == "" {
			problem(n, severityError, "empty group name")
			return
		}
		if strings.TrimSpace(group) != group {
			// Apache keeps the white space as part of the name, so `Require group pusher`
			// would not match `pusher :`; so do we, but say so.
			problem(n, severityWarning, "group name %q has white space before the colon; it is part of the name, as in Apache", group)
		}
		members := f.members[group]
		if members == nil {
			members = make(map[string]bool)
			f.members[group] = members
		}
		for rest = strings.TrimLeft(rest, " \t"); rest != ""; {
			var word string
			word, rest = nextConfWord(rest)
			if word != "" {
				members[word] = true
			}
		}
	})
	return f, err
}

// nextConfWord splits the first word off s like Apache's ap_getword_conf: a word is quoted
// with ' or " (a backslash escapes the quote inside) or runs to the next white space.
func nextConfWord(s string) (word, rest string) {
	if q := s[0]; q == '"' || q == '\'' {
		var b strings.Builder
		i := 1
		for ; i < len(s) && s[i] != q; i++ {
			if s[i] == '\\' && i+1 < len(s) && s[i+1] == q {
				i++
			}
			b.WriteByte(s[i])
		}
		if i < len(s) {
			i++ // closing quote
		}
		return b.String(), strings.TrimLeft(s[i:], " \t")
	}
	end := strings.IndexAny(s, " \t")
	if end < 0 {
		return s, ""
	}
	return s[:end], strings.TrimLeft(s[end:], " \t")
}
