package main

import (
	"context"
	"errors"
	"time"

	"github.com/registry-auth/registry-auth/internal/authn"
	"github.com/registry-auth/registry-auth/internal/htpasswd"
)

// fileUsers decides for the users of one snapshot's htpasswd file; the loader builds one
// into each snapshot, over that snapshot's users.
type fileUsers struct{ users map[string]htpasswd.Entry }

// Claims: the stamp is the stored hash, so a changed password is a new cache key.
func (f fileUsers) Claims(user string) (string, bool) {
	e, ok := f.users[user]
	return e.Hash, ok
}

// NameKey is user itself: the file's names compare exactly, as in Apache.
func (fileUsers) NameKey(user string) string { return user }

func (f fileUsers) Check(_ context.Context, c authn.Credential) (authn.Outcome, error) {
	ok, err := htpasswd.Verify(f.users[c.User].Hash, c.Password)
	return authn.Outcome{OK: ok, Known: true, User: c.User}, err
}

func (fileUsers) hashes() {}

// unknownUsers decides for the users no other source claims: it compares against the
// snapshot's dummy hash, so that an unknown user costs what a known one does (its turn in
// the hashing budget included), and refuses.
type unknownUsers struct{ dummyHash string }

func (u unknownUsers) Claims(string) (string, bool) { return u.dummyHash, true }

// NameKey is user itself: no source compares it with anything.
func (unknownUsers) NameKey(user string) string { return user }

func (u unknownUsers) Check(_ context.Context, c authn.Credential) (authn.Outcome, error) {
	_, err := htpasswd.Verify(u.dummyHash, c.Password)
	return authn.Outcome{}, err
}

func (unknownUsers) hashes() {}

// hashing is an authenticator whose Check computes a slow password hash: verify runs it in
// the store's hashing budget, so that one client's burst cannot take every CPU. A directory
// bind takes no slot.
type hashing interface{ hashes() }

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
func (s *store) verify(ctx context.Context, snap *snapshot, c authn.Credential) (v verification, err error) {
	a, decides := snap.unknown, len(snap.authenticators) // decides: a's place in the order
	stamp, _ := a.Claims(c.User)
	for i, candidate := range snap.authenticators {
		if st, ok := candidate.Claims(c.User); ok {
			a, stamp, decides = candidate, st, i
			break
		}
	}
	compute := func() (authn.Outcome, error) {
		attempt, retryAfter, ok := s.throttle.admit(c.Client, a.NameKey(c.User))
		if !ok {
			return authn.Outcome{}, &throttledError{retryAfter}
		}
		start := time.Now()
		var out authn.Outcome
		var err error
		if _, slow := a.(hashing); slow {
			if busy := s.budget.run(ctx, c.Client, func() { out, err = a.Check(ctx, c) }); busy != nil {
				out, err = authn.Outcome{}, busy
			}
		} else {
			out, err = a.Check(ctx, c)
		}
		if !checkNotRun(err) {
			s.metrics.verifyDuration.Observe(time.Since(start).Seconds())
		}
		if out.OK || err != nil {
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
	v = verification{ok: out.OK && err == nil, known: out.Known, cacheHit: hit, reason: out.Reason}
	if v.ok && !out.Until.IsZero() && !s.now().Before(out.Until) {
		// Checked on every request, hits included: a verdict outlives no expiry.
		v.ok, v.reason = false, "expired"
	}
	if err != nil { // not on a hit: errors.As's target would escape, an allocation a request
		if te := (*throttledError)(nil); errors.As(err, &te) {
			v.retryAfter = te.retryAfter
		}
	}
	if v.ok {
		// A name an earlier source knows is that source's alone: a directory entry found
		// under another spelling of a file user's name must not become that user, with the
		// groups and rules written for the file's account.
		for _, earlier := range snap.authenticators[:decides] {
			if _, ok := earlier.Claims(out.User); ok {
				v.ok, v.shadowed = false, true
				v.id.User = out.User
				return v, nil
			}
		}
		v.id = snap.identityOf(out.User, out.Groups...)
		v.id.Scopes = out.Scopes
	}
	return v, err
}

// checkNotRun reports whether err says that a check gave up before it ran: no hashing slot
// came free, or the request ended while it waited.
func checkNotRun(err error) bool {
	return errors.Is(err, errHashBusy) || errors.Is(err, errRequestEnded)
}
