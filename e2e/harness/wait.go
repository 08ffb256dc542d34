package harness

import (
	"context"
	"fmt"
	"net"
	"time"
)

// pollInterval is how often WaitFor checks its condition.
const pollInterval = 20 * time.Millisecond

// WaitFor calls check until it returns nil, and returns nil then. It gives
// up when timeout has passed or ctx ends, and returns the last error of check
// (or the context's error if check never ran).
func WaitFor(ctx context.Context, timeout time.Duration, check func() error) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	tick := time.NewTicker(pollInterval)
	defer tick.Stop()
	var last error
	for {
		if last = check(); last == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("not ready after %v: %w", timeout, last)
		case <-tick.C:
		}
	}
}

// FreeAddr returns a loopback address "127.0.0.1:PORT" whose port was free a
// moment ago. Another program may take it before the caller binds it; the
// kernel hands out ephemeral ports in turn, so that is rare in practice.
func FreeAddr() (string, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer l.Close()
	return l.Addr().String(), nil
}
