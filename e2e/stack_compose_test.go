package e2e_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// dockerCLI runs the docker CLI in a stack's project directory with a DOCKER_CONFIG of its
// own, so that logins never touch ~/.docker.
type dockerCLI struct {
	dir          string // the project directory: a copy of the repo's stack files plus test-made auth/ and certs/
	dockerConfig string
}

// docker runs the docker CLI with stdin (may be nil) and returns its combined output.
func (d *dockerCLI) docker(ctx context.Context, stdin io.Reader, args ...string) (string, error) {
	return run(ctx, d.dir, []string{"DOCKER_CONFIG=" + d.dockerConfig}, stdin, "docker", args...)
}

// composeStack drives one Compose project made from the repository's own
// docker-compose.yml with Compose and the docker CLI.
type composeStack struct {
	t *testing.T
	dockerCLI
	project     string   // unique Compose project name
	composeCmd  []string // `docker compose` or docker-compose (harness.ComposeCommand)
	logsPrinted bool
}

// compose runs Compose on the stack's project and returns its combined output.
func (s *composeStack) compose(ctx context.Context, args ...string) (string, error) {
	return s.composeEnv(ctx, nil, args...)
}

// composeEnv is compose with extra environment (variables the compose file interpolates).
func (s *composeStack) composeEnv(ctx context.Context, env []string, args ...string) (string, error) {
	full := append([]string{}, s.composeCmd[1:]...)
	full = append(full, "-p", s.project, "-f", filepath.Join(s.dir, "docker-compose.yml"))
	full = append(full, args...)
	return run(ctx, s.dir, env, nil, s.composeCmd[0], full...)
}

// containerID returns the ID of the service's container.
func (s *composeStack) containerID(ctx context.Context, service string) (string, error) {
	out, err := s.compose(ctx, "ps", "-q", service)
	if err != nil {
		return "", err
	}
	id := strings.TrimSpace(lastLine(out))
	if id == "" {
		return "", fmt.Errorf("no container for service %s", service)
	}
	return id, nil
}

// inspect returns docker inspect --format format for the service's container.
func (s *composeStack) inspect(ctx context.Context, service, format string) (string, error) {
	id, err := s.containerID(ctx, service)
	if err != nil {
		return "", err
	}
	out, err := s.docker(ctx, nil, "inspect", "--format", format, id)
	return strings.TrimSpace(out), err
}

// printLogsOnFailure prints every service's log once, if the test has failed.
func (s *composeStack) printLogsOnFailure(ctx context.Context) {
	if !s.t.Failed() || s.logsPrinted {
		return
	}
	s.logsPrinted = true
	out, err := s.compose(ctx, "logs", "--no-color", "--timestamps", "--tail=200")
	s.t.Logf("a step failed; service logs, last 200 lines each (compose logs, err=%v):\n%s", err, out)
	ps, _ := s.compose(ctx, "ps")
	s.t.Logf("compose ps:\n%s", ps)
}

// down stops and removes the project's containers, networks and volumes.
func (s *composeStack) down(ctx context.Context) (string, error) {
	return s.compose(ctx, "down", "-v", "--remove-orphans", "--timeout", "10")
}

// leftovers lists what the engine still holds for the project: containers,
// networks and volumes labelled with its name, and the backend network that
// docker-compose.yml names explicitly.
func (s *composeStack) leftovers(ctx context.Context) ([]string, error) {
	var left []string
	filter := "label=com.docker.compose.project=" + s.project
	for _, kind := range [][]string{
		{"ps", "-a", "-q", "--filter", filter},
		{"network", "ls", "-q", "--filter", filter},
		{"volume", "ls", "-q", "--filter", filter},
	} {
		out, err := s.docker(ctx, nil, kind...)
		if err != nil {
			return nil, err
		}
		for _, id := range strings.Fields(out) {
			left = append(left, kind[0]+" "+id)
		}
	}
	if _, err := s.docker(ctx, nil, "network", "inspect", backendNetwork); err == nil {
		left = append(left, "network "+backendNetwork)
	}
	return left, nil
}

// run runs name with args in dir, with extra environment env and stdin (may
// be nil), and returns stdout and stderr combined. The error includes the
// command line and the output.
func run(ctx context.Context, dir string, env []string, stdin io.Reader, name string, args ...string) (string, error) {
	var out bytes.Buffer
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), env...)
	cmd.Stdin = stdin
	cmd.Stdout = &out
	cmd.Stderr = &out
	cmd.WaitDelay = 5 * time.Second
	err := cmd.Run()
	if err != nil {
		err = fmt.Errorf("%s %s: %w\n%s", name, strings.Join(args, " "), err, out.String())
	}
	return out.String(), err
}

// pollUntil calls attempt until it reports done or until an attempt would
// start more than within after start. It returns how long after start the
// successful attempt began; on timeout the error holds the last attempt's
// description. Attempts are paced by a 50 ms ticker.
func pollUntil(start time.Time, within time.Duration, attempt func() (done bool, last string)) (time.Duration, error) {
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	last := "no attempt"
	for n := 0; ; n++ {
		began := time.Now()
		if began.Sub(start) > within {
			return 0, fmt.Errorf("not done within %v after %d attempts; last: %s", within, n, last)
		}
		var done bool
		done, last = attempt()
		if done {
			return began.Sub(start), nil
		}
		<-tick.C
	}
}

// randomHex returns n random bytes as hex.
func randomHex(n int) string {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		panic(err)
	}
	return hex.EncodeToString(b)
}

// lastLine returns the last non-empty line of s (docker-compose may print
// warnings before its answer).
func lastLine(s string) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	return lines[len(lines)-1]
}

// copyFileMode copies src to dst with mode.
func copyFileMode(src, dst string, mode os.FileMode) error {
	b, err := os.ReadFile(src)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
		return err
	}
	return os.WriteFile(dst, b, mode)
}
