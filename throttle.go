package main

import (
	"errors"
	"fmt"
	"hash/maphash"
	"net/netip"
	"sync"
	"time"

	"github.com/registry-auth/registry-auth/internal/cli"
)

// errThrottled means too many recent failures: answered with 429 and no hash computed.
var errThrottled = errors.New("throttled")

// throttledError is errThrottled with how long the client should wait: verify's cache hands
// it to every request that waited on the refused computation.
type throttledError struct{ retryAfter time.Duration }

func (e *throttledError) Error() string        { return errThrottled.Error() }
func (e *throttledError) Is(target error) bool { return target == errThrottled }

// throttleConfig holds the failure limits. A limit of 0 turns that limit off.
type throttleConfig struct {
	window    time.Duration
	perClient int
	perUser   int
	maxKeys   int
}

// define adds the throttle's flags to fs. SECURITY.md explains the defaults.
func (c *throttleConfig) define(fs *cli.FlagSet) {
	fs.EnvDuration(&c.window, "throttle-window", 5*time.Minute, "sliding window over which failed logins are counted")
	fs.EnvInt(&c.perClient, "throttle-per-client", 50, "failed verifications allowed per client address (IPv6: per /64) per window; past it, 429 without hashing; 0 turns it off")
	fs.EnvInt(&c.perUser, "throttle-per-user", 30, "failed verifications allowed per user name per window; past it, 429 without hashing; 0 turns it off")
	fs.EnvInt(&c.maxKeys, "throttle-max-keys", 65536, "most client addresses, and most user names, tracked at once (bounds memory)")
}

func (c throttleConfig) validate() error {
	var errs []error
	if c.window <= 0 {
		errs = append(errs, fmt.Errorf("--throttle-window %v: want a positive duration such as 5m", c.window))
	}
	if c.perClient < 0 || c.perUser < 0 {
		errs = append(errs, errors.New("--throttle-per-client and --throttle-per-user: want 0 (off) or a positive number"))
	}
	if c.maxKeys < 1 {
		errs = append(errs, fmt.Errorf("--throttle-max-keys %d: want at least 1", c.maxKeys))
	}
	return errors.Join(errs...)
}

// throttle counts failed verifications per client address and per user name in a sliding
// window (two fixed buckets, the older weighted by how much of it still lies in the window).
//
// An attempt is counted when it starts, before its hash runs (admit), and taken back when it
// proves the password or runs no check at all (attempt.release): a failure is simply an
// attempt that is never released. So however many guesses arrive at once, at most limit of
// them are admitted per key and window; the rest are refused without hashing. The throttle is
// asked only on a cache miss, so a credential whose verdict is cached never meets it and its
// mutex stays off the path of a cached success.
//
// Keys are seeded 64-bit hashes of the address or name: a user name is whatever the client
// sends (up to the header limit), and storing it would let long names grow memory far beyond
// maxKeys entries' worth. Each map holds at most maxKeys entries.
//
// A nil *throttle never throttles. It is safe for concurrent use.
type throttle struct {
	cfg     throttleConfig
	now     func() time.Time
	seed    maphash.Seed
	mu      sync.Mutex
	clients map[uint64]*failureCount
	users   map[uint64]*failureCount
}

// failureCount is one key's two buckets: current began at start, previous just before it.
type failureCount struct {
	start             time.Time
	current, previous int
}

// newThrottle returns a throttle for c, or nil when both limits are off.
func newThrottle(c throttleConfig) *throttle {
	if c.perClient == 0 && c.perUser == 0 {
		return nil
	}
	return &throttle{
		cfg:     c,
		now:     time.Now,
		seed:    maphash.MakeSeed(),
		clients: make(map[uint64]*failureCount),
		users:   make(map[uint64]*failureCount),
	}
}

// clientKey and userKey map an address or a name to its key in clients or users.
func (t *throttle) clientKey(client string) uint64 {
	return maphash.String(t.seed, clientPrefix(client))
}
func (t *throttle) userKey(user string) uint64 { return maphash.String(t.seed, user) }

// clientPrefix is the part of an address that identifies one client: the whole IPv4
// address, but the /64 of an IPv6 one, since a single host or site is routinely given a whole
// /64 and could otherwise rotate through 2^64 addresses. Anything else is used as it is.
func clientPrefix(addr string) string {
	ip, err := netip.ParseAddr(addr)
	if err != nil {
		return addr
	}
	ip = ip.WithZone("").Unmap()
	if ip.Is6() {
		p, _ := ip.Prefix(64) // cannot fail for an IPv6 address without a zone
		return p.String()
	}
	return ip.String()
}

// attempt is one verification counted by admit; the zero attempt counts nothing.
type attempt struct {
	t            *throttle
	client, user uint64
	counted      time.Time
}

// admit counts an attempt for client and the user name (as the authenticator that decides
// for it compares names) before its verification runs. When either count has reached its
// limit it counts nothing and returns ok false, with how long until the count drops below
// the limit without new failures.
func (t *throttle) admit(client, user string) (a attempt, retryAfter time.Duration, ok bool) {
	if t == nil {
		return attempt{}, 0, true
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	now := t.now()
	a = attempt{t: t, client: t.clientKey(client), user: t.userKey(user), counted: now}
	for _, check := range []struct {
		counts map[uint64]*failureCount
		key    uint64
		limit  int
	}{{t.clients, a.client, t.cfg.perClient}, {t.users, a.user, t.cfg.perUser}} {
		if check.limit == 0 {
			continue
		}
		if fc := check.counts[check.key]; fc != nil {
			retryAfter = max(retryAfter, fc.waitBelow(now, t.cfg.window, check.limit))
		}
	}
	if retryAfter > 0 {
		return attempt{}, retryAfter, false
	}
	if t.cfg.perClient > 0 {
		t.record(t.clients, a.client, now)
	}
	if t.cfg.perUser > 0 {
		t.record(t.users, a.user, now)
	}
	return a, 0, true
}

// release takes a back out of the counts: it proved the password, or no check ran (the
// source was unavailable, no hashing slot came free). An attempt is released at most once.
func (a attempt) release() {
	if a.t == nil {
		return
	}
	t := a.t
	t.mu.Lock()
	defer t.mu.Unlock()
	now := t.now()
	// The limits never change, so they say which counts admit recorded a in.
	if t.cfg.perClient > 0 {
		t.uncount(t.clients, a.client, a.counted, now)
	}
	if t.cfg.perUser > 0 {
		t.uncount(t.users, a.user, a.counted, now)
	}
}

// uncount removes one attempt counted at counted from key's buckets, from whichever bucket
// holds that time now; nothing when it has left the window or the key was evicted.
func (t *throttle) uncount(counts map[uint64]*failureCount, key uint64, counted, now time.Time) {
	fc := counts[key]
	if fc == nil {
		return
	}
	fc.roll(now, t.cfg.window)
	switch {
	case !counted.Before(fc.start):
		fc.current = max(0, fc.current-1)
	case !counted.Before(fc.start.Add(-t.cfg.window)):
		fc.previous = max(0, fc.previous-1)
	}
}

func (t *throttle) record(counts map[uint64]*failureCount, key uint64, now time.Time) {
	fc := counts[key]
	if fc == nil {
		if len(counts) >= t.cfg.maxKeys {
			t.evict(counts, now)
		}
		fc = &failureCount{start: now}
		counts[key] = fc
	}
	fc.roll(now, t.cfg.window)
	fc.current++
}

// evict makes room: first keys with nothing left in the window, then, under a flood of
// distinct keys, arbitrary ones (map order is random), a sixteenth of the table at a time so
// that the full scan runs once per maxKeys/16 new keys.
func (t *throttle) evict(counts map[uint64]*failureCount, now time.Time) {
	for k, fc := range counts {
		if now.Sub(fc.start) >= 2*t.cfg.window {
			delete(counts, k)
		}
	}
	for k := range counts {
		if len(counts) < t.cfg.maxKeys-t.cfg.maxKeys/16 {
			break
		}
		delete(counts, k)
	}
}

// roll moves the buckets forward so that current covers now.
func (fc *failureCount) roll(now time.Time, window time.Duration) {
	switch elapsed := now.Sub(fc.start); {
	case elapsed >= 2*window:
		fc.previous, fc.current, fc.start = 0, 0, now
	case elapsed >= window:
		fc.previous, fc.current, fc.start = fc.current, 0, fc.start.Add(window)
	}
}

// estimate is the number of failures in the window ending at now: all of current, and the
// share of previous that still lies in the window.
func (fc *failureCount) estimate(now time.Time, window time.Duration) float64 {
	fc.roll(now, window)
	weight := 1 - float64(now.Sub(fc.start))/float64(window)
	return float64(fc.previous)*weight + float64(fc.current)
}

// waitBelow is how long, without new failures, until the estimate drops below limit (0 if
// it already is).
func (fc *failureCount) waitBelow(now time.Time, window time.Duration, limit int) time.Duration {
	if fc.estimate(now, window) < float64(limit) {
		return 0
	}
	w, prev, cur, lim := float64(window), float64(fc.previous), float64(fc.current), float64(limit)
	// at is the offset from fc.start where the estimate reaches limit.
	var at float64
	if cur < lim {
		// Within this bucket (prev > 0 here, or the estimate would be below the limit):
		// prev*(1-at/w) + cur = lim.
		at = w * (1 - (lim-cur)/prev)
	} else {
		// Only after the roll-over, when current becomes the decaying bucket:
		// cur*(1-(at-w)/w) = lim.
		at = w + w*(1-lim/cur)
	}
	// Rounded up to the millisecond, so that float rounding never leaves us on the limit.
	wait := time.Duration(at) - now.Sub(fc.start)
	return (wait/time.Millisecond + 1) * time.Millisecond
}
