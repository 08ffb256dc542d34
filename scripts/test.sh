#!/usr/bin/env bash
# Runs every test of registry-auth on a fresh Debian machine with Go and a Docker engine:
# installs what the tests need, then the service's unit tests (with -race), short fuzz runs,
# one pass of each benchmark, the end-to-end suite (real Traefik, registry, go-containerregistry
# and skopeo), the stack test (real docker CLI and Compose against docker-compose.yml) and the
# benchmark harness's smoke test. Every step runs even when an earlier one fails; the exit
# status is non-zero if any failed, and the last lines name them.
# Usage: scripts/test.sh   (FUZZCOUNT=500000x for longer fuzzing)
set -uo pipefail
cd "$(dirname "$0")/.."

step() { printf '\n=== %s\n' "$*"; }
# Debian keeps apache2 in /usr/sbin, which a non-root PATH often lacks.
export PATH="$PATH:/usr/sbin:/sbin"
sudo=""
[ "$(id -u)" -eq 0 ] || sudo=sudo

# Debian packages the tests run: Apache's htpasswd and httpd (vectors, the bench's Apache
# recipe), skopeo (e2e client), wrk (bench), gnuplot (bench chart), openssl (certificates),
# slapd and ldap-utils (a real directory for the LDAP tests), prometheus (promtool checks the alert rules),
# etcd-server (the storage of the Kubernetes test's kube-apiserver),
# the docker CLI and engine, and Compose when neither the plugin nor docker-compose exists.
need=()
for cmd in htpasswd:apache2-utils apache2:apache2 skopeo:skopeo wrk:wrk gnuplot:gnuplot-nox openssl:openssl docker:docker.io slapd:slapd ldapadd:ldap-utils promtool:prometheus etcd:etcd-server; do
	command -v "${cmd%%:*}" >/dev/null 2>&1 || need+=("${cmd##*:}")
done
if ! docker compose version >/dev/null 2>&1 && ! docker-compose version >/dev/null 2>&1; then
	need+=(docker-compose)
fi
if [ ${#need[@]} -gt 0 ]; then
	step "installing ${need[*]}"
	# The LDAP tests start slapd with a configuration of their own: the package must set up
	# no directory of its own (and ask nothing).
	echo 'slapd slapd/no_configuration boolean true' | $sudo debconf-set-selections
	$sudo apt-get update -qq
	DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null ||
		{ echo "scripts/test.sh: could not install ${need[*]} with apt-get" >&2; exit 1; }
fi

# The stack test needs a running Docker engine.
if ! docker info >/dev/null 2>&1; then
	step "starting the Docker engine"
	($sudo service docker start || (nohup $sudo dockerd >/tmp/dockerd.log 2>&1 &)) >/dev/null 2>&1
	for _ in $(seq 60); do docker info >/dev/null 2>&1 && break; sleep 1; done
	docker info >/dev/null 2>&1 || { echo "scripts/test.sh: no Docker engine answers (see /tmp/dockerd.log); the stack test needs one" >&2; exit 1; }
fi

failed=()
# check runs one step and remembers it if it fails, so the later suites still run.
check() {
	local name=$1
	shift
	step "$name"
	"$@" || failed+=("$name")
}

check "unit tests (race detector)" go test -race -count=1 ./...

# A budget of executions, not of time: Go 1.26's coordinator can stall at the end of a
# duration -fuzztime and fail with "context deadline exceeded" (golang/go#75804). A
# crash still fails the step and writes its input under testdata/fuzz/.
# Every package of the module that has fuzz targets (the root and internal/...).
fuzz() {
	local pkg target rc=0
	for pkg in $(go list ./...); do
		for target in $(go test -list '^Fuzz' "$pkg" | grep '^Fuzz'); do
			go test -run '^$' -fuzz "^${target}\$" -fuzztime "${FUZZCOUNT:=50000x}" "$pkg" || rc=1
		done
	done
	return $rc
}
check "fuzzing (${FUZZCOUNT:-50000x} inputs per target)" fuzz

check "benchmarks, one pass each (figures: see docs/BENCHMARKS.md)" go test -run '^$' -bench . -benchtime 1x ./...

# On a new machine the suite first builds Traefik (about 16 minutes on 2 cores) and
# kube-apiserver (about 27): hence the long timeout.
check "end-to-end suite and stack test" bash -c 'cd e2e && go test -count=1 -timeout 80m ./...'

check "benchmark harness smoke test" bash -c 'cd bench && go test -count=1 -timeout 20m ./...'

if [ ${#failed[@]} -gt 0 ]; then
	printf '\nscripts/test.sh: FAILED: %s\n' "${failed[*]}" >&2
	exit 1
fi
printf '\nscripts/test.sh: every step passed\n'
