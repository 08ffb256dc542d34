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
	ctx := context.Background()
	var wg sync.WaitGroup
	paths := make([]string, 2)
	errs := make([]error, 2)
	for i := range paths {
		wg.Add(1)
		go func() {
			defer wg.Done()
			paths[i], errs[i] = BuildRegistry(ctx)
		}()
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
	out, err := exec.Command(paths[0], "--version").CombinedOutput()
	if err != nil || !strings.Contains(string(out), RegistryVersion) {
		t.Fatalf("%s --version: %v, output %q, want it to name %s", paths[0], err, out, RegistryVersion)
	}
}
