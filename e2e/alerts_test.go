package e2e_test

import (
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/registry-auth/registry-auth/e2e/harness"
)

// TestAlertRules: deploy/prometheus/alerts.yml is valid for Prometheus's own promtool, and
// its unit tests (alerts.test.yml) pass: each alert fires on the series it is for, after its
// `for`, and not on a blip.
func TestAlertRules(t *testing.T) {
	t.Parallel()
	promtool := harness.RequireTool(t, "promtool", "prometheus")
	root, err := harness.RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(root, "deploy", "prometheus")
	for _, args := range [][]string{{"check", "rules", "alerts.yml"}, {"test", "rules", "alerts.test.yml"}} {
		cmd := exec.Command(promtool, args...)
		cmd.Dir = dir
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Errorf("promtool %v: %v\n%s", args, err, out)
		}
	}
}
