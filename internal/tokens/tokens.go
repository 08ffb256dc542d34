// Package tokens is robot tokens: credentials for machines (CI jobs, Kubernetes pull
// secrets) that are long random secrets, narrowed by scopes, that expire and can be revoked.
// It owns the tokens file (its YAML, line-numbered problems and edits), the secrets and the
// authenticator that checks them. A token logs in as LoginPrefix+NAME, a name no person can
// have: htpasswd.CheckUserName refuses it and the loader skips such a line of the htpasswd file.
package tokens

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"regexp"
	"strings"

	"github.com/registry-auth/registry-auth/internal/htpasswd"
)

// LoginPrefix starts the login name of every token: token+ci logs in with the token ci.
// A plus sign needs no quoting in a shell, a URL's user part or a docker config, and GitLab's
// deploy tokens name their users the same way (gitlab+deploy-token-1).
const LoginPrefix = htpasswd.TokenPrefix

// LoginName is the user name a token logs in with.
func LoginName(name string) string { return LoginPrefix + name }

// NameOf is the token a login name stands for, and whether it is a token's login name at all.
func NameOf(user string) (string, bool) { return strings.CutPrefix(user, LoginPrefix) }

// IsLogin reports whether user is a token's login name: such a name is the tokens' alone.
func IsLogin(user string) bool { return strings.HasPrefix(user, LoginPrefix) }

// namePattern is a token's name: lower-case letters, digits, and . _ - inside, at most 63
// characters, so that token+NAME is also a repository path component and a Kubernetes
// object name's part.
var namePattern = regexp.MustCompile(`^[a-z0-9]([a-z0-9._-]{0,61}[a-z0-9])?$`)

// CheckName says what is wrong with name as a token's name, nil when nothing is.
func CheckName(name string) error {
	if !namePattern.MatchString(name) {
		return fmt.Errorf("token name %q: use 1 to 63 lower-case letters, digits, '.', '_' or '-', starting and ending with a letter or digit (such as ci or team-pull)", name)
	}
	return nil
}

// secretPrefix starts every secret, so that a secret scanner (and a person) can tell one.
const secretPrefix = "rat_"

// secretBytes is the randomness of a secret: 256 bits, beyond any guessing, which is why a
// plain SHA-256 of it is safe to store (no dictionary or brute force reaches it) and no slow
// hash is needed.
const secretBytes = 32

// NewSecret returns a new random secret and its digest, as the tokens file stores it.
func NewSecret() (secret, digest string) {
	b := make([]byte, secretBytes)
	rand.Read(b) // never fails (crypto/rand panics rather than return an error since Go 1.24)
	secret = secretPrefix + base64.RawURLEncoding.EncodeToString(b)
	return secret, Digest([]byte(secret))
}

// Digest is the hex SHA-256 of secret: what the tokens file stores for it.
func Digest(secret []byte) string {
	sum := sha256.Sum256(secret)
	return hex.EncodeToString(sum[:])
}
