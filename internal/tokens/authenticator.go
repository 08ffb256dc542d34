package tokens

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"time"

	"github.com/registry-auth/registry-auth/internal/authn"
)

// Authenticator decides for every login name that starts with LoginPrefix, over the tokens
// of one file as read: the loader builds one into each snapshot. It checks a secret with one
// SHA-256 and a constant-time comparison, microseconds, so it needs no hashing slot.
type Authenticator struct{ file *File }

// NewAuthenticator decides for the tokens of f (nil: no tokens, every token login refused).
func NewAuthenticator(f *File) Authenticator {
	if f == nil {
		f = &File{}
	}
	return Authenticator{f}
}

// Claims claims every token login name, known or not, so that no later source (a directory)
// is ever asked for one. The stamp is all that makes the token's verdict: a rotation, a
// revocation, a new expiry or new scopes is a new stamp, so a cached verdict never outlives
// them.
func (a Authenticator) Claims(user string) (string, bool) {
	name, ok := NameOf(user)
	if !ok {
		return "", false
	}
	t := a.file.byName[name]
	if t == nil {
		return "unknown", true
	}
	return t.stamp, true
}

// NameKey is user itself: token names are lower case, compared exactly.
func (Authenticator) NameKey(user string) string { return user }

// unknownDigest is compared against for a token name the file lacks, so that an unknown name
// costs what a known one does.
var unknownDigest [32]byte

// Check compares the SHA-256 of the secret with the token's, in constant time. A revoked
// token with its right secret is refused with the reason revoked; an expired one is proved,
// with Until set to its expiry, and the service refuses it.
func (a Authenticator) Check(_ context.Context, c authn.Credential) (authn.Outcome, error) {
	name, _ := NameOf(c.User)
	t := a.file.byName[name]
	want := &unknownDigest
	if t != nil {
		want = &t.digest
	}
	sum := sha256.Sum256(c.Password)
	match := subtle.ConstantTimeCompare(sum[:], want[:]) == 1
	switch {
	case t == nil:
		return authn.Outcome{}, nil
	case !match:
		return authn.Outcome{Known: true}, nil
	case !t.Revoked.IsZero():
		return authn.Outcome{Known: true, Reason: "revoked"}, nil
	}
	return authn.Outcome{OK: true, Known: true, User: c.User, Until: t.Expires, Scopes: t.scopes}, nil
}

// Counts are how many tokens are in each state at now.
func (a Authenticator) Counts(now time.Time) map[State]int {
	counts := map[State]int{Active: 0, Expiring: 0, Expired: 0, Revoked: 0}
	for _, t := range a.file.Tokens {
		counts[t.StateAt(now)]++
	}
	return counts
}

// Token is the token named name, nil when the file has none.
func (a Authenticator) Token(name string) *Token { return a.file.Get(name) }
