package main

import (
	"encoding/base64"
	"fmt"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

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
	st.verify(snap, credential{client: "192.0.2.1", user: "bench", password: []byte("bench-secret")}, alwaysHash)
	b.ReportAllocs()
	for b.Loop() {
		if v, _ := st.verify(snap, credential{client: "192.0.2.1", user: "bench", password: []byte("bench-secret")}, alwaysHash); !v.ok || !v.cacheHit {
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
				if v, _ := st.verify(snap, credential{client: "192.0.2.1", user: "bench", password: []byte("bench-secret")}, alwaysHash); !v.ok || v.cacheHit {
					b.Fatal("want an uncached success")
				}
			}
		})
	}
}

// BenchmarkAuthRequest is a whole /auth decision through the router, cache hit, as Traefik
// sends it; the parallel form uses every core.
func BenchmarkAuthRequest(b *testing.B) {
	st, m := benchStore(b, 10, time.Hour)
	h := newServer(testAuthHandler(st, m, nil), st, m)
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
