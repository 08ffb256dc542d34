package main

import (
	"context"
	"errors"
	"time"

	"github.com/registry-auth/registry-auth/internal/htpasswd"
)

// errUnavailable means a source of users could not be asked (a directory down or too slow):
// the password may be right, so the answer is 503, never 401 or 200, and it is no failed
// login for the throttle.
var errUnavailable = errors.New("the source of users is unavailable")

// authOutcome is what an authenticator found for one credential.
type authOutcome struct {
	ok     bool     // the password proves the user
	known  bool     // the source knows the user
	user   string   // the canonical name, when ok
	groups []string // groupKey of each group the source itself gives the user (a directory's)
	// forget: the verdict is not to be remembered (a directory's failures, as mod_ldap).
	forget bool
	reason string // why a refusal, when known and unknown do not say it (empty_password)
}

// authenticator proves credentials against one place users live: the htpasswd file, a
// directory. It knows nothing of requests, and the handler nothing of it: the store asks
// the authenticators in order, through the cache and the throttle that wrap them all.
// Implementations are safe for concurrent use.
type authenticator interface {
	// claims reports whether the source decides for user (the first that claims a user
	// decides alone, as Apache's AuthBasicProvider), and a stamp that changes whenever the
	// user's verdict may have (the stored hash): it is part of the cache key.
	claims(snap *snapshot, user string) (stamp string, ok bool)
	// nameKey is user as the source compares names: the names it takes for one user share
	// one key, so the throttle's per-name limit counts them together.
	nameKey(user string) string
	// check verifies c's password. The store calls it on a cache miss only, once the
	// throttle allows. An error is errUnavailable or a stored secret that cannot be checked.
	// ctx is the request's: a check may give up when it ends.
	check(ctx context.Context, snap *snapshot, c credential) (authOutcome, error)
}

// htpasswdAuthenticator decides for the users of the snapshot's htpasswd file. Its hashes
// take their turn in budget.
type htpasswdAuthenticator struct{ budget *hashBudget }

func (htpasswdAuthenticator) claims(snap *snapshot, user string) (string, bool) {
	e, ok := snap.users[user]
	return e.Hash, ok
}

// nameKey is user itself: the file's names compare exactly, as in Apache.
func (htpasswdAuthenticator) nameKey(user string) string { return user }

func (a htpasswdAuthenticator) check(ctx context.Context, snap *snapshot, c credential) (out authOutcome, err error) {
	if busy := a.budget.run(ctx, c.client, func() {
		out.ok, err = htpasswd.Verify(snap.users[c.user].Hash, c.password)
	}); busy != nil {
		return authOutcome{}, busy
	}
	out.known, out.user = true, c.user
	return out, err
}

// unknownUsers decides for the users no other source claims: it compares against the
// snapshot's dummy hash, so that an unknown user costs what a known one does (its turn in
// budget included), and refuses.
type unknownUsers struct{ budget *hashBudget }

func (unknownUsers) claims(snap *snapshot, user string) (string, bool) { return snap.dummyHash, true }

// nameKey is user itself: no source compares it with anything.
func (unknownUsers) nameKey(user string) string { return user }

func (a unknownUsers) check(ctx context.Context, snap *snapshot, c credential) (authOutcome, error) {
	var err error
	if busy := a.budget.run(ctx, c.client, func() {
		_, err = htpasswd.Verify(snap.dummyHash, c.password)
	}); busy != nil {
		return authOutcome{}, busy
	}
	return authOutcome{}, err
}

// verify checks c against the authenticators in order, through the store's cache and
// throttle: the first that claims the user decides; none claiming it, it is compared against
// the dummy hash, so that it costs what a known user does, and cached the same way.
//
// The cache outlives snapshots, and that is safe because a verdict is a pure function of its
// key: the key binds the authenticator's stamp (for the htpasswd file the stored hash, the
// user's whole entry after the colon). A user whose entry is byte for byte the same after a
// reload keeps the verdict; a changed password or hash format is a new key, so it is verified
// afresh; a removed user is compared against the dummy hash, a key whose verdict is always
// false. Groups and the policy are no part of a verdict: they are read from the snapshot of
// each request, so their changes take effect at once. An entry left behind by a changed user
// can never match again and ages out by TTL or eviction.
//
// The throttle counts an attempt on a cache miss only (a cache hit is one only the same
// client can have), before the authenticator runs, and takes it back when it proves the
// password or no verdict comes of it: past a limit, verify returns errThrottled with
// v.retryAfter set, and nothing is checked, however many attempts are in flight.
func (s *store) verify(ctx context.Context, snap *snapshot, c credential) (v verification, err error) {
	a := s.unknown
	stamp, _ := a.claims(snap, c.user)
	for _, candidate := range s.authenticators {
		if st, ok := candidate.claims(snap, c.user); ok {
			a, stamp = candidate, st
			break
		}
	}
	compute := func() (authOutcome, error) {
		attempt, retryAfter, ok := s.throttle.admit(c.client, a.nameKey(c.user))
		if !ok {
			return authOutcome{}, &throttledError{retryAfter}
		}
		start := time.Now()
		out, err := a.check(ctx, snap, c)
		if !checkNotRun(err) {
			s.metrics.verifyDuration.Observe(time.Since(start).Seconds())
		}
		if out.ok || err != nil {
			attempt.release() // no failed guess: a success, or no verdict at all
		}
		return out, err
	}
	out, hit, err := s.cache.get(s.credentialKey(c, stamp), compute)
	if hit {
		s.metrics.cacheHits.Inc()
	} else {
		s.metrics.cacheMisses.Inc()
	}
	v = verification{ok: out.ok && err == nil, known: out.known, cacheHit: hit, reason: out.reason}
	if err != nil { // not on a hit: errors.As's target would escape, an allocation a request
		if te := (*throttledError)(nil); errors.As(err, &te) {
			v.retryAfter = te.retryAfter
		}
	}
	if v.ok {
		// A name an earlier source knows is that source's alone: a directory entry found
		// under another spelling of a file user's name must not become that user, with the
		// groups and rules written for the file's account.
		for _, earlier := range s.authenticators {
			if earlier == a {
				break
			}
			if _, ok := earlier.claims(snap, out.user); ok {
				v.ok, v.shadowed = false, true
				v.id.User = out.user
				return v, nil
			}
		}
		v.id = snap.identityOf(out.user, out.groups...)
	}
	return v, err
}

// checkNotRun reports whether err says that a check gave up before it ran: no hashing slot
// came free, or the request ended while it waited.
func checkNotRun(err error) bool {
	return errors.Is(err, errHashBusy) || errors.Is(err, errRequestEnded)
}
