package main

import (
	"container/list"
	"context"
	"errors"
	"fmt"
	"runtime"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/registry-auth/registry-auth/internal/cli"
)

// errHashBusy means no hashing slot came free within --hash-wait: the service is saturated,
// which is no fault of this client's, so the answer is 503 with Retry-After, never 401, 429
// or 500, and it is no failed login for the throttle.
var errHashBusy = errors.New("no hashing slot came free in time")

// errRequestEnded means the request ended while it waited for a hashing slot: no check ran,
// and nobody reads the answer. It wraps the context's error.
var errRequestEnded = errors.New("the request ended before its password was checked")

// hashBudgetConfig bounds the password hashes computed at once.
type hashBudgetConfig struct {
	slots   int
	maxWait time.Duration
}

// define adds the budget's flags to fs. SECURITY.md explains the defaults.
func (c *hashBudgetConfig) define(fs *cli.FlagSet) {
	fs.EnvInt(&c.slots, "hash-concurrency", runtime.GOMAXPROCS(0), "most password hashes computed at once (default: the CPUs this process may use); further uncached logins queue, each client address taking its turn")
	fs.EnvDuration(&c.maxWait, "hash-wait", 3*time.Second, "longest an uncached login waits for a hashing slot before it is answered 503 with Retry-After (keep it well under Traefik's forwardAuth timeout and the 10 s write timeout)")
}

func (c hashBudgetConfig) validate() error {
	var errs []error
	if c.slots < 1 {
		errs = append(errs, fmt.Errorf("--hash-concurrency %d: want at least 1, such as the number of CPUs (%d)", c.slots, runtime.GOMAXPROCS(0)))
	}
	if c.maxWait <= 0 || c.maxWait > 8*time.Second {
		errs = append(errs, fmt.Errorf("--hash-wait %v: want a positive duration up to 8s, such as 3s, so that a login is answered before the 10 s write timeout", c.maxWait))
	}
	return errors.Join(errs...)
}

// hashBudget lets at most slots hash computations run at once, and shares them fairly
// between client addresses: when a slot comes free it goes to the next address in turn that
// has someone waiting (round robin), not to whoever asked first, so one client's burst cannot
// starve another's login. A waiter gives up after maxWait (errHashBusy) or when its request
// ends. Addresses count as the throttle counts them (clientPrefix: an IPv6 /64 is one).
//
// A nil *hashBudget lets every hash run at once. It is safe for concurrent use.
type hashBudget struct {
	slots   int
	maxWait time.Duration
	inUse   prometheus.Gauge       // registry_auth_hash_slots_in_use
	waits   *prometheus.CounterVec // registry_auth_hash_waits_total{result}

	mu     sync.Mutex
	busy   int                     // slots taken
	queues map[string]*clientQueue // addresses with waiters
	turns  list.List               // of *clientQueue: whose turn is next, front first
}

// clientQueue is one address's waiters, oldest first, and its place in turns.
type clientQueue struct {
	key     string
	waiters list.List // of *slotWaiter
	turn    *list.Element
}

// slotWaiter is one request waiting for a slot; granted is closed when it has one.
type slotWaiter struct {
	granted chan struct{}
	queue   *clientQueue
	elem    *list.Element
}

// newHashBudget returns the budget for c, counted in m.
func newHashBudget(c hashBudgetConfig, m *metrics) *hashBudget {
	m.hashSlots.Set(float64(c.slots))
	return &hashBudget{slots: c.slots, maxWait: c.maxWait, inUse: m.hashSlotsInUse, waits: m.hashWaits, queues: make(map[string]*clientQueue)}
}

// run calls hash once a slot is free for client, and returns errHashBusy or errRequestEnded,
// without calling it, when none came free in time.
func (b *hashBudget) run(ctx context.Context, client string, hash func()) error {
	if b == nil {
		hash()
		return nil
	}
	if err := b.acquire(ctx, client); err != nil {
		return err
	}
	defer b.release()
	hash()
	return nil
}

// acquire takes a slot for client, waiting its turn when none is free.
func (b *hashBudget) acquire(ctx context.Context, client string) error {
	b.mu.Lock()
	if b.busy < b.slots {
		// A free slot means nobody waits: release hands a slot straight to a waiter.
		b.busy++
		b.inUse.Set(float64(b.busy))
		b.mu.Unlock()
		return nil
	}
	w := b.enqueue(clientPrefix(client))
	b.mu.Unlock()

	timer := time.NewTimer(b.maxWait)
	defer timer.Stop()
	var err error
	select {
	case <-w.granted:
		b.waits.WithLabelValues("granted").Inc()
		return nil
	case <-timer.C:
		err = errHashBusy
		b.waits.WithLabelValues("timeout").Inc()
	case <-ctx.Done():
		err = fmt.Errorf("%w: %w", errRequestEnded, ctx.Err())
		b.waits.WithLabelValues("canceled").Inc()
	}
	b.mu.Lock()
	select {
	case <-w.granted:
		// Granted as we gave up: the slot is ours to pass on.
		b.mu.Unlock()
		b.release()
	default:
		b.dequeue(w)
		b.mu.Unlock()
	}
	return err
}

// release frees a slot, or hands it to the first waiter of the address whose turn it is.
func (b *hashBudget) release() {
	b.mu.Lock()
	defer b.mu.Unlock()
	front := b.turns.Front()
	if front == nil {
		b.busy--
		b.inUse.Set(float64(b.busy))
		return
	}
	q := front.Value.(*clientQueue)
	w := q.waiters.Front().Value.(*slotWaiter)
	b.dequeue(w)
	if q.turn != nil {
		// Still waiting: its next turn comes after every other address's.
		b.turns.MoveToBack(q.turn)
	}
	close(w.granted)
}

// enqueue adds a waiter for the address key; b.mu is held.
func (b *hashBudget) enqueue(key string) *slotWaiter {
	q := b.queues[key]
	if q == nil {
		q = &clientQueue{key: key}
		q.turn = b.turns.PushBack(q)
		b.queues[key] = q
	}
	w := &slotWaiter{granted: make(chan struct{}), queue: q}
	w.elem = q.waiters.PushBack(w)
	return w
}

// dequeue removes w from its address's queue, and the address from turns when no one of it
// waits any more; b.mu is held.
func (b *hashBudget) dequeue(w *slotWaiter) {
	q := w.queue
	q.waiters.Remove(w.elem)
	if q.waiters.Len() == 0 {
		b.turns.Remove(q.turn)
		q.turn = nil
		delete(b.queues, q.key)
	}
}

// queued is the number of requests waiting for a slot (tests read it).
func (b *hashBudget) queued() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	n := 0
	for _, q := range b.queues {
		n += q.waiters.Len()
	}
	return n
}
