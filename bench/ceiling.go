package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"time"
)

// ceilingEnv, when set in the environment, turns this program into the
// "answers 200 at once" forwardAuth server of setup 4, listening on the
// variable's value. The harness starts it as a separate process (itself,
// re-executed), so that it is measured like registry-auth: its own
// process, its own Go runtime, never sharing a scheduler or garbage
// collector with the harness's clients.
const ceilingEnv = "REGISTRY_AUTH_BENCH_CEILING"

// serveCeiling answers every request with 200 and an empty body until ctx
// ends. It prints the address it bound on stdout (one line), which is how
// its parent learns the port.
func serveCeiling(ctx context.Context, addr string, stdout io.Writer) error {
	l, err := net.Listen("tcp", addr)
	if err != nil {
		return err
	}
	srv := &http.Server{
		Handler: http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
			w.WriteHeader(http.StatusOK)
		}),
		ReadHeaderTimeout: 10 * time.Second,
	}
	fmt.Fprintln(stdout, l.Addr().String())
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(l) }()
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
	}
	shutdownCtx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := srv.Shutdown(shutdownCtx); err != nil {
		return err
	}
	if err := <-errc; !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}
