package main

import (
	"context"
	"errors"
	"io"
	"strings"
	"sync"
	"testing"
	"time"
)

// newTestBudget is a budget of slots with waits of maxWait, and its metrics.
func newTestBudget(slots int, maxWait time.Duration) (*hashBudget, *metrics) {
	m := newMetrics()
	return newHashBudget(hashBudgetConfig{slots: slots, maxWait: maxWait}, m), m
}

// TestHashBudgetTakesTurns: with one slot held, five requests of one address queue, then
// one of another: when the slot comes free the other address goes second, not sixth.
func TestHashBudgetTakesTurns(t *testing.T) {
	t.Parallel()
	b, m := newTestBudget(1, time.Minute)
	if err := b.acquire(context.Background(), "192.0.2.9"); err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var order []string
	var wg sync.WaitGroup
	enqueue := func(client string, n int) {
		for range n {
			queued := b.queued()
			wg.Go(func() {
				err := b.run(context.Background(), client, func() {
					mu.Lock()
					order = append(order, client)
					mu.Unlock()
				})
				if err != nil {
					t.Errorf("%s: %v", client, err)
				}
			})
			// One at a time, so the queue's order is the order here.
			waitFor(t, 10*time.Second, "the request to queue", func() bool { return b.queued() == queued+1 })
		}
	}
	enqueue("203.0.113.5", 5)
	enqueue("2001:db8:0:1::1", 1) // an IPv6 /64 is one address, as for the throttle
	enqueue("2001:db8:0:1::2", 1)
	if got := scrapeMetric(t, m, "registry_auth_hash_slots_in_use"); got != 1 {
		t.Errorf("got %v slots in use, want 1", got)
	}
	b.release()
	wg.Wait()
	want := "203.0.113.5 2001:db8:0:1::1 203.0.113.5 2001:db8:0:1::2 203.0.113.5 203.0.113.5 203.0.113.5"
	if got := strings.Join(order, " "); got != want {
		t.Errorf("got turns %s, want %s", got, want)
	}
	wantMetrics(t, m, map[string]float64{
		"registry_auth_hash_slots":                         1,
		"registry_auth_hash_slots_in_use":                  0,
		`registry_auth_hash_waits_total{result="granted"}`: 7,
		`registry_auth_hash_waits_total{result="timeout"}`: 0,
	})
}

// TestHashBudgetGivesUp: a request that finds every slot taken for maxWait, or whose request
// ends, runs no hash and says why; the slot it never got stays with its holder.
func TestHashBudgetGivesUp(t *testing.T) {
	t.Parallel()
	b, m := newTestBudget(1, 50*time.Millisecond)
	if err := b.acquire(context.Background(), "192.0.2.9"); err != nil {
		t.Fatal(err)
	}
	ran := false
	if err := b.run(context.Background(), "203.0.113.5", func() { ran = true }); !errors.Is(err, errHashBusy) || ran {
		t.Errorf("all slots taken: got %v (hash ran %v), want errHashBusy and no hash", err, ran)
	}
	ctx, cancel := context.WithCancel(context.Background())
	b.maxWait = time.Minute
	done := make(chan error)
	go func() { done <- b.run(ctx, "203.0.113.5", func() { ran = true }) }()
	waitFor(t, 10*time.Second, "the request to queue", func() bool { return b.queued() == 1 })
	cancel()
	if err := <-done; !errors.Is(err, context.Canceled) || ran {
		t.Errorf("request ended: got %v (hash ran %v), want context.Canceled and no hash", err, ran)
	}
	if b.queued() != 0 {
		t.Errorf("got %d still queued, want 0", b.queued())
	}
	b.release()
	if err := b.run(context.Background(), "203.0.113.5", func() { ran = true }); err != nil || !ran {
		t.Errorf("slot free again: got %v (hash ran %v), want the hash run", err, ran)
	}
	wantMetrics(t, m, map[string]float64{
		"registry_auth_hash_slots_in_use":                   0,
		`registry_auth_hash_waits_total{result="timeout"}`:  1,
		`registry_auth_hash_waits_total{result="canceled"}`: 1,
	})
}

// TestHashBudgetBusyAnswer: through the handler, a login that waits out --hash-wait is a
// registry 503 with Retry-After, no failed login for the throttle and no hash, never a 500.
func TestHashBudgetBusyAnswer(t *testing.T) {
	t.Parallel()
	h, _ := newThrottledHandler(t, throttleConfig{window: time.Minute, perClient: 1, perUser: 1, maxKeys: 100}, time.Minute)
	b := h.store.budget
	b.maxWait = 20 * time.Millisecond
	for range b.slots {
		if err := b.acquire(context.Background(), "192.0.2.9"); err != nil {
			t.Fatal(err)
		}
	}
	for i := range 3 { // the throttle allows one failure: a 503 is none
		resp := askAs(h, "203.0.113.5", "GET", "/v2/", "alice", "alice-secret")
		body, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != 503 || resp.Header.Get("Retry-After") != "1" || !strings.Contains(string(body), `"code":"UNAVAILABLE","message":"too many logins are being checked at once`) {
			t.Errorf("try %d: got %d Retry-After %q body %s, want 503, Retry-After 1 and UNAVAILABLE", i+1, resp.StatusCode, resp.Header.Get("Retry-After"), body)
		}
	}
	if got := histogramCount(t, h.metrics); got != 0 {
		t.Errorf("got %d checks counted, want 0: none ran", got)
	}
	if got := scrapeMetric(t, h.metrics, `registry_auth_decisions_total{reason="hash_wait_timeout",result="unavailable"}`); got != 3 {
		t.Errorf("got %v hash_wait_timeout decisions, want 3", got)
	}
	for range b.slots {
		b.release()
	}
	if resp := askAs(h, "203.0.113.5", "GET", "/v2/", "alice", "alice-secret"); resp.StatusCode != 200 {
		t.Errorf("slots free again: got %d, want 200", resp.StatusCode)
	}
}
