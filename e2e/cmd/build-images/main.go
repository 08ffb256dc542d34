// Command build-images builds the three images docker-compose.yml names (Traefik, the
// registry, registry-auth:local) on a Docker engine that cannot pull images. Traefik and the
// registry are compiled from their Go modules and wrapped FROM scratch; an image the engine
// already has under that name is kept (remove it to rebuild). Run it as
// scripts/build-images.sh from the repository.
package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/registry-auth/registry-auth/e2e/harness"
)

func main() {
	if len(os.Args) > 1 {
		fmt.Fprintln(os.Stderr, "usage: scripts/build-images.sh  (no arguments; REGISTRY_AUTH_CACHE sets where the Go builds are cached)")
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	err := harness.BuildStackImages(ctx, func(what string) { fmt.Println(what) })
	if err != nil {
		fmt.Fprintln(os.Stderr, "build-images:", err)
		os.Exit(1)
	}
}
