// Package authn is the seam between the service and the places users live: the htpasswd
// file, a directory, and whatever comes next. An Authenticator knows nothing of requests,
// caches or throttles, and the service nothing of how it checks a password: the service asks
// the authenticators in order, through the cache and the throttle that wrap them all.
package authn

import (
	"context"
	"errors"
	"time"

	"github.com/registry-auth/registry-auth/internal/policy"
)

// Credential is what one request presents: the user and password of its Basic header, and
// the client address it came from (for a budget shared between clients; never a verdict).
type Credential struct {
	Client   string
	User     string
	Password []byte
}

// Outcome is what an authenticator found for one credential.
type Outcome struct {
	OK     bool     // the password proves the user
	Known  bool     // the source knows the user
	User   string   // the canonical name, when OK: a source may spell it otherwise than typed
	Groups []string // policy.GroupKey of each group the source itself gives the user
	// Forget: the verdict is not to be remembered (a directory's failures, as mod_ldap).
	Forget bool
	Reason string // why a refusal, when Known does not say it (empty_password, ambiguous_user)
	// Until, when not zero, is when the credential stops proving the user (a token's
	// expiry): the service refuses it from that instant on, cached or not.
	Until time.Time
	// Scopes, when not nil, narrow what the policy grants the user (a token's).
	Scopes *policy.Scopes
}

// Authenticator proves credentials against one place users live. Implementations are safe
// for concurrent use.
type Authenticator interface {
	// Claims reports whether the source decides for user (the first that claims a user
	// decides alone, as Apache's AuthBasicProvider), and a stamp that changes whenever the
	// user's verdict may have (such as the stored hash): it is part of the cache key (an
	// HMAC of it with the rest of the key; the stamp itself is never stored or logged).
	Claims(user string) (stamp string, ok bool)
	// NameKey is user as the source compares names: the names it takes for one user share
	// one key, so that the throttle's per-name limit counts them together.
	NameKey(user string) string
	// Check verifies c's password. The service calls it on a cache miss only, once the
	// throttle allows. An error wraps ErrUnavailable, or says that a stored secret cannot be
	// checked. ctx is the request's: a check may give up when it ends.
	Check(ctx context.Context, c Credential) (Outcome, error)
}

// Forgetter is an Authenticator whose verdicts the service must drop on SIGHUP even when no
// file changed (a directory: its entries change where no watcher sees them). Forget changes
// every stamp Claims gives.
type Forgetter interface {
	Forget()
}

// ErrUnavailable means a source of users could not be asked (a directory down or too slow):
// the password may be right, so the answer is 503, never 401 or 200, and it is no failed
// login for the throttle.
var ErrUnavailable = errors.New("the source of users is unavailable")
