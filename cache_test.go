package main

import (
	"errors"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/registry-auth/registry-auth/internal/authn"
)

func key(b byte) cacheKey { return cacheKey{b} }

// TestCacheSingleFlight: requests with the same credential while its hash runs wait for that
// one computation instead of starting their own.
func TestCacheSingleFlight(t *testing.T) {
	t.Parallel()
	c := newVerifyCache(time.Minute, 10)
	var calls atomic.Int32
	started, release := make(chan struct{}), make(chan struct{})
	compute := func() (authn.Outcome, error) {
		if calls.Add(1) == 1 {
			close(started)
			<-release
		}
		return authn.Outcome{OK: true}, nil
	}
	results := make(chan bool, 20)
	go func() {
		out, _, _ := c.get(key(1), compute)
		results <- out.OK
	}()
	<-started // the first computation now holds the key
	var wg sync.WaitGroup
	for range 19 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			out, hit, _ := c.get(key(1), compute)
			if !hit {
				t.Error("got a miss while a computation was running, want a hit")
			}
			results <- out.OK
		}()
	}
	// Every other request must have found the running computation before it ends; otherwise
	// a late one would hit the finished entry and prove nothing about single flight.
	waitFor(t, 10*time.Second, "19 requests waiting on the computation", func() bool { return c.waits.Load() == 19 })
	close(release)
	wg.Wait()
	for range 20 {
		if !<-results {
			t.Fatal("got false, want true")
		}
	}
	if n := calls.Load(); n != 1 {
		t.Errorf("got %d computations, want 1", n)
	}
}

// TestCacheExpiry: a verdict is reused until its TTL, then computed again.
func TestCacheExpiry(t *testing.T) {
	t.Parallel()
	now := time.Unix(1000, 0)
	c := newVerifyCache(time.Minute, 10)
	c.now = func() time.Time { return now }
	calls := 0
	compute := func() (authn.Outcome, error) { calls++; return authn.Outcome{}, nil }
	for _, tt := range []struct {
		advance time.Duration
		hit     bool
	}{
		{0, false},               // first check computes
		{59 * time.Second, true}, // within TTL
		{time.Second, false},     // exactly at expiry: recomputed
		{30 * time.Second, true}, // the new verdict is fresh
	} {
		now = now.Add(tt.advance)
		_, hit, _ := c.get(key(1), compute)
		if hit != tt.hit {
			t.Errorf("after +%v: got hit %v, want %v", tt.advance, hit, tt.hit)
		}
	}
	if calls != 2 {
		t.Errorf("got %d computations, want 2", calls)
	}
}

// TestCacheBounded: the cache never holds much more than its size.
func TestCacheBounded(t *testing.T) {
	t.Parallel()
	c := newVerifyCache(time.Minute, 100)
	for i := range 1000 {
		c.get(cacheKey{byte(i), byte(i >> 8)}, func() (authn.Outcome, error) { return authn.Outcome{OK: true}, nil })
		if c.len() > 100 {
			t.Fatalf("after %d inserts: got %d entries, want at most 100", i+1, c.len())
		}
	}
}

// TestCachePanicReleasesWaiters: a computation that panics becomes an error for everyone
// waiting on it, and is not remembered.
func TestCachePanicReleasesWaiters(t *testing.T) {
	t.Parallel()
	c := newVerifyCache(time.Minute, 10)
	started, release := make(chan struct{}), make(chan struct{})
	waiter := make(chan error, 1)
	go func() {
		_, _, err := c.get(key(1), func() (authn.Outcome, error) {
			close(started)
			<-release
			panic("boom")
		})
		waiter <- err
	}()
	<-started
	go func() {
		_, _, err := c.get(key(1), func() (authn.Outcome, error) { return authn.Outcome{OK: true}, nil })
		waiter <- err
	}()
	waitFor(t, 10*time.Second, "the second request to wait", func() bool { return c.waits.Load() == 1 })
	close(release)
	for range 2 {
		if err := <-waiter; err == nil || !strings.Contains(err.Error(), "panicked") {
			t.Errorf("got %v, want the panic as an error", err)
		}
	}
	if out, hit, err := c.get(key(1), func() (authn.Outcome, error) { return authn.Outcome{OK: true}, nil }); !out.OK || hit || err != nil {
		t.Errorf("after the panic: got ok=%v hit=%v err=%v, want a fresh computation", out.OK, hit, err)
	}
}

// TestCacheErrorsNotRemembered: a broken hash is reported every time, never cached.
func TestCacheErrorsNotRemembered(t *testing.T) {
	t.Parallel()
	c := newVerifyCache(time.Minute, 10)
	broken := errors.New("broken hash")
	for range 2 {
		_, hit, err := c.get(key(1), func() (authn.Outcome, error) { return authn.Outcome{}, broken })
		if !errors.Is(err, broken) || hit {
			t.Errorf("got hit=%v err=%v, want miss with the error", hit, err)
		}
	}
	if c.len() != 0 {
		t.Errorf("got %d entries, want 0", c.len())
	}
}

// TestCacheOff: ttl 0 gives a nil cache that computes every time.
func TestCacheOff(t *testing.T) {
	t.Parallel()
	c := newVerifyCache(0, 10)
	calls := 0
	for range 3 {
		if _, hit, _ := c.get(key(1), func() (authn.Outcome, error) { calls++; return authn.Outcome{OK: true}, nil }); hit {
			t.Error("got a hit with the cache off")
		}
	}
	if calls != 3 {
		t.Errorf("got %d computations, want 3", calls)
	}
}

// TestCacheForget: a verdict marked forget (a directory's failure) is computed every time.
func TestCacheForget(t *testing.T) {
	t.Parallel()
	c := newVerifyCache(time.Minute, 10)
	calls := 0
	for range 3 {
		if _, hit, _ := c.get(key(1), func() (authn.Outcome, error) { calls++; return authn.Outcome{Forget: true}, nil }); hit {
			t.Error("got a hit for a verdict marked forget")
		}
	}
	if calls != 3 || c.len() != 0 {
		t.Errorf("got %d computations and %d entries, want 3 and 0", calls, c.len())
	}
}
