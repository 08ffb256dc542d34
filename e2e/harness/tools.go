package harness

import (
	"bytes"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// InCI reports whether the tests run in CI (.ci/run sets CI=true). There a missing
// program is a failure, never a skip: a green run must mean every suite ran.
func InCI() bool {
	v := os.Getenv("CI")
	return v != "" && v != "0" && !strings.EqualFold(v, "false")
}

// Unavailable stops t because something it needs is missing: a failure in CI, a skip
// elsewhere. how says how to get it (a package to install, a service to start), so the
// message tells a developer how to enable the test.
func Unavailable(t testing.TB, what, how string) {
	t.Helper()
	if InCI() {
		t.Fatalf("%s; %s (CI is set, so this is a failure, not a skip; scripts/test.sh installs it)", what, how)
	}
	t.Skipf("%s; %s to run this test (scripts/test.sh does it)", what, how)
}

// sbinDirs are searched after PATH: Debian puts apache2 there, and a non-root PATH
// often lacks them.
var sbinDirs = []string{"/usr/sbin", "/sbin", "/usr/local/sbin"}

// LookTool returns the path of the program name, searching PATH and then the sbin
// directories.
func LookTool(name string) (string, error) {
	if p, err := exec.LookPath(name); err == nil {
		return p, nil
	}
	for _, dir := range sbinDirs {
		p := filepath.Join(dir, name)
		if fi, err := os.Stat(p); err == nil && !fi.IsDir() && fi.Mode()&0o111 != 0 {
			return p, nil
		}
	}
	return "", exec.ErrNotFound
}

// RequireTool returns the path of the program name, which Debian's package pkg installs;
// when it is missing the test stops through Unavailable.
func RequireTool(t testing.TB, name, pkg string) string {
	t.Helper()
	p, err := LookTool(name)
	if err != nil {
		Unavailable(t, name+" is not installed", "apt-get install "+pkg)
	}
	return p
}

// RequireDocker stops t through Unavailable unless a Docker engine answers.
func RequireDocker(t testing.TB) {
	t.Helper()
	RequireTool(t, "docker", "docker.io")
	if out, err := exec.Command("docker", "version", "--format", "{{.Server.Version}}").CombinedOutput(); err != nil {
		Unavailable(t, "no Docker engine answers (docker version: "+err.Error()+": "+string(bytes.TrimSpace(out))+")",
			"start it (service docker start, or dockerd &)")
	}
}

// ComposeCommand returns the command that runs Docker Compose here: the plugin
// (`docker compose`) when the docker CLI has it, else the standalone `docker-compose`
// (v1 or v2). Both take the same arguments for what the tests do.
func ComposeCommand() ([]string, error) {
	if err := exec.Command("docker", "compose", "version").Run(); err == nil {
		return []string{"docker", "compose"}, nil
	}
	if p, err := exec.LookPath("docker-compose"); err == nil {
		if err := exec.Command(p, "version").Run(); err == nil {
			return []string{p}, nil
		}
	}
	return nil, errors.New("neither `docker compose` (the Compose plugin) nor `docker-compose` works")
}

// RequireCompose returns ComposeCommand's answer, or stops t through Unavailable.
func RequireCompose(t testing.TB) []string {
	t.Helper()
	cmd, err := ComposeCommand()
	if err != nil {
		Unavailable(t, err.Error(), "apt-get install docker-compose (or Docker's docker-compose-plugin)")
	}
	return cmd
}
