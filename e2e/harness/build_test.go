package harness

import (
	"context"
	"os/exec"
	"strings"
	"sync"
	"testing"
)

// TestBuildRegistryConcurrent builds (or finds in the cache) the registry from
// two goroutines at once and checks that both get the same working binary.
func TestBuildRegistryConcurrent(t *testing.T) {
	bin := buildTwice(t, BuildRegistry)
	out, err := exec.Command(bin, "--version").CombinedOutput()
	if err != nil || !strings.Contains(string(out), RegistryVersion) {
		t.Fatalf("%s --version: %v, output %q, want it to name %s", bin, err, out, RegistryVersion)
	}
}

// TestBuildTraefikConcurrent does the same for Traefik (minutes the first
// time on a new machine, instant from the cache).
func TestBuildTraefikConcurrent(t *testing.T) {
	bin := buildTwice(t, BuildTraefik)
	out, err := exec.Command(bin, "version").CombinedOutput()
	if err != nil || !strings.Contains(string(out), "Version:") {
		t.Fatalf("%s version: %v, output %q", bin, err, out)
	}
}

// buildTwice runs build from two goroutines at once and returns the path
// both got.
func buildTwice(t *testing.T, build func(context.Context) (string, error)) string {
	t.Helper()
	var wg sync.WaitGroup
	paths := make([]string, 2)
	errs := make([]error, 2)
	for i := range paths {
		wg.Go(func() { paths[i], errs[i] = build(context.Background()) })
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Fatalf("builder %d: %v", i, err)
		}
	}
	if paths[0] != paths[1] {
		t.Fatalf("got paths %q and %q, want the same", paths[0], paths[1])
	}
	return paths[0]
}

// TestBuildRegistryAuthVersion: the binary reports the checkout's git
// describe, as a manual build does, not "dev".
func TestBuildRegistryAuthVersion(t *testing.T) {
	ctx := context.Background()
	bin, err := BuildRegistryAuth(ctx)
	if err != nil {
		t.Fatal(err)
	}
	root, err := RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	want, err := exec.Command("git", "-C", root, "describe", "--always", "--dirty").Output()
	if err != nil {
		t.Fatalf("git describe: %v (the harness stamps the binary with it)", err)
	}
	out, err := exec.Command(bin, "version").Output()
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.TrimSpace(string(out)); !strings.Contains(got, strings.TrimSpace(string(want))) {
		t.Errorf("registry-auth version: got %q, want it to name %s", got, want)
	}
}
