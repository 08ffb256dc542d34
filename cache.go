package main

import (
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/registry-auth/registry-auth/internal/authn"
)

// cacheKey identifies a credential: an HMAC over client address, user, password and stored hash.
type cacheKey [32]byte

// verifyCache remembers verdicts of password checks for ttl, at most size of them, and runs
// at most one check per key at a time: concurrent requests with the same credential wait for
// the first one's bcrypt instead of starting their own, even with a ttl of 0, which remembers
// nothing once a check is done. So a burst of one client's requests with one credential is
// one attempt for the throttle, not one per request. It is safe for concurrent use and takes
// no lock on a hit.
type verifyCache struct {
	ttl     time.Duration
	size    int64
	now     func() time.Time
	entries sync.Map // cacheKey -> *cacheEntry
	count   atomic.Int64
	waits   atomic.Int64 // lookups that waited for another's computation (tests read it)
}

// cacheEntry is one verdict, or one being computed until ready is closed.
type cacheEntry struct {
	ready   chan struct{}
	out     authn.Outcome
	err     error // a broken hash: not remembered
	expires time.Time
}

// newVerifyCache returns a cache; with ttl 0 it only shares checks in flight.
func newVerifyCache(ttl time.Duration, size int) *verifyCache {
	return &verifyCache{ttl: ttl, size: int64(size), now: time.Now}
}

// get returns the verdict for key, calling compute when there is none that is fresh. hit
// reports whether the verdict came from the cache (or from a computation already running).
func (c *verifyCache) get(key cacheKey, compute func() (authn.Outcome, error)) (out authn.Outcome, hit bool, err error) {
	for {
		// Load first: a hit, the common case, allocates nothing.
		v, found := c.entries.Load(key)
		if !found {
			fresh := &cacheEntry{ready: make(chan struct{})}
			if v, found = c.entries.LoadOrStore(key, fresh); !found {
				c.count.Add(1)
				c.fill(fresh, compute)
				if fresh.err != nil || fresh.out.Forget || c.ttl <= 0 {
					c.remove(key, fresh)
				}
				c.evictIfFull()
				return fresh.out, false, fresh.err
			}
		}
		e := v.(*cacheEntry)
		waited := false
		select {
		case <-e.ready:
		default: // another request is hashing this credential: wait for its verdict
			c.waits.Add(1)
			<-e.ready
			waited = true
		}
		if e.out.Forget {
			return e.out, false, e.err // a verdict not to remember counts as the waiter's own
		}
		// A verdict waited for is fresh whatever the ttl: it was computed for this request.
		if e.err == nil && (waited || c.now().Before(e.expires)) {
			return e.out, true, nil
		}
		if e.err != nil && !errors.Is(e.err, errRequestEnded) {
			return authn.Outcome{}, false, e.err // the computation we waited for failed
		}
		// Expired, or its request ended before it ran (the computer removed it): the next
		// round computes afresh for this one.
		c.remove(key, e)
	}
}

// fill computes e's verdict and releases its waiters, even if compute panics: a waiter
// must never hang on a computation that is gone. The panic becomes e's error.
func (c *verifyCache) fill(e *cacheEntry, compute func() (authn.Outcome, error)) {
	defer func() {
		if r := recover(); r != nil {
			e.out, e.err = authn.Outcome{}, fmt.Errorf("password verification panicked: %v", r)
		}
		e.expires = c.now().Add(c.ttl)
		close(e.ready)
	}()
	e.out, e.err = compute()
}

func (c *verifyCache) remove(key cacheKey, e *cacheEntry) {
	if c.entries.CompareAndDelete(key, e) {
		c.count.Add(-1)
	}
}

// evictIfFull drops expired entries, then arbitrary ones (sync.Map ranges in no set order),
// until the cache is back under seven eighths of its size, so eviction runs rarely.
func (c *verifyCache) evictIfFull() {
	if c.count.Load() <= c.size {
		return
	}
	target := c.size - c.size/8
	now := c.now()
	for _, expiredOnly := range []bool{true, false} {
		c.entries.Range(func(k, v any) bool {
			e := v.(*cacheEntry)
			select {
			case <-e.ready:
			default:
				return true // being computed: someone waits on it
			}
			if !expiredOnly || !now.Before(e.expires) {
				c.remove(k.(cacheKey), e)
			}
			return c.count.Load() > target
		})
		if c.count.Load() <= target {
			return
		}
	}
}

// len is the number of entries, for tests and metrics.
func (c *verifyCache) len() int {
	return int(c.count.Load())
}
