// Package htpasswd reads and edits Apache's htpasswd and groups files as Apache 2.4 reads
// them (mod_authn_file, mod_authz_groupfile), checks passwords against every hash format
// Apache accepts on Linux, and makes new bcrypt hashes as `htpasswd -B` does.
package htpasswd

import (
	"bytes"
	"crypto/sha1"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"fmt"
	"strconv"
	"strings"

	"github.com/GehirnInc/crypt"
	_ "github.com/GehirnInc/crypt/apr1_crypt"   // $apr1$, htpasswd's default
	_ "github.com/GehirnInc/crypt/md5_crypt"    // $1$
	_ "github.com/GehirnInc/crypt/sha256_crypt" // $5$, htpasswd -2
	_ "github.com/GehirnInc/crypt/sha512_crypt" // $6$, htpasswd -5
	"golang.org/x/crypto/bcrypt"
)

// Kind is the format of a stored password hash.
type Kind int

// The formats, as Classify tells them apart.
const (
	Unsupported Kind = iota // plain text or an unknown scheme: refused
	DES                     // traditional crypt(3): reads only 8 characters, refused
	Bcrypt                  // $2a$ $2b$ $2x$ $2y$
	APR1                    // $apr1$
	MD5Crypt                // $1$
	SHA1                    // {SHA}
	SHA256Crypt             // $5$
	SHA512Crypt             // $6$
)

// String names the format in messages ("bcrypt", "APR1-MD5", ...).
func (k Kind) String() string {
	switch k {
	case DES:
		return "DES crypt"
	case Bcrypt:
		return "bcrypt"
	case APR1:
		return "APR1-MD5"
	case MD5Crypt:
		return "MD5-crypt"
	case SHA1:
		return "SHA-1"
	case SHA256Crypt:
		return "SHA-256-crypt"
	case SHA512Crypt:
		return "SHA-512-crypt"
	}
	return "plain text or unknown"
}

// weak reports whether the format is accepted but too cheap to resist offline guessing.
func (k Kind) Weak() bool {
	return k == APR1 || k == MD5Crypt || k == SHA1
}

// desAlphabet holds the characters of a traditional DES crypt hash.
const desAlphabet = "./0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"

// Classify names the format of hash by its prefix, as apr_password_validate does.
func Classify(hash string) Kind {
	switch {
	case strings.HasPrefix(hash, "$2a$"), strings.HasPrefix(hash, "$2b$"),
		strings.HasPrefix(hash, "$2x$"), strings.HasPrefix(hash, "$2y$"):
		return Bcrypt
	case strings.HasPrefix(hash, "$apr1$"):
		return APR1
	case strings.HasPrefix(hash, "$1$"):
		return MD5Crypt
	case strings.HasPrefix(hash, "{SHA}"):
		return SHA1
	case strings.HasPrefix(hash, "$5$"):
		return SHA256Crypt
	case strings.HasPrefix(hash, "$6$"):
		return SHA512Crypt
	case len(hash) == 13 && strings.Trim(hash, desAlphabet) == "":
		return DES
	}
	return Unsupported
}

// validate checks that hash is well formed for its kind, so that a broken entry is
// reported at load and not discovered on a user's first login.
func validate(kind Kind, hash string) error {
	switch kind {
	case Bcrypt:
		if _, err := bcrypt.Cost([]byte(hash)); err != nil {
			return fmt.Errorf("malformed bcrypt hash: %v", err)
		}
		// bcrypt.Cost reads only the prefix; a cut or lengthened hash would never match.
		if len(hash) != 60 || strings.Trim(hash[7:], cryptAlphabet) != "" {
			return errors.New("malformed bcrypt hash: want 60 characters, $2y$NN$ and 53 of [./A-Za-z0-9]")
		}
	case SHA1:
		sum, err := base64.StdEncoding.DecodeString(hash[len("{SHA}"):])
		if err != nil || len(sum) != sha1.Size {
			return errors.New("malformed {SHA} hash: want base64 of 20 bytes")
		}
	case APR1, MD5Crypt, SHA256Crypt, SHA512Crypt:
		if err := validateCryptShape(kind, hash); err != nil {
			return fmt.Errorf("malformed %s hash: %v", kind, err)
		}
	case DES:
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
func validateCryptShape(kind Kind, hash string) error {
	prefix, saltMax, digestLen := "$1$", 8, 22
	switch kind {
	case APR1:
		prefix = "$apr1$"
	case SHA256Crypt:
		prefix, saltMax, digestLen = "$5$", 16, 43
	case SHA512Crypt:
		prefix, saltMax, digestLen = "$6$", 16, 86
	}
	rest := strings.TrimPrefix(hash, prefix)
	if kind == SHA256Crypt || kind == SHA512Crypt {
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

// Verify reports whether password matches hash. A wrong password is (false, nil); an
// error means the stored hash itself is broken. It is safe for concurrent use.
func Verify(hash string, password []byte) (bool, error) {
	switch Classify(hash) {
	case Bcrypt:
		err := bcrypt.CompareHashAndPassword([]byte(hash), password)
		if errors.Is(err, bcrypt.ErrMismatchedHashAndPassword) {
			return false, nil
		}
		return err == nil, err
	case SHA1:
		want, err := base64.StdEncoding.DecodeString(hash[len("{SHA}"):])
		if err != nil {
			return false, fmt.Errorf("malformed {SHA} hash: %w", err)
		}
		got := sha1.Sum(password)
		return subtle.ConstantTimeCompare(got[:], want) == 1, nil
	case APR1, MD5Crypt, SHA256Crypt, SHA512Crypt:
		err := crypt.NewFromHash(hash).Verify(hash, password)
		if errors.Is(err, crypt.ErrKeyMismatch) {
			return false, nil
		}
		return err == nil, err
	}
	return false, errors.New("unsupported hash format")
}

// NewBcrypt hashes a new password at cost as `htpasswd -B` does, refusing a password that
// bcrypt or Basic authentication would not keep whole.
func NewBcrypt(password []byte, cost int) (string, error) {
	switch {
	case len(password) == 0:
		return "", errors.New("empty password refused")
	case len(password) > 72:
		return "", fmt.Errorf("password is %d bytes: bcrypt reads only the first 72, so use at most 72", len(password))
	case bytes.IndexByte(password, 0) >= 0:
		return "", errors.New("password contains a NUL byte, which Basic authentication clients cannot send")
	}
	hash, err := bcrypt.GenerateFromPassword(password, cost)
	if err != nil {
		return "", err
	}
	// htpasswd writes $2y$; Go writes $2a$. Both verify the same everywhere; keep Apache's tag
	// so files look like the ones users know.
	return "$2y$" + string(hash[4:]), nil
}
