package main

import (
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/registry-auth/registry-auth/internal/authn"
	"github.com/registry-auth/registry-auth/internal/cli"
)

// throttleClock is a settable time for the throttle's now: no test here sleeps.
type throttleClock struct {
	mu sync.Mutex
	t  time.Time
}

func newThrottleClock() *throttleClock {
	return &throttleClock{t: time.Date(2026, 1, 1, 12, 0, 0, 0, time.UTC)}
}

func (c *throttleClock) now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *throttleClock) advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

// newClockedThrottle returns a throttle for c on a settable clock.
func newClockedThrottle(t *testing.T, c throttleConfig) (*throttle, *throttleClock) {
	t.Helper()
	th := newThrottle(c)
	if th == nil {
		t.Fatalf("newThrottle(%+v) = nil", c)
	}
	clock := newThrottleClock()
	th.now = clock.now
	return th, clock
}

// TestThrottleTripsAtLimit: limit failures are allowed, the next attempt is blocked, and
// each limit counts only its own key.
func TestThrottleTripsAtLimit(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name      string
		cfg       throttleConfig
		fail      func(i int) (client, user string) // the i-th failure
		blockedAt []string                          // client/user pairs blocked after limit failures
		freeAt    []string                          // pairs still free
	}{
		{
			name:      "per client, rotating user names",
			cfg:       throttleConfig{window: time.Minute, perClient: 5, maxKeys: 100},
			fail:      func(i int) (string, string) { return "192.0.2.1", fmt.Sprintf("user%d", i) },
			blockedAt: []string{"192.0.2.1/alice", "192.0.2.1/user0"},
			freeAt:    []string{"192.0.2.2/alice", "192.0.2.2/user0"},
		},
		{
			name:      "per user, rotating clients",
			cfg:       throttleConfig{window: time.Minute, perUser: 5, maxKeys: 100},
			fail:      func(i int) (string, string) { return fmt.Sprintf("192.0.2.%d", i), "alice" },
			blockedAt: []string{"198.51.100.1/alice", "192.0.2.0/alice"},
			freeAt:    []string{"192.0.2.0/bob", "198.51.100.1/bob"},
		},
		{
			name:      "both limits, the smaller trips first",
			cfg:       throttleConfig{window: time.Minute, perClient: 5, perUser: 50, maxKeys: 100},
			fail:      func(int) (string, string) { return "192.0.2.1", "alice" },
			blockedAt: []string{"192.0.2.1/alice", "192.0.2.1/bob"},
			freeAt:    []string{"192.0.2.2/alice"},
		},
		{
			name:      "IPv6 clients count per /64",
			cfg:       throttleConfig{window: time.Minute, perClient: 5, maxKeys: 100},
			fail:      func(i int) (string, string) { return fmt.Sprintf("2001:db8:0:1::%x", i+1), "alice" },
			blockedAt: []string{"2001:db8:0:1:ffff:ffff:ffff:ffff/alice", "2001:db8:0:1::1/alice"},
			freeAt:    []string{"2001:db8:0:2::1/alice", "192.0.2.1/alice"},
		},
		{
			name:      "IPv4-mapped IPv6 is the IPv4 client",
			cfg:       throttleConfig{window: time.Minute, perClient: 5, maxKeys: 100},
			fail:      func(int) (string, string) { return "::ffff:192.0.2.1", "alice" },
			blockedAt: []string{"192.0.2.1/alice"},
			freeAt:    []string{"192.0.2.2/alice"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			th, _ := newClockedThrottle(t, tt.cfg)
			limit := max(tt.cfg.perClient, tt.cfg.perUser)
			if tt.cfg.perClient > 0 && tt.cfg.perUser > 0 {
				limit = min(tt.cfg.perClient, tt.cfg.perUser)
			}
			for i := range limit {
				client, user := tt.fail(i)
				if _, blocked := wouldRefuse(th, client, user); blocked {
					t.Fatalf("failure %d of %d: got blocked before the limit", i+1, limit)
				}
				fail(th, client, user)
			}
			for _, pair := range tt.blockedAt {
				client, user, _ := strings.Cut(pair, "/")
				if wait, blocked := wouldRefuse(th, client, user); !blocked || wait <= 0 {
					t.Errorf("%s after %d failures: got blocked %v (wait %v), want blocked", pair, limit, blocked, wait)
				}
			}
			for _, pair := range tt.freeAt {
				client, user, _ := strings.Cut(pair, "/")
				if _, blocked := wouldRefuse(th, client, user); blocked {
					t.Errorf("%s: got blocked, want free", pair)
				}
			}
		})
	}
}

// TestThrottleOff: a limit of 0 turns it off, both off means no throttle at all, and a nil
// throttle never blocks.
func TestThrottleOff(t *testing.T) {
	t.Parallel()
	if th := newThrottle(throttleConfig{window: time.Minute, maxKeys: 10}); th != nil {
		t.Errorf("both limits 0: got a throttle, want nil")
	}
	var none *throttle
	fail(none, "192.0.2.1", "alice")
	if _, blocked := wouldRefuse(none, "192.0.2.1", "alice"); blocked {
		t.Error("nil throttle blocked")
	}
	th, _ := newClockedThrottle(t, throttleConfig{window: time.Minute, perUser: 3, maxKeys: 10})
	for range 100 {
		fail(th, "192.0.2.1", fmt.Sprint(rand.Int()))
	}
	if _, blocked := wouldRefuse(th, "192.0.2.1", "alice"); blocked {
		t.Error("per-client limit 0: got blocked by client failures")
	}
	if len(th.clients) != 0 {
		t.Errorf("per-client limit 0: got %d clients tracked, want 0", len(th.clients))
	}
}

// TestThrottleWindowSlides follows one key through the sliding window: failures age out
// gradually, and Retry-After is exactly when the next attempt is allowed.
func TestThrottleWindowSlides(t *testing.T) {
	t.Parallel()
	const window = time.Minute
	th, clock := newClockedThrottle(t, throttleConfig{window: window, perUser: 4, maxKeys: 10})
	isBlocked := func() bool { _, b := wouldRefuse(th, "192.0.2.1", "alice"); return b }
	fail := func(n int) {
		for range n {
			fail(th, "192.0.2.1", "alice")
		}
	}
	// The window is two buckets of one window each, the first starting at the key's first
	// failure; the older bucket counts with the share of it still inside the window.
	steps := []struct {
		advance time.Duration
		fail    int
		blocked bool
		why     string
	}{
		{0, 3, false, "t=0: 3 of 4 failures"},
		{10 * time.Second, 1, true, "t=10s: the 4th failure trips the limit"},
		{45 * time.Second, 0, true, "t=55s: all 4 still in the window"},
		{20 * time.Second, 0, false, "t=75s: a new bucket; the old one counts 4*45/60 = 3"},
		{0, 1, true, "t=75s: 3 + 1 new = 4"},
		{30 * time.Second, 0, false, "t=105s: 4*15/60 + 1 = 2"},
		{0, 2, true, "t=105s: 1 + 3 new = 4"},
		{20 * time.Second, 0, false, "t=125s: next bucket; the 3 of the last one count 3*55/60"},
		{2 * window, 0, false, "t=245s: everything aged out"},
		{0, 3, false, "a fresh start: 3 failures"},
		{0, 1, true, "and the 4th trips again"},
	}
	for i, s := range steps {
		clock.advance(s.advance)
		fail(s.fail)
		if got := isBlocked(); got != s.blocked {
			t.Fatalf("step %d (%s): got blocked %v, want %v", i, s.why, got, s.blocked)
		}
	}
}

// TestThrottleRetryAfterIsExact checks waitBelow against random histories: still blocked
// 2 ms before the wait it announces, free when it has passed.
func TestThrottleRetryAfterIsExact(t *testing.T) {
	t.Parallel()
	rng := rand.New(rand.NewPCG(1, 2))
	const window = 5 * time.Minute
	checked := 0
	for history := range 500 {
		limit := 1 + rng.IntN(20)
		th, clock := newClockedThrottle(t, throttleConfig{window: window, perClient: limit, maxKeys: 10})
		for range rng.IntN(4 * limit) {
			clock.advance(time.Duration(rng.Int64N(int64(window / 4))))
			fail(th, "192.0.2.1", "alice")
		}
		wait, blocked := wouldRefuse(th, "192.0.2.1", "alice")
		if !blocked {
			continue
		}
		checked++
		if wait > 2*window {
			t.Fatalf("history %d: wait %v is longer than two windows", history, wait)
		}
		if wait > 2*time.Millisecond {
			clock.advance(wait - 2*time.Millisecond)
			if _, still := wouldRefuse(th, "192.0.2.1", "alice"); !still {
				t.Fatalf("history %d (limit %d): free 2 ms before the announced wait %v", history, limit, wait)
			}
			clock.advance(2 * time.Millisecond)
		} else {
			clock.advance(wait)
		}
		if again, still := wouldRefuse(th, "192.0.2.1", "alice"); still {
			t.Fatalf("history %d (limit %d): still blocked (for %v more) after the announced wait %v", history, limit, again, wait)
		}
	}
	if checked < 100 {
		t.Fatalf("only %d of 500 random histories ended blocked; the test checks too little", checked)
	}
}

// TestThrottleMemoryBounded: a flood of 100,000 distinct addresses and user names (long
// ones) never grows either table past maxKeys, and keys are fixed-size hashes, so the bytes a
// client sends are never kept.
func TestThrottleMemoryBounded(t *testing.T) {
	t.Parallel()
	cfg, err := parseServeConfig(cli.Env{LookupEnv: func(string) (string, bool) { return "", false }, Stdout: io.Discard, Stderr: io.Discard}, nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, maxKeys := range []int{cfg.throttle.maxKeys, 1000, 1} {
		t.Run(fmt.Sprintf("maxKeys=%d", maxKeys), func(t *testing.T) {
			t.Parallel()
			c := cfg.throttle
			c.maxKeys = maxKeys
			th, clock := newClockedThrottle(t, c)
			long := strings.Repeat("x", 1024)
			for i := range 100_000 {
				if i%1000 == 0 {
					clock.advance(time.Second) // a flood spread over time, so some keys age out
				}
				fail(th, fmt.Sprintf("10.%d.%d.%d", i>>16, (i>>8)&255, i&255), long+strconv.Itoa(i))
				if len(th.clients) > maxKeys || len(th.users) > maxKeys {
					t.Fatalf("after %d keys: got %d clients and %d users tracked, want at most %d", i+1, len(th.clients), len(th.users), maxKeys)
				}
			}
			if maxKeys >= 1000 && len(th.clients) < maxKeys/2 {
				t.Errorf("got %d clients tracked, want the table used (at least %d)", len(th.clients), maxKeys/2)
			}
		})
	}
}

// newThrottledHandler is the /auth handler over alice (pusher, password alice-secret) and bob
// (reader, bob-secret) with the given throttle on a settable clock.
func newThrottledHandler(t *testing.T, c throttleConfig, cacheTTL time.Duration) (*authHandler, *throttleClock) {
	t.Helper()
	f := newTestFiles(t, htpasswdLines(t, "alice", "alice-secret", "bob", "bob-secret"), "pusher: alice\n")
	st, m := newTestStore(t, f, cacheTTL, nil)
	th := newThrottle(c)
	clock := newThrottleClock()
	if th != nil {
		th.now = clock.now
	}
	h := testAuthHandler(st, m, nil)
	h.store.throttle = th
	return h, clock
}

// askAs sends one forwardAuth request for a pull, as Traefik would for client.
func askAs(h http.Handler, client, method, uri, user, password string) *http.Response {
	r := httptest.NewRequest("GET", "/auth", nil)
	r.RemoteAddr = "10.0.0.2:40000" // Traefik
	r.Header.Set("X-Forwarded-For", client)
	r.Header.Set("X-Forwarded-Method", method)
	r.Header.Set("X-Forwarded-Uri", uri)
	if user != "" {
		r.Header.Set("Authorization", basic(user, password))
	}
	w := httptest.NewRecorder()
	h.ServeHTTP(w, r)
	return w.Result()
}

// TestThrottle429 goes through the handler: the answer past the limit is a registry 429, it
// runs no hash (the verification histogram does not move), and it ends when Retry-After says.
func TestThrottle429(t *testing.T) {
	t.Parallel()
	const limit = 4
	for _, cacheTTL := range []time.Duration{0, time.Minute} {
		t.Run("cache-ttl="+cacheTTL.String(), func(t *testing.T) {
			t.Parallel()
			h, clock := newThrottledHandler(t, throttleConfig{window: time.Minute, perClient: limit, maxKeys: 100}, cacheTTL)
			for i := range limit {
				resp := askAs(h, "203.0.113.5", "GET", "/v2/", "alice", fmt.Sprintf("guess-%d", i))
				if resp.StatusCode != 401 {
					t.Fatalf("guess %d: got %d, want 401", i+1, resp.StatusCode)
				}
			}
			if got := histogramCount(t, h.metrics); got != limit {
				t.Fatalf("got %d hashes for %d guesses, want one each", got, limit)
			}
			var retryAfter int
			for _, password := range []string{"guess-next", "alice-secret"} {
				resp := askAs(h, "203.0.113.5", "GET", "/v2/", "alice", password)
				body, _ := io.ReadAll(resp.Body)
				if resp.StatusCode != 429 {
					t.Fatalf("password %q past the limit: got %d, want 429", password, resp.StatusCode)
				}
				if want := `{"errors":[{"code":"TOOMANYREQUESTS","message":"too many failed login attempts, retry later"}]}` + "\n"; string(body) != want {
					t.Errorf("got body %q, want %q", body, want)
				}
				for header, want := range map[string]string{
					"Docker-Distribution-Api-Version": "registry/2.0",
					"Content-Type":                    "application/json",
					"WWW-Authenticate":                "",
					"X-Forwarded-User":                "",
				} {
					if got := resp.Header.Get(header); got != want {
						t.Errorf("got %s %q, want %q", header, got, want)
					}
				}
				n, err := strconv.Atoi(resp.Header.Get("Retry-After"))
				// All 4 failures came at once: free just after one window, 61 s in whole seconds.
				if err != nil || n != 61 {
					t.Errorf("got Retry-After %q, want 61", resp.Header.Get("Retry-After"))
				}
				retryAfter = n
			}
			// A guess already refused is answered from the cache when there is one: it costs
			// nothing and teaches nothing, so it is not throttled.
			throttled := 2.0
			resp := askAs(h, "203.0.113.5", "GET", "/v2/", "alice", "guess-0")
			if want := map[bool]int{true: 401, false: 429}[cacheTTL > 0]; resp.StatusCode != want {
				t.Errorf("replayed guess: got %d, want %d", resp.StatusCode, want)
			}
			if cacheTTL == 0 {
				throttled++
			}
			if got := histogramCount(t, h.metrics); got != limit {
				t.Errorf("got %d hashes, want still %d: a 429 must not hash", got, limit)
			}
			wantMetrics(t, h.metrics, map[string]float64{
				"registry_auth_throttled_total": throttled,
				`registry_auth_decisions_total{reason="too_many_failures",result="throttled"}`: throttled,
			})
			// Another client is not affected, and after Retry-After this one may try again.
			if resp := askAs(h, "203.0.113.6", "GET", "/v2/", "alice", "alice-secret"); resp.StatusCode != 200 {
				t.Errorf("other client: got %d, want 200", resp.StatusCode)
			}
			clock.advance(time.Duration(retryAfter) * time.Second)
			if resp := askAs(h, "203.0.113.5", "GET", "/v2/", "alice", "alice-secret"); resp.StatusCode != 200 {
				t.Errorf("after Retry-After: got %d, want 200", resp.StatusCode)
			}
		})
	}
}

// TestThrottlePerUserName: guesses at one name from many addresses are throttled by name,
// unknown names included, without touching other names.
func TestThrottlePerUserName(t *testing.T) {
	t.Parallel()
	h, _ := newThrottledHandler(t, throttleConfig{window: time.Minute, perUser: 3, maxKeys: 100}, time.Minute)
	for _, user := range []string{"alice", "nobody"} {
		for i := range 3 {
			client := fmt.Sprintf("198.51.100.%d", i+1)
			if resp := askAs(h, client, "GET", "/v2/", user, fmt.Sprint("guess", i)); resp.StatusCode != 401 {
				t.Fatalf("%s guess %d: got %d, want 401", user, i+1, resp.StatusCode)
			}
		}
		if resp := askAs(h, "198.51.100.99", "GET", "/v2/", user, "another-guess"); resp.StatusCode != 429 {
			t.Errorf("%s from a fresh address past the limit: got %d, want 429", user, resp.StatusCode)
		}
	}
	if resp := askAs(h, "198.51.100.1", "GET", "/v2/", "bob", "bob-secret"); resp.StatusCode != 200 {
		t.Errorf("bob from a guessing address: got %d, want 200", resp.StatusCode)
	}
}

// TestThrottleSparesCachedSuccess: a credential whose success is cached is answered from the
// cache, however many failures its client and name have; what is not cached cannot be told
// apart from a guess without hashing, so it waits like one.
func TestThrottleSparesCachedSuccess(t *testing.T) {
	t.Parallel()
	h, _ := newThrottledHandler(t, throttleConfig{window: time.Minute, perClient: 3, perUser: 3, maxKeys: 100}, time.Minute)
	if resp := askAs(h, "203.0.113.5", "GET", "/v2/", "alice", "alice-secret"); resp.StatusCode != 200 {
		t.Fatalf("first login: got %d, want 200", resp.StatusCode)
	}
	for i := range 3 { // an attacker on the same address, against the same name
		askAs(h, "203.0.113.5", "GET", "/v2/", "alice", fmt.Sprint("guess", i))
	}
	if resp := askAs(h, "203.0.113.5", "GET", "/v2/", "alice", "guess-more"); resp.StatusCode != 429 {
		t.Fatalf("guess past both limits: got %d, want 429", resp.StatusCode)
	}
	hashes := histogramCount(t, h.metrics)
	for i := range 20 {
		if resp := askAs(h, "203.0.113.5", "PUT", "/v2/app/manifests/1", "alice", "alice-secret"); resp.StatusCode != 200 {
			t.Fatalf("cached success %d: got %d, want 200", i+1, resp.StatusCode)
		}
	}
	if got := histogramCount(t, h.metrics); got != hashes {
		t.Errorf("got %d hashes, want %d: cached successes hash nothing", got, hashes)
	}
	// bob was never verified on this address: not cached, so the client limit applies.
	if resp := askAs(h, "203.0.113.5", "GET", "/v2/", "bob", "bob-secret"); resp.StatusCode != 429 {
		t.Errorf("uncached good credential from a throttled address: got %d, want 429", resp.StatusCode)
	}
}

// TestThrottleNoOracleFromOthersCache: a success cached for the real user's address does not
// answer a throttled attacker elsewhere, who would otherwise tell the right password (200)
// from wrong ones (429) at HTTP speed, without a hash.
func TestThrottleNoOracleFromOthersCache(t *testing.T) {
	t.Parallel()
	h, _ := newThrottledHandler(t, throttleConfig{window: time.Minute, perClient: 3, perUser: 5, maxKeys: 100}, time.Minute)
	if resp := askAs(h, "198.51.100.1", "GET", "/v2/", "alice", "alice-secret"); resp.StatusCode != 200 {
		t.Fatalf("victim's login: got %d, want 200", resp.StatusCode)
	}
	var statuses []int
	for i := range 6 {
		statuses = append(statuses, askAs(h, "203.0.113.66", "GET", "/v2/", "alice", fmt.Sprint("guess", i)).StatusCode)
	}
	if want := []int{401, 401, 401, 429, 429, 429}; fmt.Sprint(statuses) != fmt.Sprint(want) {
		t.Fatalf("attacker's guesses: got %v, want %v", statuses, want)
	}
	if resp := askAs(h, "203.0.113.66", "GET", "/v2/", "alice", "alice-secret"); resp.StatusCode != 429 {
		t.Errorf("throttled attacker with the right password: got %d, want 429 like any guess", resp.StatusCode)
	}
	// Two more failures from a second address put the name itself over its limit: a fresh
	// address is refused before any hash, right password or not.
	askAs(h, "203.0.113.77", "GET", "/v2/", "alice", "guess-a")
	askAs(h, "203.0.113.77", "GET", "/v2/", "alice", "guess-b")
	if resp := askAs(h, "203.0.113.88", "GET", "/v2/", "alice", "alice-secret"); resp.StatusCode != 429 {
		t.Errorf("right password from a fresh address while the name is throttled: got %d, want 429", resp.StatusCode)
	}
	// The victim's own cached success still works: an attacker cannot lock out an active user.
	if resp := askAs(h, "198.51.100.1", "PUT", "/v2/app/manifests/1", "alice", "alice-secret"); resp.StatusCode != 200 {
		t.Errorf("victim's cached success: got %d, want 200", resp.StatusCode)
	}
}

// TestThrottleDefaultsSpareRealClients runs the default limits (as parsed from an empty
// command line) against what real clients do: containerd retrying a 401 five times, a user
// who mistyped a password twice, and a `docker compose pull` of 20 images at once with
// correct credentials. None of it may see a 429, with the cache on or off.
func TestThrottleDefaultsSpareRealClients(t *testing.T) {
	t.Parallel()
	cfg, err := parseServeConfig(cli.Env{LookupEnv: func(string) (string, bool) { return "", false }, Stdout: io.Discard, Stderr: io.Discard}, nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, cacheTTL := range []time.Duration{0, cfg.cacheTTL} {
		t.Run("cache-ttl="+cacheTTL.String(), func(t *testing.T) {
			t.Parallel()
			h, _ := newThrottledHandler(t, cfg.throttle, cacheTTL)
			const ci = "203.0.113.10"
			manifest := "/v2/team/app/manifests/latest"
			// containerd: the request and five retries of the 401, for two pulls with a typo
			// in the password and one with a stale one.
			for _, password := range []string{"alice-secert", "alice-secert", "old-secret"} {
				for try := range 6 {
					if resp := askAs(h, ci, "GET", manifest, "alice", password); resp.StatusCode != 401 {
						t.Fatalf("wrong password %q, try %d: got %d, want 401", password, try+1, resp.StatusCode)
					}
				}
			}
			// Then 20 pulls at once with the right password, each the sequence docker sends.
			blob := "/v2/team/app/blobs/sha256:" + strings.Repeat("ab", 32)
			pull := []struct {
				method, uri, user string
				want              int
			}{
				{"GET", "/v2/", "", 401}, // classic docker asks without credentials first
				{"GET", "/v2/", "alice", 200},
				{"HEAD", manifest, "alice", 200},
				{"GET", manifest, "alice", 200},
				{"GET", blob, "alice", 200},
				{"GET", blob, "alice", 200},
			}
			var wg sync.WaitGroup
			errs := make(chan string, 20*len(pull))
			for i := range 20 {
				wg.Go(func() {
					for _, step := range pull {
						resp := askAs(h, ci, step.method, step.uri, step.user, "alice-secret")
						if resp.StatusCode != step.want {
							errs <- fmt.Sprintf("pull %d, %s %s: got %d, want %d", i, step.method, step.uri, resp.StatusCode, step.want)
						}
					}
				})
			}
			wg.Wait()
			close(errs)
			for e := range errs {
				t.Error(e)
			}
			if got := scrapeMetric(t, h.metrics, "registry_auth_throttled_total"); got != 0 {
				t.Errorf("got %v throttled requests, want 0", got)
			}
		})
	}
}

// wantMetrics fails t for each sample (as in the exposition format) whose value is not the
// one given.
func wantMetrics(t *testing.T, m *metrics, want map[string]float64) {
	t.Helper()
	for sample, value := range want {
		if got := scrapeMetric(t, m, sample); got != value {
			t.Errorf("got %s %v, want %v", sample, got, value)
		}
	}
}

// scrapeMetric reads one sample (name with its labels, as in the exposition format) from
// the /metrics endpoint the service serves, or fails the test.
func scrapeMetric(t *testing.T, m *metrics, sample string) float64 {
	t.Helper()
	w := httptest.NewRecorder()
	newServer(&authHandler{metrics: m}, nil, m, false).ServeHTTP(w, httptest.NewRequest("GET", "/metrics", nil))
	for _, line := range strings.Split(w.Body.String(), "\n") {
		if rest, ok := strings.CutPrefix(line, sample+" "); ok {
			v, err := strconv.ParseFloat(rest, 64)
			if err != nil {
				t.Fatalf("metric line %q: %v", line, err)
			}
			return v
		}
	}
	t.Fatalf("no %s in /metrics:\n%s", sample, w.Body)
	return 0
}

// fail counts one failed verification for client and user: an attempt admitted and never
// released, as verify leaves a wrong password.
func fail(th *throttle, client, user string) { th.admit(client, user) }

// wouldRefuse reports whether an attempt for client and user would be refused now, and when to
// retry, without counting one.
func wouldRefuse(th *throttle, client, user string) (retryAfter time.Duration, refused bool) {
	a, retryAfter, ok := th.admit(client, user)
	a.release()
	return retryAfter, !ok
}

// TestThrottleReleasedAttempts: an attempt holds its place from admit on, so attempts in
// flight count against the limit; a released one (a success, or no verdict) leaves no trace,
// in whichever bucket it now lies, and a failure is one never released.
func TestThrottleReleasedAttempts(t *testing.T) {
	t.Parallel()
	const limit = 3
	tests := []struct {
		name        string
		advance     time.Duration // between admitting and releasing
		release     int           // of the limit attempts admitted
		wantBlocked bool
	}{
		{"in flight count", 0, 0, true},
		{"all released", 0, limit, false},
		{"one released", 0, 1, false},
		{"released in the next bucket", 70 * time.Second, limit, false},
		{"released after the window", 3 * time.Minute, limit, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			th, clock := newClockedThrottle(t, throttleConfig{window: time.Minute, perClient: limit, perUser: limit, maxKeys: 100})
			var admitted []attempt
			for i := range limit {
				a, _, ok := th.admit("192.0.2.1", "alice")
				if !ok {
					t.Fatalf("attempt %d of %d: refused before the limit", i+1, limit)
				}
				admitted = append(admitted, a)
			}
			clock.advance(tt.advance)
			for _, a := range admitted[:tt.release] {
				a.release()
			}
			// Probed right after: in the next bucket, unreleased attempts still weigh in.
			if _, refused := wouldRefuse(th, "192.0.2.1", "alice"); refused != (tt.wantBlocked && tt.advance < time.Minute) {
				t.Errorf("got refused %v, want %v", refused, tt.wantBlocked)
			}
			if tt.advance > 0 {
				return
			}
			// The counts are exact: limit - release more failures reach the limit again.
			for range tt.release {
				fail(th, "192.0.2.1", "alice")
			}
			if _, refused := wouldRefuse(th, "192.0.2.1", "alice"); !refused {
				t.Errorf("after %d more failures: got free, want refused", tt.release)
			}
		})
	}
}

// gatedAuthenticator holds every check it is given at a gate until the test opens it, and
// counts them, so that a test can have a whole burst in flight at once and no sleep.
type gatedAuthenticator struct {
	authn.Authenticator // the one gated
	entered             atomic.Int64
	gate                chan struct{}
}

func (g *gatedAuthenticator) Check(ctx context.Context, c authn.Credential) (authn.Outcome, error) {
	g.entered.Add(1)
	<-g.gate
	return g.Authenticator.Check(ctx, c)
}

// gateSnapshot puts g in front of the authenticator of the current snapshot that gate picks,
// in a copy of the snapshot stored in its place.
func gateSnapshot(st *store, g *gatedAuthenticator, gate func(*snapshot) *authn.Authenticator) {
	snap := *st.snapshot()
	snap.authenticators = slices.Clone(snap.authenticators)
	a := gate(&snap)
	g.Authenticator, *a = *a, g
	st.current.Store(&snap)
}

// TestThrottleConcurrentBurst: 150 guesses at once from one address, each held at the hash
// until every one has either reached it or been answered, so all are in flight together. At
// most the limit are checked, the rest are 429 at once, for one name (per-user limit) and for
// 150 names (per-client limit), with the cache on and off.
func TestThrottleConcurrentBurst(t *testing.T) {
	t.Parallel()
	const burst = 150
	tests := []struct {
		name  string
		cfg   throttleConfig
		user  func(i int) string
		gate  func(*snapshot) *authn.Authenticator // the authenticator that decides
		limit int
	}{
		{"one name", throttleConfig{window: time.Minute, perClient: 1000, perUser: 30, maxKeys: 1000}, func(int) string { return "alice" },
			func(s *snapshot) *authn.Authenticator { return &s.authenticators[0] }, 30},
		{"150 names", throttleConfig{window: time.Minute, perClient: 50, perUser: 30, maxKeys: 1000}, func(i int) string { return fmt.Sprint("nobody", i) },
			func(s *snapshot) *authn.Authenticator { return &s.unknown }, 50},
	}
	for _, tt := range tests {
		for _, cacheTTL := range []time.Duration{0, time.Minute} {
			t.Run(fmt.Sprintf("%s/cache-ttl=%v", tt.name, cacheTTL), func(t *testing.T) {
				t.Parallel()
				h, _ := newThrottledHandler(t, tt.cfg, cacheTTL)
				g := &gatedAuthenticator{gate: make(chan struct{})}
				gateSnapshot(h.store, g, tt.gate)
				var answered atomic.Int64
				statuses := make(chan int, burst)
				start := make(chan struct{})
				var wg sync.WaitGroup
				for i := range burst {
					wg.Go(func() {
						<-start // a barrier: every guess leaves together
						resp := askAs(h, "203.0.113.5", "GET", "/v2/", tt.user(i), fmt.Sprint("guess-", i))
						answered.Add(1)
						statuses <- resp.StatusCode
					})
				}
				close(start)
				waitFor(t, 30*time.Second, "every guess to reach the hash or be answered", func() bool {
					return g.entered.Load()+answered.Load() == burst
				})
				close(g.gate)
				wg.Wait()
				close(statuses)
				count := map[int]int{}
				for s := range statuses {
					count[s]++
				}
				if count[401] != tt.limit || count[429] != burst-tt.limit {
					t.Errorf("got statuses %v, want %d × 401 and %d × 429", count, tt.limit, burst-tt.limit)
				}
				if got := histogramCount(t, h.metrics); got != uint64(tt.limit) {
					t.Errorf("got %d hashes for %d guesses at once, want the limit, %d", got, burst, tt.limit)
				}
			})
		}
	}
}
