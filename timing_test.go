package main

import (
	"fmt"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"runtime"
	"slices"
	"testing"
	"time"

	"golang.org/x/crypto/bcrypt"
)

// timingTolerance is how far apart the typical times (lower quartiles, see quartile) of an
// unknown user's and a known user's failure may be. The leaks it must catch are far larger: an unknown user who skips the hash
// answers hundreds of times faster, one compared against a hash of another cost at least
// twice faster or slower (one bcrypt cost step doubles the work; under -race the fixed
// overhead narrows that to about 1.5). Noise on a loaded 2-core machine, with interleaved
// samples and lower quartiles, stays well inside it.
const timingTolerance = 1.5

// TestUnknownUserTiming: a failed login of an unknown user takes the time of a known user's
// with a wrong password, with the cache off, on and missed, and on and hit. Not parallel: it
// measures time, and Go runs it while no parallel test of this package runs.
//
// The last two cases prove that the comparison can fail: the same measurement of a service
// whose unknown users skip the bcrypt comparison (the dummy hash swapped for a SHA-1 one), or
// compare against a hash of another cost, must be reported as different.
func TestUnknownUserTiming(t *testing.T) {
	const cost = bcrypt.MinCost // the file's only cost, so the dummy hash has it too
	var lines []string
	for _, user := range []string{"alice", "bob", "carol"} {
		h, err := bcrypt.GenerateFromPassword([]byte(user+"-secret"), cost)
		if err != nil {
			t.Fatal(err)
		}
		lines = append(lines, user+":"+string(h))
	}
	htpasswd := fmt.Sprintln(lines[0]) + fmt.Sprintln(lines[1]) + fmt.Sprintln(lines[2])

	tests := []struct {
		name     string
		cacheTTL time.Duration
		pairs    int                       // samples of each kind
		batch    int                       // requests per sample
		repeat   bool                      // the same wrong password every time (cache hits) or a new one (misses)
		dummy    func(t *testing.T) string // broken variants: the hash unknown users are compared against
		same     bool                      // whether the two distributions must be the same
	}{
		{"cache off", 0, 40, 1, false, nil, true},
		{"cache on, misses", time.Hour, 40, 1, false, nil, true},
		{"cache on, hits", time.Hour, 150, 10, true, nil, true},
		// The broken services this test exists to catch.
		{"unknown users skip the hash", 0, 20, 1, false, func(*testing.T) string {
			return "{SHA}qUqP5cyxm6YcTAhz05Hph5gvu9M=" // SHA-1 of "test": microseconds
		}, false},
		{"dummy hash of another cost", 0, 15, 1, false, func(t *testing.T) string {
			h, err := bcrypt.GenerateFromPassword([]byte("x"), cost+2)
			if err != nil {
				t.Fatal(err)
			}
			return string(h)
		}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newTestFiles(t, htpasswd, "pusher: alice\n")
			st, m := newTestStore(t, f, tt.cacheTTL, nil)
			if tt.dummy != nil {
				snap := st.snapshot() // before any request reads it
				snap.dummyHash = tt.dummy(t)
				snap.unknown = unknownUsers{snap.dummyHash}
			}
			h := newServer(testAuthHandler(st, m, nil), st, m, false)
			fail := func(user, password string) {
				r := httptest.NewRequest("GET", "/auth", nil)
				r.Header.Set("X-Forwarded-Method", "GET")
				r.Header.Set("X-Forwarded-Uri", "/v2/app/manifests/latest")
				r.Header.Set("Authorization", basic(user, password))
				w := httptest.NewRecorder()
				h.ServeHTTP(w, r)
				if w.Code != http.StatusUnauthorized {
					t.Fatalf("%s: got %d, want 401", user, w.Code)
				}
			}
			sample := func(user string, i int) time.Duration {
				start := time.Now()
				for j := range tt.batch {
					password := fmt.Sprintf("guess-%d-%d", i, j)
					if tt.repeat {
						password = "guess"
					}
					fail(user, password)
				}
				return time.Since(start)
			}
			if tt.repeat { // make every measured request a cache hit
				fail("mallory", "guess")
				fail("alice", "guess")
			}
			hashesBefore := histogramCount(t, m)

			runtime.GC()
			rng := rand.New(rand.NewPCG(6, 7))
			unknown := make([]time.Duration, tt.pairs)
			known := make([]time.Duration, tt.pairs)
			for i := range tt.pairs {
				// Interleaved, in random order, so that drift and the machine's other work
				// fall on both kinds alike.
				if rng.IntN(2) == 0 {
					unknown[i] = sample("mallory", i)
					known[i] = sample("alice", i)
				} else {
					known[i] = sample("alice", i)
					unknown[i] = sample("mallory", i)
				}
			}

			wantHashes := uint64(2 * tt.pairs * tt.batch)
			if tt.repeat {
				wantHashes = 0
			}
			if got := histogramCount(t, m) - hashesBefore; got != wantHashes {
				t.Fatalf("got %d hashes computed while measuring, want %d", got, wantHashes)
			}
			ratio := lowerQuartile(unknown).Seconds() / lowerQuartile(known).Seconds()
			same := ratio >= 1/timingTolerance && ratio <= timingTolerance
			t.Logf("unknown user: quartile %v median %v; known user: quartile %v median %v; ratio %.3f; P(unknown < known) = %.2f",
				lowerQuartile(unknown), medianDuration(unknown), lowerQuartile(known), medianDuration(known), ratio, probabilityLess(unknown, known))
			if same != tt.same {
				t.Errorf("got ratio %.3f of the lower quartiles (same within %.1f: %v), want same: %v", ratio, timingTolerance, same, tt.same)
			}
		})
	}
}

// lowerQuartile is the value a quarter of the way up d. Noise on a busy machine only ever
// adds time (another process runs, the collector stops the world), and when samples are
// about as long as a scheduler slice it hits a large share of them, moving the medians of
// two equal samples apart; the lower quartile still sees only undisturbed requests.
func lowerQuartile(d []time.Duration) time.Duration {
	s := slices.Clone(d)
	slices.Sort(s)
	return s[len(s)/4]
}

// medianDuration is the middle value of d (the upper one of an even count), for the log.
func medianDuration(d []time.Duration) time.Duration {
	s := slices.Clone(d)
	slices.Sort(s)
	return s[len(s)/2]
}

// probabilityLess is the Mann-Whitney estimate of P(a sample of a < a sample of b): 0.5 for
// the same distribution. It is logged to show how the two overlap.
func probabilityLess(a, b []time.Duration) float64 {
	var wins float64
	for _, x := range a {
		for _, y := range b {
			switch {
			case x < y:
				wins++
			case x == y:
				wins += 0.5
			}
		}
	}
	return wins / float64(len(a)*len(b))
}
