package main

import (
	"context"
	"encoding/base64"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"runtime"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/registry-auth/registry-auth/internal/authn"
	"golang.org/x/crypto/bcrypt"
)

// benchStore loads one user whose password is hashed with bcrypt at cost.
func benchStore(b *testing.B, cost int, cacheTTL time.Duration) (*store, *metrics) {
	b.Helper()
	h, err := bcrypt.GenerateFromPassword([]byte("bench-secret"), cost)
	if err != nil {
		b.Fatal(err)
	}
	f := newTestFiles(b, "bench:"+string(h)+"\n", "pusher: bench\n")
	return newTestStore(b, f, cacheTTL, nil)
}

// BenchmarkVerifyCacheHit is the price of a request whose credential was verified before.
func BenchmarkVerifyCacheHit(b *testing.B) {
	st, _ := benchStore(b, 10, time.Hour)
	snap := st.snapshot()
	st.verify(context.Background(), snap, authn.Credential{Client: "192.0.2.1", User: "bench", Password: []byte("bench-secret")})
	b.ReportAllocs()
	for b.Loop() {
		if v, _ := st.verify(context.Background(), snap, authn.Credential{Client: "192.0.2.1", User: "bench", Password: []byte("bench-secret")}); !v.ok || !v.cacheHit {
			b.Fatal("want a cached success")
		}
	}
}

// BenchmarkVerifyCacheMiss is the price of a credential seen for the first time: the hash.
func BenchmarkVerifyCacheMiss(b *testing.B) {
	for _, cost := range []int{5, 10} {
		b.Run(fmt.Sprintf("bcrypt-cost-%d", cost), func(b *testing.B) {
			st, _ := benchStore(b, cost, 0)
			snap := st.snapshot()
			for b.Loop() {
				if v, _ := st.verify(context.Background(), snap, authn.Credential{Client: "192.0.2.1", User: "bench", Password: []byte("bench-secret")}); !v.ok || v.cacheHit {
					b.Fatal("want an uncached success")
				}
			}
		})
	}
}

// BenchmarkVerifyTokenCold is the price of a robot token's first login, through the cache
// (a miss), the throttle and the authenticator, as BenchmarkVerifyCacheMiss for bcrypt: 1,000
// distinct tokens per iteration, each checked once (README.md, "Robot tokens": under 0.1 s of
// CPU for the 1,000).
func BenchmarkVerifyTokenCold(b *testing.B) {
	f := newTestFiles(b, htpasswdLines(b, "bench", "bench-secret"), "")
	f.tokens = filepath.Join(f.dir, "tokens.yaml")
	specs := make([]tokenSpec, 1000)
	for i := range specs {
		specs[i] = tokenSpec{name: fmt.Sprintf("node-%d", i), scopes: []string{"pull:**"}}
	}
	secrets := writeTokens(b, f.tokens, specs...)
	st, _ := newTestStore(b, f, 0, nil) // no cache: every check is a miss
	snap := st.snapshot()
	creds := make([]authn.Credential, 0, len(specs))
	for _, s := range specs {
		creds = append(creds, authn.Credential{Client: "192.0.2.1", User: "token+" + s.name, Password: []byte(secrets[s.name])})
	}
	b.ReportAllocs()
	for b.Loop() {
		for _, c := range creds {
			if v, _ := st.verify(context.Background(), snap, c); !v.ok || v.cacheHit {
				b.Fatal("want an uncached success")
			}
		}
	}
}

// BenchmarkAuthRequest is a whole /auth decision through the router, cache hit, as Traefik
// sends it; the parallel form uses every core.
func BenchmarkAuthRequest(b *testing.B) {
	st, m := benchStore(b, 10, time.Hour)
	h := newServer(testAuthHandler(st, m, nil), st, m, false)
	auth := "Basic " + base64.StdEncoding.EncodeToString([]byte("bench:bench-secret"))
	request := func() *http.Request {
		r := httptest.NewRequest("GET", "/auth", nil)
		r.Header.Set("Authorization", auth)
		r.Header.Set("X-Forwarded-Method", "GET")
		r.Header.Set("X-Forwarded-Uri", "/v2/team/app/manifests/latest")
		r.Header.Set("X-Forwarded-For", "192.0.2.1")
		return r
	}
	b.Run("serial", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			w := httptest.NewRecorder()
			h.ServeHTTP(w, request())
			if w.Code != 200 {
				b.Fatalf("got %d, want 200", w.Code)
			}
		}
	})
	b.Run("parallel", func(b *testing.B) {
		b.ReportAllocs()
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				w := httptest.NewRecorder()
				h.ServeHTTP(w, request())
				if w.Code != 200 {
					b.Errorf("got %d, want 200", w.Code)
					return
				}
			}
		})
	})
}

// BenchmarkLoginDuringBurst is the wait of a valid, uncached login from one address while
// another address has 150 logins of unknown names in flight, at bcrypt cost 10 with the
// throttle off (as from many addresses, which the throttle bounds only one by one): with the
// hashing budget of the CPU count, taking turns between addresses, and with no budget (every
// hash at once, as before the budget). Reported: ms of the valid login, and how the burst
// was answered.
func BenchmarkLoginDuringBurst(b *testing.B) {
	const burst = 150
	for _, budget := range []struct {
		name  string
		slots int
	}{{"budget-cpus", runtime.GOMAXPROCS(0)}, {"no-budget", 1 << 20}} {
		b.Run(budget.name, func(b *testing.B) {
			h, err := bcrypt.GenerateFromPassword([]byte("bench-secret"), 10)
			if err != nil {
				b.Fatal(err)
			}
			f := newTestFiles(b, "bench:"+string(h)+"\n", "pusher: bench\n")
			cfg := testConfig(f, 0)
			cfg.hashBudget = hashBudgetConfig{slots: budget.slots, maxWait: 3 * time.Second}
			m := newMetrics()
			st := newStore(cfg, slog.New(slog.DiscardHandler), m)
			if err := st.reload("bench"); err != nil {
				b.Fatal(err)
			}
			handler := testAuthHandler(st, m, nil)
			var login time.Duration
			statuses := map[int]int{}
			for b.Loop() {
				var wg sync.WaitGroup
				answers := make(chan int, burst)
				start := make(chan struct{})
				for i := range burst {
					wg.Go(func() {
						<-start
						answers <- askAs(handler, "203.0.113.5", "GET", "/v2/", fmt.Sprint("nobody-", i), "guess").StatusCode
					})
				}
				close(start)
				// Once the burst is hashing, the valid login.
				waitFor(b, time.Minute, "the burst to hash", func() bool { return testutil.ToFloat64(m.hashSlotsInUse) > 0 })
				sent := time.Now()
				if code := askAs(handler, "198.51.100.7", "GET", "/v2/", "bench", "bench-secret").StatusCode; code != 200 {
					b.Fatalf("valid login during the burst: got %d, want 200", code)
				}
				login += time.Since(sent)
				wg.Wait()
				close(answers)
				for code := range answers {
					statuses[code]++
				}
			}
			b.ReportMetric(float64(login.Milliseconds())/float64(b.N), "ms/valid-login")
			b.ReportMetric(float64(statuses[503])/float64(b.N), "503/burst")
			b.ReportMetric(float64(statuses[401])/float64(b.N), "401/burst")
			b.ReportMetric(0, "ns/op")
		})
	}
}
