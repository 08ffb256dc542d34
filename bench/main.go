// Command bench measures registry-auth side by side with the Apache recipe
// of the registry's documentation and with Traefik's own basicAuth, on one
// machine, on loopback, in one run, and writes docs/BENCHMARKS.md and
// docs/bench-manifest-64users.svg.
//
//	cd bench && go run . --quick   # under 3 minutes once the programs are built
//	cd bench && go run . --full    # longer runs, 1 GiB push
//
// It builds (or takes from the e2e cache) Traefik, the registry and
// registry-auth, starts one registry, then each setup in turn in front of
// it, and stops every process it started, also on failure or Ctrl-C.
package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"syscall"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Getenv, os.Stdout, os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		stop()
		os.Exit(1)
	}
}
