package e2e_test

import (
	"context"
	"maps"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/compose-spec/compose-go/v2/types"
	"github.com/registry-auth/registry-auth/e2e/harness"
)

// TestStackFilesAgree: docker-compose.yml and deploy/swarm/docker-stack.yml configure the
// same stack, but for what Swarm changes on purpose: the forwardAuth address (Traefik's own
// auth-lb entry point instead of the service) and its TLS (moved to the auth-lb router's
// serversTransport), the labels under deploy, the replicas and their update order,
// --trusted-proxies for the load-balancing hop and --shutdown-delay for updates. The middleware's other settings, the
// registry's router, registry-auth's settings and mounts, the networks and Traefik's
// public entry point must stay the same in both.
func TestStackFilesAgree(t *testing.T) {
	t.Parallel()
	root, err := harness.RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	compose, err := harness.LoadComposeFile(ctx, root, "docker-compose.yml")
	if err != nil {
		t.Fatal(err)
	}
	stack, err := harness.LoadComposeFile(ctx, root, "deploy/swarm/docker-stack.yml")
	if err != nil {
		t.Fatal(err)
	}

	// The registry's router and the forwardAuth middleware.
	const fa = "traefik.http.middlewares.registry-auth.forwardauth."
	swarmOnly := func(k string) bool {
		return k == fa+"address" || strings.HasPrefix(k, fa+"tls.")
	}
	composeLabels := without(compose.Services["registry"].Labels, swarmOnly)
	stackLabels := without(deployLabels(t, stack.Services["registry"]), swarmOnly)
	if !reflect.DeepEqual(composeLabels, stackLabels) {
		t.Errorf("the registry's labels differ:\ncompose: %v\nstack:   %v", composeLabels, stackLabels)
	}
	if got := deployLabels(t, stack.Services["registry"])[fa+"address"]; got != "http://127.0.0.1:9099/auth" {
		t.Errorf("the stack's forwardAuth address: got %q, want Traefik's auth-lb entry point", got)
	}

	// registry-auth: the same settings and mounts.
	ca, sa := compose.Services["auth"], stack.Services["auth"]
	stackEnv := maps.Clone(sa.Environment)
	delete(stackEnv, "REGISTRY_AUTH_TRUSTED_PROXIES")
	delete(stackEnv, "REGISTRY_AUTH_SHUTDOWN_DELAY")
	if !reflect.DeepEqual(ca.Environment, stackEnv) {
		t.Errorf("registry-auth's environment differs:\ncompose: %v\nstack:   %v", ca.Environment, stackEnv)
	}
	if !reflect.DeepEqual(mountTargets(ca), mountTargets(sa)) || !reflect.DeepEqual(ca.HealthCheck, sa.HealthCheck) ||
		ca.ReadOnly != sa.ReadOnly || !slices.Equal(ca.CapDrop, sa.CapDrop) {
		t.Errorf("registry-auth's mounts, health check or hardening differ: compose %v %+v %v %v, stack %v %+v %v %v",
			mountTargets(ca), ca.HealthCheck, ca.ReadOnly, ca.CapDrop, mountTargets(sa), sa.HealthCheck, sa.ReadOnly, sa.CapDrop)
	}
	if !reflect.DeepEqual(compose.Services["registry"].Environment, stack.Services["registry"].Environment) {
		t.Errorf("the registry's environment differs")
	}

	// Networks: the same ones, the same internal ones, shared by the same services.
	for name, n := range compose.Networks {
		if s, ok := stack.Networks[name]; !ok || s.Internal != n.Internal {
			t.Errorf("network %s: compose internal=%v, stack has it %v internal=%v", name, n.Internal, ok, s.Internal)
		}
	}
	for _, svc := range []string{"traefik", "registry", "auth"} {
		if c, s := slices.Sorted(maps.Keys(compose.Services[svc].Networks)), slices.Sorted(maps.Keys(stack.Services[svc].Networks)); !slices.Equal(c, s) {
			t.Errorf("%s's networks: compose %v, stack %v", svc, c, s)
		}
	}

	// Traefik's public entry point, copied into the Swarm static configuration.
	if c, s := entryPoint(t, filepath.Join(root, "traefik/traefik.yml"), "websecure"), entryPoint(t, filepath.Join(root, "deploy/swarm/traefik.yml"), "websecure"); c != s {
		t.Errorf("the websecure entry points differ:\ntraefik/traefik.yml:\n%s\ndeploy/swarm/traefik.yml:\n%s", c, s)
	}
}

// deployLabels are svc's labels under deploy (Swarm's service labels, which Traefik reads).
func deployLabels(t *testing.T, svc types.ServiceConfig) types.Labels {
	t.Helper()
	if svc.Deploy == nil || len(svc.Deploy.Labels) == 0 {
		t.Fatalf("%s has no deploy.labels", svc.Name)
	}
	return svc.Deploy.Labels
}

// without is labels without the keys drop picks.
func without(labels types.Labels, drop func(string) bool) map[string]string {
	out := map[string]string{}
	for k, v := range labels {
		if !drop(k) {
			out[k] = v
		}
	}
	return out
}

// mountTargets are svc's mount points with their read-only flag.
func mountTargets(svc types.ServiceConfig) map[string]bool {
	out := map[string]bool{}
	for _, v := range svc.Volumes {
		out[v.Target] = v.ReadOnly
	}
	return out
}

// entryPoint is the block of the entry point name in a Traefik static configuration file:
// its line and every more indented line after it, comments included.
func entryPoint(t *testing.T, file, name string) string {
	t.Helper()
	data, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	var block []string
	in := false
	for _, line := range strings.Split(string(data), "\n") {
		switch {
		case line == "  "+name+":":
			in = true
		case in && line != "" && !strings.HasPrefix(line, "   "):
			in = false
		}
		if in {
			block = append(block, line)
		}
	}
	if len(block) < 2 {
		t.Fatalf("%s has no entry point %s", file, name)
	}
	return strings.Join(block, "\n")
}
