#!/usr/bin/env bash
# Runs every test of registry-auth on a fresh Debian machine with Go and a Docker engine:
# installs what the tests need, then the service's unit tests (with -race), short fuzz runs,
# one pass of each benchmark, the end-to-end suite (real Traefik, registry, go-containerregistry
# and skopeo), the stack test (real docker CLI against docker-compose.yml) and the benchmark
# harness's smoke test. Usage: scripts/test.sh   (FUZZTIME=30s for longer fuzzing)
set -euo pipefail
cd "$(dirname "$0")/.."

step() { printf '\n=== %s\n' "$*"; }

# Debian packages the tests run: Apache's htpasswd and httpd (vectors, the bench's Apache
# recipe), skopeo (e2e client), wrk (bench), gnuplot (bench chart), openssl (certificates).
need=()
for cmd in htpasswd:apache2-utils apache2:apache2 skopeo:skopeo wrk:wrk gnuplot:gnuplot-nox openssl:openssl; do
	command -v "${cmd%%:*}" >/dev/null 2>&1 || [ -x "/usr/sbin/${cmd%%:*}" ] || need+=("${cmd##*:}")
done
if [ ${#need[@]} -gt 0 ]; then
	step "installing ${need[*]}"
	sudo=""; [ "$(id -u)" -eq 0 ] || sudo=sudo
	$sudo apt-get update -qq
	DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi

# The stack test needs a running Docker engine.
if ! docker info >/dev/null 2>&1; then
	step "starting the Docker engine"
	(service docker start || (nohup dockerd >/tmp/dockerd.log 2>&1 &)) >/dev/null 2>&1 || true
	for _ in $(seq 60); do docker info >/dev/null 2>&1 && break; sleep 1; done
	docker info >/dev/null 2>&1 || { echo "no Docker engine: the stack test needs one" >&2; exit 1; }
fi

step "unit tests (race detector)"
go test -race -count=1 ./...

step "fuzzing (${FUZZTIME:=10s} per target)"
for target in $(go test -list '^Fuzz' . | grep '^Fuzz'); do
	go test -run '^$' -fuzz "^${target}\$" -fuzztime "$FUZZTIME" .
done

step "benchmarks, one pass each (figures: see docs/BENCHMARKS.md)"
go test -run '^$' -bench . -benchtime 1x .

step "end-to-end suite and stack test"
(cd e2e && go test -count=1 -timeout 60m ./...)

step "benchmark harness smoke test"
(cd bench && go test -count=1 -timeout 20m ./...)
