package e2e

import (
	"context"
	"fmt"
	"os"
	"testing"
	"time"

	"github.com/registry-auth/registry-auth/e2e/harness"
)

// TestMain builds (or finds in the cache) Traefik and the registry once,
// before any test runs and before go test's per-test alarm starts: the first
// Traefik build on a new machine takes minutes. (The go command still kills
// the whole run at -timeout plus one minute: on a new machine, run with
// -timeout 30m.)
func TestMain(m *testing.M) {
	builds := []struct {
		name  string
		build func(context.Context) (string, error)
	}{
		{"Traefik " + harness.TraefikVersion, harness.BuildTraefik},
		{"registry " + harness.RegistryVersion, harness.BuildRegistry},
		{"OCI conformance program " + harness.ConformanceVersion, harness.BuildConformance},
		// TestKubernetes's API server: about half an hour on two cores, the first time.
		{"kube-apiserver " + harness.KubernetesVersion, harness.BuildKubeAPIServer},
	}
	for _, b := range builds {
		start := time.Now()
		if _, err := b.build(context.Background()); err != nil {
			fmt.Fprintf(os.Stderr, "e2e: build %s: %v\n", b.name, err)
			os.Exit(1)
		}
		if d := time.Since(start); d > 5*time.Second {
			fmt.Fprintf(os.Stderr, "e2e: built %s in %v (cached from now on)\n", b.name, d.Round(time.Second))
		}
	}
	os.Exit(m.Run())
}
