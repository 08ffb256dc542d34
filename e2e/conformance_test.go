package e2e

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/registry-auth/registry-auth/e2e/harness"
)

// conformanceLine is one test's result in the conformance program's report:
// its path of names and Pass, FAIL, Skip or Disabled.
var conformanceLine = regexp.MustCompile(`(?m)^\s+(OCI Conformance Test/.*): (Pass|FAIL|Skip|Disabled|Error)$`)

// runConformance runs the OCI conformance program against registry (host:port)
// with repositories under repo, and returns each test's result by name.
func runConformance(t *testing.T, bin, registry, tlsMode, repo string, env ...string) map[string]string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin)
	cmd.Dir = t.TempDir()
	cmd.Env = append(os.Environ(), append([]string{
		"OCI_REGISTRY=" + registry, "OCI_TLS=" + tlsMode, "OCI_REPO1=" + repo + "/repo1", "OCI_REPO2=" + repo + "/repo2",
		"OCI_RESULTS_DIR=" + filepath.Join(cmd.Dir, "results"), "OCI_LOG=error",
	}, env...)...)
	out, err := cmd.CombinedOutput()
	if ctx.Err() != nil {
		t.Fatalf("conformance against %s: %v", registry, ctx.Err())
	}
	results := map[string]string{}
	for _, m := range conformanceLine.FindAllStringSubmatch(string(out), -1) {
		results[m[1]] = m[2]
	}
	if len(results) == 0 {
		t.Fatalf("conformance against %s printed no results (%v):\n%s", registry, err, out)
	}
	return results
}

// TestConformance runs the OCI distribution-spec conformance program, the
// registry API's own test suite, once against the registry directly and once
// through Traefik and registry-auth as the pusher: every test that passes
// against the registry passes through the chain. (What fails against the
// registry itself, referrers and sha512 among it, is the registry's.)
func TestConformance(t *testing.T) {
	bin, err := harness.BuildConformance(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	s := startStack(t)
	// Each side runs twice, in repositories of its own: a few of the suite's
	// tests flip between runs against the registry itself (one did once in five
	// runs here), so a test counts as passing against the registry when it passed
	// both times, and as lost in the chain when it failed there both times.
	var direct, chain [2]map[string]string
	for i := range 2 {
		direct[i] = runConformance(t, bin, s.RegistryAddr, "disabled", fmt.Sprintf("e2e/conformance-direct-%d", i))
		chain[i] = runConformance(t, bin, s.Addr, "enabled", fmt.Sprintf("e2e/conformance-chain-%d", i),
			"SSL_CERT_FILE="+s.Certs.CAFile, "OCI_USERNAME="+pusher.name, "OCI_PASSWORD="+pusher.password)
	}
	count := func(results map[string]string) map[string]int {
		n := map[string]int{}
		for _, r := range results {
			n[r]++
		}
		return n
	}
	t.Logf("against the registry: %v, %v; through Traefik and registry-auth: %v, %v", count(direct[0]), count(direct[1]), count(chain[0]), count(chain[1]))
	if n := count(direct[0])["Pass"]; n < 100 {
		t.Fatalf("only %d tests passed against the registry itself: the run is broken", n)
	}
	var lost []string
	for name, result := range direct[0] {
		if result == "Pass" && direct[1][name] == "Pass" && chain[0][name] != "Pass" && chain[1][name] != "Pass" {
			lost = append(lost, name+": "+chain[0][name])
		}
	}
	if len(lost) > 0 {
		t.Errorf("%d tests pass against the registry but not through the chain:\n  %s", len(lost), strings.Join(lost, "\n  "))
	}
}
