package main

import (
	"errors"
	"fmt"
	"sync"
	"time"
)

// errThrottled means too many recent failures: answered with 429 and no hash computed.
var errThrottled = errors.New("throttled")

// throttleConfig holds the failure limits. A limit of 0 turns that limit off.
type throttleConfig struct {
	window    time.Duration
	perClient int
	perUser   int
	maxKeys   int
}

// define adds the throttle's flags to fs.
func (c *throttleConfig) define(fs *envFlagSet) {
	fs.durationVar(&c.window, "throttle-window", 5*time.Minute, "sliding window over which failed logins are counted")
	fs.intVar(&c.perClient, "throttle-per-client", 50, "failed verifications allowed per client address per window before 429; 0 turns it off")
	fs.intVar(&c.perUser, "throttle-per-user", 30, "failed verifications allowed per user name per window before 429; 0 turns it off")
	fs.intVar(&c.maxKeys, "throttle-max-keys", 65536, "most client addresses and user names tracked at once (bounds memory)")
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
// Only failures are recorded, and only on the failure path and before a hash is computed is
// it consulted, so its mutex stays off the path of a cached success. A nil *throttle never
// throttles. It is safe for concurrent use.
type throttle struct {
	cfg     throttleConfig
	now     func() time.Time
	mu      sync.Mutex
	clients map[string]*failureCount
	users   map[string]*failureCount
}

// failureCount is one key's two buckets: current began at start, previous just before it.
type failureCount struct {
	start             time.Time
	current, previous int
}

func newThrottle(c throttleConfig) *throttle {
	if c.perClient == 0 && c.perUser == 0 {
		return nil
	}
	return &throttle{
		cfg:     c,
		now:     time.Now,
		clients: make(map[string]*failureCount),
		users:   make(map[string]*failureCount),
	}
}

// blocked reports whether client or user has used up its failures, and when to retry.
func (t *throttle) blocked(client, user string) (retryAfter time.Duration, blocked bool) {
	if t == nil {
		return 0, false
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	now := t.now()
	for _, check := range []struct {
		counts map[string]*failureCount
		key    string
		limit  int
	}{{t.clients, client, t.cfg.perClient}, {t.users, user, t.cfg.perUser}} {
		if check.limit == 0 {
			continue
		}
		if fc := check.counts[check.key]; fc != nil {
			if wait := fc.waitBelow(now, t.cfg.window, check.limit); wait > retryAfter {
				retryAfter = wait
			}
		}
	}
	return retryAfter, retryAfter > 0
}

// fail records one failed verification for client and user.
func (t *throttle) fail(client, user string) {
	if t == nil {
		return
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	now := t.now()
	if t.cfg.perClient > 0 {
		t.record(t.clients, client, now)
	}
	if t.cfg.perUser > 0 {
		t.record(t.users, user, now)
	}
}

func (t *throttle) record(counts map[string]*failureCount, key string, now time.Time) {
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
// distinct keys, arbitrary ones (map order is random), a sixteenth of the table at a time.
func (t *throttle) evict(counts map[string]*failureCount, now time.Time) {
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

// estimate is the number of failures in the window ending at now.
func (fc *failureCount) estimate(now time.Time, window time.Duration) float64 {
	fc.roll(now, window)
	weight := 1 - float64(now.Sub(fc.start))/float64(window)
	return float64(fc.previous)*weight + float64(fc.current)
}

// waitBelow is how long until the estimate drops below limit (0 if it already is).
func (fc *failureCount) waitBelow(now time.Time, window time.Duration, limit int) time.Duration {
	if fc.estimate(now, window) < float64(limit) {
		return 0
	}
	elapsed := now.Sub(fc.start)
	if fc.current >= limit || fc.previous == 0 {
		// Only the roll-over empties current; after it, this bucket is the decaying one.
		return window - elapsed + 1
	}
	// previous*(1-(elapsed+x)/window) + current < limit
	need := float64(window) * (1 - float64(limit-fc.current)/float64(fc.previous))
	if wait := time.Duration(need) - elapsed + 1; wait > 0 {
		return wait
	}
	return time.Millisecond
}
