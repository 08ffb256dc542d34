#!/usr/bin/env bash
# Builds the three images of docker-compose.yml (traefik, registry, registry-auth:local) on a
# machine whose Docker engine cannot pull images: Traefik and the registry are compiled from
# their Go modules (the first Traefik build takes some minutes on 2 cores; builds are cached in
# $REGISTRY_AUTH_CACHE, default ~/.cache/registry-auth-e2e) and wrapped FROM scratch with the
# official images' layout and configuration. Needs Go and a running Docker engine.
# Usage: scripts/build-images.sh
set -euo pipefail
cd "$(dirname "$0")/../e2e"
exec go run ./cmd/build-images "$@"
