package e2e_test

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/registry-auth/registry-auth/e2e/harness"
)

const (
	// registryHost is where the stack publishes Traefik (docker-compose.yml).
	registryHost = "127.0.0.1:5043"
	// backendNetwork is the network name docker-compose.yml fixes for Traefik
	// and the registry (traefik.yml's providers.docker.network).
	backendNetwork = "registry-auth-backend"
	// reloadWithin is how soon an edit of ./auth/htpasswd must take effect.
	reloadWithin = time.Second
)

// TestStack runs the repository's own docker-compose.yml on the local Docker
// engine and does what the Apache recipe's users did, with the real docker CLI.
//
// No image can be pulled on the project's machines, so the three images the
// compose file names are built locally first: traefik:v3.6.12 and
// registry:3.1.2 FROM scratch from static binaries (kept if the engine already
// has them), registry-auth:local from the repository's Dockerfile (its
// binary-less "runtime" stage plus a binary built from this checkout).
// No override file is used: "docker compose up --no-build" starts the compose
// file as it is, and --no-build only stops Compose from building the auth
// image from source, which would pull the golang image.
//
// It needs the docker CLI, Compose (the plugin or docker-compose), a reachable engine, port 5043
// free, and write access to /etc/docker/certs.d (it installs the stack's CA
// for 127.0.0.1:5043 and restores what was there afterwards).
func TestStack(t *testing.T) {
	if testing.Short() {
		t.Skip("stack test: starts containers on the Docker engine; skipped in -short mode")
	}
	harness.RequireDocker(t)
	composeCmd := harness.RequireCompose(t)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Minute)
	defer cancel()
	_, dir := prepareStack(ctx, t)

	s := &composeStack{
		t:          t,
		dockerCLI:  dockerCLI{dir: dir, dockerConfig: t.TempDir()},
		project:    "rastack" + randomHex(4),
		composeCmd: composeCmd,
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		defer cancel()
		s.printLogsOnFailure(ctx)
		if out, err := s.down(ctx); err != nil {
			t.Errorf("teardown: %v\n%s", err, out)
		}
	})
	start := time.Now()
	if out, err := s.compose(ctx, "up", "-d", "--no-build"); err != nil {
		t.Fatalf("compose up: %v", err)
	} else {
		t.Logf("compose up -d --no-build (%v):\n%s", time.Since(start).Round(time.Millisecond), out)
	}
	client := tlsClient(t, filepath.Join(dir, "certs", "domain.crt"))
	waitForChallenge(ctx, t, client)
	t.Logf("stack answering through Traefik %v after up", time.Since(start).Round(time.Millisecond))

	image := localImage(ctx, t, &s.dockerCLI)
	users := map[string]string{"alice": alicePassword, "bob": bobPassword}
	var pushedDigest, refusedPush string

	t.Run("1 pusher logs in, tags and pushes", func(t *testing.T) {
		mustLogin(ctx, t, &s.dockerCLI, "alice", users["alice"])
		ref := registryHost + "/stacktest/hello:" + image.tag
		mustDocker(ctx, t, &s.dockerCLI, "tag", image.name, ref)
		out := mustDocker(ctx, t, &s.dockerCLI, "push", ref)
		m := regexp.MustCompile(`digest: (sha256:[0-9a-f]{64})`).FindStringSubmatch(out)
		if m == nil {
			t.Fatalf("docker push printed no digest:\n%s", out)
		}
		pushedDigest = m[1]
		t.Logf("pushed %s as %s", ref, pushedDigest)

		// Upload Locations point back through Traefik (REGISTRY_HTTP_RELATIVEURLS),
		// never at the registry's own address.
		req, _ := http.NewRequestWithContext(ctx, http.MethodPost, "https://"+registryHost+"/v2/stacktest/hello/blobs/uploads/", nil)
		req.SetBasicAuth("alice", users["alice"])
		resp, err := client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if loc := resp.Header.Get("Location"); resp.StatusCode != http.StatusAccepted || !strings.HasPrefix(loc, "/v2/stacktest/hello/blobs/uploads/") {
			t.Errorf("upload start: status %d, Location %q; want 202 and a relative /v2/stacktest/hello/blobs/uploads/ URL", resp.StatusCode, loc)
		}
	})

	t.Run("2 read-only user pulls, and is refused a push with denied", func(t *testing.T) {
		ref := registryHost + "/stacktest/hello:" + image.tag
		mustLogin(ctx, t, &s.dockerCLI, "bob", users["bob"])
		// Remove the image entirely, so the pull downloads manifest and layer.
		mustDocker(ctx, t, &s.dockerCLI, "rmi", "-f", ref, image.name)
		out := mustDocker(ctx, t, &s.dockerCLI, "pull", ref)
		m := regexp.MustCompile(`Digest: (sha256:[0-9a-f]{64})`).FindStringSubmatch(out)
		switch {
		case m == nil:
			t.Errorf("docker pull printed no digest:\n%s", out)
		case m[1] != pushedDigest:
			t.Errorf("pulled digest %s, want the pushed %s", m[1], pushedDigest)
		}

		refused := registryHost + "/stacktest/bob-push:" + image.tag
		mustDocker(ctx, t, &s.dockerCLI, "tag", ref, refused)
		out, err := s.docker(ctx, nil, "push", refused)
		refusedPush = out
		if err == nil {
			t.Fatalf("docker push as the read-only user succeeded, want it refused:\n%s", out)
		}
		if !strings.Contains(out, "denied") {
			t.Errorf("docker push as the read-only user failed without saying denied:\n%s", out)
		}
		t.Logf("refused push, as docker prints it:\n%s", strings.TrimSpace(out))
		// Nothing of the refused push reached the registry.
		if code := registryGet(t, client, "alice", users["alice"], "/v2/stacktest/bob-push/tags/list"); code != http.StatusNotFound {
			t.Errorf("tags of the refused repository: status %d, want 404", code)
		}
	})

	t.Run("2b the refused push is final, with the registry's message", func(t *testing.T) {
		// docs/registry-protocol.md, "Error bodies and how clients react":
		// DENIED is not retried and docker prints
		// "denied: requested access to the resource is denied". The docker
		// engine decodes an error whose message is exactly the code's default
		// text, with no detail, into a bare error code: it then retries the
		// push five times (about 50 s) and prints only "denied".
		if refusedPush == "" {
			t.Fatal("step 2 did not get as far as the refused push")
		}
		if !strings.Contains(refusedPush, "denied: requested access to the resource is denied") {
			t.Errorf("the refused push did not print \"denied: requested access to the resource is denied\":\n%s", refusedPush)
		}
		if strings.Contains(refusedPush, "Retrying") {
			t.Errorf("docker retried the refused push (a DENIED answer must be final):\n%s", refusedPush)
		}
	})

	t.Run("3 wrong password is unauthorized", func(t *testing.T) {
		out, err := s.docker(ctx, strings.NewReader("not-"+users["bob"]), "login", registryHost, "-u", "bob", "--password-stdin")
		if err == nil {
			t.Fatalf("docker login with a wrong password succeeded:\n%s", out)
		}
		if !strings.Contains(strings.ToLower(out), "unauthorized") {
			t.Errorf("docker login with a wrong password failed without saying unauthorized:\n%s", out)
		}
		t.Logf("wrong password, as docker prints it:\n%s", strings.TrimSpace(out))
	})

	t.Run("3b pull with a wrong stored password says unauthorized: authentication required", func(t *testing.T) {
		// A password stored by an earlier login and changed on the server
		// since: docker pull must fail with the registry's message (the same
		// decoding as in step 2b turns a default-text error into a bare
		// "unauthorized").
		writeDockerAuth(t, s.dockerConfig, "bob", "not-"+users["bob"])
		began := time.Now()
		out, err := s.docker(ctx, nil, "pull", registryHost+"/stacktest/hello:"+image.tag)
		if err == nil {
			t.Fatalf("docker pull with a wrong stored password succeeded:\n%s", out)
		}
		if !strings.Contains(out, "unauthorized: authentication required") {
			t.Errorf("docker pull with a wrong stored password failed without saying \"unauthorized: authentication required\":\n%s", out)
		}
		t.Logf("pull with a wrong stored password (%v), as docker prints it:\n%s", time.Since(began).Round(time.Millisecond), strings.TrimSpace(out))
	})

	t.Run("4 users added and removed while running", func(t *testing.T) {
		before := containerStates(ctx, t, s)
		htpasswdFile := filepath.Join(dir, "auth", "htpasswd")

		// An editor saves by writing a new file and renaming it over the old one.
		carolLine := apacheHash(t, "carol", "carol-secret")
		inode := inodeOf(t, htpasswdFile)
		editorSave(t, htpasswdFile, func(old string) string { return old + carolLine + "\n" })
		written := time.Now()
		if inodeOf(t, htpasswdFile) == inode {
			t.Fatal("editor-style save kept the inode; the test would not exercise a rename")
		}
		expectLogin(ctx, t, &s.dockerCLI, "carol", "carol-secret", true, written)
		editorSave(t, htpasswdFile, func(old string) string { return strings.Replace(old, carolLine+"\n", "", 1) })
		expectLogin(ctx, t, &s.dockerCLI, "carol", "carol-secret", false, time.Now())

		// Apache's htpasswd rewrites the file in place (same inode).
		inode = inodeOf(t, htpasswdFile)
		runOK(ctx, t, "htpasswd", "-b", "-B", "-C", "5", htpasswdFile, "dave", "dave-secret")
		written = time.Now()
		if inodeOf(t, htpasswdFile) != inode {
			t.Fatal("htpasswd replaced the file instead of rewriting it in place; the test would not exercise that case")
		}
		expectLogin(ctx, t, &s.dockerCLI, "dave", "dave-secret", true, written)
		runOK(ctx, t, "htpasswd", "-D", htpasswdFile, "dave")
		expectLogin(ctx, t, &s.dockerCLI, "dave", "dave-secret", false, time.Now())

		if after := containerStates(ctx, t, s); after != before {
			t.Errorf("containers restarted while users changed:\nbefore %s\nafter  %s", before, after)
		}
	})

	t.Run("4b access policy mounted with the users, edited while running", func(t *testing.T) {
		policyFile := filepath.Join(dir, "auth", "policy.yaml")
		writeServiceFile(t, policyFile, stackPolicy)
		// The documented way: the compose file passes REGISTRY_AUTH_POLICY through.
		if out, err := s.composeEnv(ctx, []string{"REGISTRY_AUTH_POLICY=/auth/policy.yaml"}, "up", "-d", "--no-build", "auth"); err != nil {
			t.Fatalf("compose up auth with a policy: %v\n%s", err, out)
		}
		// Healthy first: Traefik reconfigures its routes when the container's health
		// changes, and a request in that moment finds no router (Traefik's own 404).
		recreated := time.Now()
		if _, err := pollUntil(recreated, time.Minute, func() (bool, string) {
			out, err := s.inspect(ctx, "auth", "{{.State.Health.Status}}")
			return err == nil && out == "healthy", out
		}); err != nil {
			t.Fatalf("the recreated auth container did not become healthy: %v", err)
		}
		// In force once bob, who is in no group, may start an upload in bob/.
		took, err := pollUntil(recreated, time.Minute, func() (bool, string) {
			req, _ := http.NewRequestWithContext(ctx, http.MethodPost, "https://"+registryHost+"/v2/bob/probe/blobs/uploads/", nil)
			req.SetBasicAuth("bob", users["bob"])
			resp, err := client.Do(req)
			if err != nil {
				return false, err.Error()
			}
			resp.Body.Close()
			return resp.StatusCode == http.StatusAccepted, resp.Status
		})
		if err != nil {
			t.Fatalf("the policy was not in force after recreating the auth container: %v", err)
		}
		t.Logf("auth container recreated with the policy, in force %v later", took.Round(time.Millisecond))
		ref := func(repo string) string { return registryHost + "/" + repo + ":" + image.tag }

		// The pusher publishes an image; bob pushes to his personal namespace, which the
		// push group rule alone never allowed.
		mustLogin(ctx, t, &s.dockerCLI, "alice", users["alice"])
		// Step 2 removed the local image and pulled it back under its registry name.
		mustDocker(ctx, t, &s.dockerCLI, "tag", ref("stacktest/hello"), ref("public/hello"))
		mustDocker(ctx, t, &s.dockerCLI, "push", ref("public/hello"))
		mustLogin(ctx, t, &s.dockerCLI, "bob", users["bob"])
		mustDocker(ctx, t, &s.dockerCLI, "tag", ref("stacktest/hello"), ref("bob/hello"))
		mustDocker(ctx, t, &s.dockerCLI, "push", ref("bob/hello"))

		// Classic docker pulling a public repository without credentials: its first
		// GET /v2/ is challenged (it must be, or docker would never send credentials for
		// a push), and without credentials docker gives up on the endpoint at once; for a
		// registry on 127.0.0.0/8, which docker treats as insecure, it then retries over
		// plain HTTP, which Traefik's TLS-only router answers 404. So classic docker needs
		// a login (any user) even for public/; go-containerregistry and skopeo pull such
		// repositories anonymously (TestPolicy in e2e/policy_test.go). README.md says so.
		mustDocker(ctx, t, &s.dockerCLI, "logout", registryHost)
		mustDocker(ctx, t, &s.dockerCLI, "rmi", "-f", ref("public/hello"))
		out, err := s.docker(ctx, nil, "pull", ref("public/hello"))
		t.Logf("anonymous docker pull of a public repository (err %v):\n%s", err, strings.TrimSpace(out))
		if err == nil {
			t.Errorf("anonymous classic docker pull of public/hello succeeded; README.md says it needs a login: update it")
		}
		mustLogin(ctx, t, &s.dockerCLI, "bob", users["bob"])
		mustDocker(ctx, t, &s.dockerCLI, "pull", ref("public/hello"))

		// An edit while it runs: bob's namespace becomes read-only for him.
		editorSave(t, policyFile, func(old string) string {
			return strings.Replace(old, "rules:\n", "rules:\n  - subjects: [user:bob]\n    repositories: [\"bob/**\"]\n    actions: [pull]\n", 1)
		})
		edited := time.Now()
		took, err = pollUntil(edited, reloadWithin, func() (bool, string) {
			out, err := s.docker(ctx, nil, "push", ref("bob/hello"))
			return err != nil && strings.Contains(out, "denied"), out
		})
		if err != nil {
			t.Fatalf("bob's push was still accepted %v after the policy edit: %v", reloadWithin, err)
		}
		t.Logf("policy edit in force for docker push in an attempt started %v after the edit", took.Round(time.Millisecond))
	})

	t.Run("4c users added and removed with the README's compose command", func(t *testing.T) {
		// README.md, "Users and the push group": a one-off container of the auth service
		// with ./auth mounted writable beside the service's read-only /auth, as the
		// directory's owner with the service's group. (Mounting it over /auth instead is
		// not reliable: docker-compose 1.29 then mounts either copy, and the commands
		// found /auth read-only in some runs.)
		ra := func(stdin string, args ...string) (string, error) {
			full := append([]string{}, s.composeCmd[1:]...)
			full = append(full, "-p", s.project, "-f", filepath.Join(dir, "docker-compose.yml"),
				"run", "--rm", "-T", "--user", fmt.Sprintf("%d:%d", os.Getuid(), serviceGID), "-v", filepath.Join(dir, "auth")+":/auth-rw",
				"-e", "REGISTRY_AUTH_HTPASSWD=/auth-rw/htpasswd", "-e", "REGISTRY_AUTH_GROUPS=/auth-rw/groups", "auth")
			return run(ctx, dir, nil, strings.NewReader(stdin), s.composeCmd[0], append(full, args...)...)
		}
		out, err := ra("erin-secret-1\n", "user", "add", "--wait", "https://auth:8080", "erin")
		if err != nil {
			t.Fatalf("user add through compose run: %v\n%s", err, out)
		}
		t.Logf("user add through compose run:\n%s", strings.TrimSpace(out))
		mustLogin(ctx, t, &s.dockerCLI, "erin", "erin-secret-1") // at once: --wait saw the service load it
		if out, err := ra("", "user", "remove", "--wait", "https://auth:8080", "erin"); err != nil {
			t.Fatalf("user remove through compose run: %v\n%s", err, out)
		}
		if out, err := s.docker(ctx, strings.NewReader("erin-secret-1"), "login", registryHost, "-u", "erin", "--password-stdin"); err == nil {
			t.Errorf("the next login of a removed user succeeded:\n%s", out)
		}
		// The files stay readable by the service: mode 0640, group 65532.
		for _, f := range []string{"htpasswd", "groups"} {
			fi, err := os.Stat(filepath.Join(dir, "auth", f))
			if err != nil {
				t.Fatal(err)
			}
			if gid := fi.Sys().(*syscall.Stat_t).Gid; fi.Mode().Perm() != 0o640 || gid != serviceGID {
				t.Errorf("%s after the commands: mode %v group %d, want 0640 and %d", f, fi.Mode().Perm(), gid, serviceGID)
			}
		}
	})

	t.Run("5 registry and auth service not reachable from the host", func(t *testing.T) {
		for _, svc := range []string{"registry", "auth"} {
			var ports map[string][]struct{ HostIP, HostPort string }
			out, err := s.inspect(ctx, svc, "{{json .NetworkSettings.Ports}}")
			if err != nil {
				t.Fatal(err)
			}
			if err := json.Unmarshal([]byte(out), &ports); err != nil {
				t.Fatalf("%s ports %q: %v", svc, out, err)
			}
			for port, bindings := range ports {
				if len(bindings) > 0 {
					t.Errorf("%s: container port %s is published on the host: %v", svc, port, bindings)
				}
			}
			// Each sits only on an internal network.
			out, err = s.inspect(ctx, svc, "{{range $k, $v := .NetworkSettings.Networks}}{{$k}} {{end}}")
			if err != nil {
				t.Fatal(err)
			}
			for _, network := range strings.Fields(out) {
				internal, err := s.docker(ctx, nil, "network", "inspect", "--format", "{{.Internal}}", network)
				if err != nil {
					t.Fatal(err)
				}
				if strings.TrimSpace(internal) != "true" {
					t.Errorf("%s is on network %s, which is not internal", svc, network)
				}
			}
		}
		// From another network (the default bridge, where any other container
		// lands), neither answers; from the service's own network the same
		// probe does, which shows the probe works. (The Docker host itself
		// still reaches container addresses: the engine gives it an address on
		// every bridge, internal ones too.)
		// registry-auth speaks HTTPS with a certificate for the name auth: a probe
		// by IP address fails verification, which still shows a server answered.
		for _, probe := range []struct{ svc, scheme, port, path string }{
			{"registry", "http", "5000", "/v2/"},
			{"auth", "https", "8080", "/healthz"},
		} {
			out, err := s.inspect(ctx, probe.svc, "{{range $k, $v := .NetworkSettings.Networks}}{{$k}} {{$v.IPAddress}}{{end}}")
			if err != nil {
				t.Fatal(err)
			}
			network, ip, _ := strings.Cut(out, " ")
			url := probe.scheme + "://" + net.JoinHostPort(ip, probe.port) + probe.path
			answered := func(out string, err error) bool { return err == nil || strings.Contains(out, "certificate") }
			if out, err := probeFrom(ctx, s, "bridge", url); answered(out, err) {
				t.Errorf("%s answered %s from a container on the default bridge network:\n%s", probe.svc, url, out)
			}
			if out, err := probeFrom(ctx, s, network, url); !answered(out, err) {
				t.Errorf("control probe of %s from its own network %s failed, so the probe proves nothing: %v\n%s", url, network, err, out)
			}
		}
		// Traefik publishes 5043 and nothing else.
		out, err := s.inspect(ctx, "traefik", "{{range $p, $b := .NetworkSettings.Ports}}{{if $b}}{{$p}} {{end}}{{end}}")
		if err != nil {
			t.Fatal(err)
		}
		if got := strings.TrimSpace(out); got != "5043/tcp" {
			t.Errorf("traefik publishes %q, want only 5043/tcp", got)
		}
		// Through Traefik, only /v2 is routed: no default router reaches the
		// auth service (Host auth-<project>), and its /metrics is not exposed.
		for _, probe := range []struct{ host, path string }{
			{"", "/metrics"},
			{"", "/auth"},
			{"auth-" + s.project, "/"},
			{"auth-" + s.project, "/metrics"},
		} {
			if code := traefikGet(t, client, probe.host, probe.path); code != http.StatusNotFound {
				t.Errorf("GET %s with Host %q through Traefik: status %d, want 404", probe.path, probe.host, code)
			}
		}
	})

	t.Run("6 compose down leaves nothing running", func(t *testing.T) {
		s.printLogsOnFailure(ctx)
		if out, err := s.down(ctx); err != nil {
			t.Fatalf("compose down: %v\n%s", err, out)
		}
		left, err := s.leftovers(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if len(left) > 0 {
			t.Errorf("after compose down -v the engine still has: %v", left)
		}
		if _, err := net.DialTimeout("tcp", registryHost, time.Second); err == nil {
			t.Errorf("%s still accepts connections after down", registryHost)
		}
	})
}

// stackPolicy is the policy step 4b mounts: the push group's rule, personal namespaces,
// public repositories for anonymous pulls, and reading for every user.
const stackPolicy = `rules:
  - subjects: [group:pusher]
    repositories: ["**"]
    actions: [pull, push, delete]
  - subjects: [authenticated]
    repositories: ["${user}/**"]
    actions: [pull, push, delete]
  - subjects: [anonymous, authenticated]
    repositories: ["public/**"]
    actions: [pull]
  - subjects: [authenticated]
    repositories: ["**"]
    actions: [pull]
`

// Passwords of the test users (test-only secrets).
const (
	alicePassword = "alice-pushes-1"
	bobPassword   = "bob-reads-1"
)

// lockStackPort waits for the machine-wide lock of the stack test, held until the test ends:
// the stack publishes the fixed port 5043, so two runs on one machine (a developer's and
// CI's, say) take turns instead of failing.
// prepareStack readies the engine and a project directory for a stack test: it takes the
// port-5043 lock, checks that the port is free, builds the images, makes the project
// directory (prepareProjectDir) and makes docker trust its certificate. It returns the
// repository's root and the directory.
func prepareStack(ctx context.Context, t *testing.T) (root, dir string) {
	t.Helper()
	lockStackPort(ctx, t)
	ln, err := net.Listen("tcp", ":5043")
	if err != nil {
		t.Fatalf("port 5043 is busy, the stack publishes Traefik there: %v", err)
	}
	ln.Close()
	if root, err = harness.RepoRoot(); err != nil {
		t.Fatal(err)
	}
	buildImages(ctx, t)
	dir = t.TempDir()
	prepareProjectDir(ctx, t, root, dir)
	trustCA(t, filepath.Join(dir, "certs", "domain.crt"))
	return root, dir
}

func lockStackPort(ctx context.Context, t *testing.T) {
	t.Helper()
	f, err := os.OpenFile(filepath.Join(os.TempDir(), "registry-auth-stack-5043.lock"), os.O_CREATE|os.O_RDWR, 0o666)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() }) // closing releases the lock
	waited, err := pollUntil(time.Now(), 15*time.Minute, func() (bool, string) {
		return syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB) == nil, "another stack test holds " + f.Name()
	})
	if err != nil {
		t.Fatalf("waiting for the stack test lock: %v", err)
	}
	if waited > time.Second {
		t.Logf("waited %v for another stack test to finish", waited.Round(time.Second))
	}
}

// buildImages makes sure the engine has the three images docker-compose.yml names.
func buildImages(ctx context.Context, t *testing.T) {
	t.Helper()
	if err := harness.BuildStackImages(ctx, func(what string) { t.Log(what) }); err != nil {
		t.Fatal(err)
	}
}

// prepareProjectDir copies the repository's stack files into dir and makes
// the parts users make themselves: certs/ with the repository's
// scripts/make-certs.sh, and auth/ with a pusher made by "registry-auth hash"
// in the image (as the quickstart does) and a read-only user made by Apache's
// htpasswd.
func prepareProjectDir(ctx context.Context, t *testing.T, root, dir string) {
	t.Helper()
	files := []string{"docker-compose.yml", "Dockerfile", ".dockerignore", "traefik/traefik.yml"}
	dynamic, err := filepath.Glob(filepath.Join(root, "traefik", "dynamic", "*"))
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range dynamic {
		rel, _ := filepath.Rel(root, f)
		files = append(files, rel)
	}
	for _, f := range files {
		if err := copyFileMode(filepath.Join(root, f), filepath.Join(dir, f), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	runOK(ctx, t, "sh", filepath.Join(root, "scripts", "make-certs.sh"), "", filepath.Join(dir, "certs"))

	// auth/ as the README's quick start sets it up: readable by the service's
	// group (the image runs as 65532:65532), not by everyone.
	auth := filepath.Join(dir, "auth")
	if err := os.Mkdir(auth, 0o750); err != nil {
		t.Fatal(err)
	}
	if err := os.Chown(auth, -1, serviceGID); err != nil {
		t.Fatal(err)
	}
	alice, err := run(ctx, dir, nil, strings.NewReader(alicePassword), "docker", "run", "--rm", "-i", harness.RegistryAuthImage, "hash", "alice")
	if err != nil {
		t.Fatalf("registry-auth hash in the image: %v", err)
	}
	alice = strings.TrimSpace(lastLine(alice))
	if !strings.HasPrefix(alice, "alice:$2") {
		t.Fatalf("registry-auth hash printed %q, want alice:$2y$...", alice)
	}
	authFiles := map[string]string{
		"htpasswd": alice + "\n" + apacheHash(t, "bob", bobPassword) + "\n",
		"groups":   "# as in httpd.groups\npusher: alice\n",
	}
	for name, content := range authFiles {
		writeServiceFile(t, filepath.Join(auth, name), content)
	}
}

// serviceGID is the group the registry-auth image runs as (Dockerfile USER).
const serviceGID = 65532

// writeServiceFile writes content to path readable by the service's group only
// (mode 0640, group serviceGID), as an editor that keeps a file's owner and
// mode would: a temporary file in the same directory renamed over path.
func writeServiceFile(t *testing.T, path, content string) {
	t.Helper()
	tmp := filepath.Join(filepath.Dir(path), "."+filepath.Base(path)+".swp")
	if err := os.WriteFile(tmp, []byte(content), 0o640); err != nil {
		t.Fatal(err)
	}
	if err := os.Chown(tmp, -1, serviceGID); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
}

// trustCA installs cert as the CA docker uses for registryHost and restores
// the previous state of /etc/docker/certs.d/<host> when the test ends.
func trustCA(t *testing.T, cert string) {
	t.Helper()
	dir := filepath.Join("/etc/docker/certs.d", registryHost)
	caFile := filepath.Join(dir, "ca.crt")
	previous, readErr := os.ReadFile(caFile)
	_, dirErr := os.Stat(dir)
	if err := copyFileMode(cert, caFile, 0o644); err != nil {
		t.Fatalf("trusting the stack's certificate for docker needs write access to %s: %v", dir, err)
	}
	t.Cleanup(func() {
		switch {
		case readErr == nil:
			os.WriteFile(caFile, previous, 0o644)
		case errors.Is(dirErr, os.ErrNotExist):
			os.RemoveAll(dir)
		default:
			os.Remove(caFile)
		}
	})
}

// tlsClient returns an HTTP client that trusts only cert and speaks TLS 1.2+.
// Using it proves Traefik serves the stack's certificate for 127.0.0.1 (the
// docker daemon cannot prove that: it treats 127.0.0.0/8 as an insecure
// registry and skips verification).
func tlsClient(t *testing.T, cert string) *http.Client {
	t.Helper()
	pem, err := os.ReadFile(cert)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		t.Fatalf("no certificate in %s", cert)
	}
	return &http.Client{
		Timeout: 10 * time.Second,
		Transport: &http.Transport{
			TLSClientConfig:   &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12},
			DisableKeepAlives: true,
		},
	}
}

// waitForChallenge polls GET /v2/ through Traefik until it answers with the
// auth service's Basic challenge: Traefik is up, has read the registry's
// labels and the middleware, and the auth service answers.
func waitForChallenge(ctx context.Context, t *testing.T, client *http.Client) {
	t.Helper()
	_, err := pollUntil(time.Now(), time.Minute, func() (bool, string) {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "https://"+registryHost+"/v2/", nil)
		resp, err := client.Do(req)
		if err != nil {
			return false, err.Error()
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		challenge := resp.Header.Get("WWW-Authenticate")
		return resp.StatusCode == http.StatusUnauthorized && strings.HasPrefix(challenge, "Basic "),
			fmt.Sprintf("status %d, WWW-Authenticate %q", resp.StatusCode, challenge)
	})
	if err != nil {
		t.Fatalf("GET https://%s/v2/ never answered 401 with a Basic challenge: %v", registryHost, err)
	}
	// TLS 1.2 is the minimum (traefik/dynamic/tls.yml).
	legacy := client.Transport.(*http.Transport).TLSClientConfig.Clone()
	legacy.MinVersion, legacy.MaxVersion = tls.VersionTLS10, tls.VersionTLS11
	conn, err := tls.Dial("tcp", registryHost, legacy)
	if err == nil {
		conn.Close()
		t.Errorf("a TLS 1.1 handshake with Traefik succeeded, want TLS 1.2 minimum")
	}
}

// registryGet sends an authenticated GET through Traefik and returns the status.
func registryGet(t *testing.T, client *http.Client, user, password, path string) int {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, "https://"+registryHost+path, nil)
	req.SetBasicAuth(user, password)
	resp, err := client.Do(req)
	if err != nil {
		t.Fatalf("GET %s: %v", path, err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode
}

// traefikGet sends an unauthenticated GET through Traefik with the Host
// header host (the default when empty) and returns the status.
func traefikGet(t *testing.T, client *http.Client, host, path string) int {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, "https://"+registryHost+path, nil)
	if host != "" {
		req.Host = host
	}
	resp, err := client.Do(req)
	if err != nil {
		t.Fatalf("GET %s (Host %q): %v", path, host, err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode
}

// testImage is a small local image for the push and pull steps.
type testImage struct{ name, tag string }

// localImage builds a one-file image FROM scratch with random content, so
// every run pushes a new layer, and removes it when the test ends.
func localImage(ctx context.Context, t *testing.T, s *dockerCLI) testImage {
	t.Helper()
	tag := randomHex(6)
	img := testImage{name: "stacktest-hello:" + tag, tag: tag}
	content := filepath.Join(t.TempDir(), "hello.txt")
	if err := os.WriteFile(content, []byte("hello from the stack test "+tag+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := harness.BuildImage(ctx, img.name, "FROM scratch\nCOPY hello.txt /hello.txt\n", map[string]string{"hello.txt": content}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		s.docker(ctx, nil, "rmi", "-f", img.name, registryHost+"/stacktest/hello:"+tag, registryHost+"/stacktest/bob-push:"+tag,
			registryHost+"/public/hello:"+tag, registryHost+"/bob/hello:"+tag)
	})
	return img
}

// mustDocker runs the docker CLI and fails the test if it fails.
func mustDocker(ctx context.Context, t *testing.T, s *dockerCLI, args ...string) string {
	t.Helper()
	out, err := s.docker(ctx, nil, args...)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// mustLogin logs the docker CLI in to the stack as user.
func mustLogin(ctx context.Context, t *testing.T, s *dockerCLI, user, password string) {
	t.Helper()
	out, err := s.docker(ctx, strings.NewReader(password), "login", registryHost, "-u", user, "--password-stdin")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out, "Login Succeeded") {
		t.Fatalf("docker login as %s: no \"Login Succeeded\" in:\n%s", user, out)
	}
}

// expectLogin polls docker login as user until it succeeds (ok) or is
// refused as unauthorized (!ok), and fails the test unless that happens in an
// attempt started within reloadWithin of since.
func expectLogin(ctx context.Context, t *testing.T, s *dockerCLI, user, password string, ok bool, since time.Time) {
	t.Helper()
	took, err := pollUntil(since, reloadWithin, func() (bool, string) {
		out, err := s.docker(ctx, strings.NewReader(password), "login", registryHost, "-u", user, "--password-stdin")
		if ok {
			return err == nil, out
		}
		return err != nil && strings.Contains(strings.ToLower(out), "unauthorized"), out
	})
	want := map[bool]string{true: "succeed", false: "fail with unauthorized"}[ok]
	if err != nil {
		t.Fatalf("docker login as %s did not %s within %v of the edit: %v", user, want, reloadWithin, err)
	}
	t.Logf("docker login as %s: %s in an attempt started %v after the edit", user, want, took.Round(time.Millisecond))
}

// apacheHash returns an htpasswd line for user made by Apache's htpasswd (bcrypt, cost 5).
func apacheHash(t *testing.T, user, password string) string {
	t.Helper()
	out, err := exec.Command("htpasswd", "-n", "-b", "-B", "-C", "5", user, password).Output()
	if err != nil {
		t.Fatalf("htpasswd -nbB %s: %v", user, err)
	}
	return strings.TrimSpace(string(out))
}

// editorSave rewrites path the way editors save: the edited content goes to
// a temporary file in the same directory, which is renamed over path.
func editorSave(t *testing.T, path string, edit func(old string) string) {
	t.Helper()
	old, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	writeServiceFile(t, path, edit(string(old)))
}

// writeDockerAuth stores user:password for registryHost in the docker CLI's
// config.json, as a login would, without asking the registry.
func writeDockerAuth(t *testing.T, dockerConfig, user, password string) {
	t.Helper()
	auth := base64.StdEncoding.EncodeToString([]byte(user + ":" + password))
	cfg := `{"auths":{"` + registryHost + `":{"auth":"` + auth + `"}}}`
	if err := os.WriteFile(filepath.Join(dockerConfig, "config.json"), []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
}

// inodeOf returns path's inode number.
func inodeOf(t *testing.T, path string) uint64 {
	t.Helper()
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	return fi.Sys().(*syscall.Stat_t).Ino
}

// runOK runs a command and fails the test if it fails.
func runOK(ctx context.Context, t *testing.T, name string, args ...string) {
	t.Helper()
	if _, err := run(ctx, "", nil, nil, name, args...); err != nil {
		t.Fatal(err)
	}
}

// probeFrom asks url from a new container on network, with the registry-auth
// image's healthcheck command (exit 0 on a 200 answer), and returns its output.
func probeFrom(ctx context.Context, s *composeStack, network, url string) (string, error) {
	return s.docker(ctx, nil, "run", "--rm", "--network", network, harness.RegistryAuthImage,
		"healthcheck", "--url", url, "--timeout", "2s")
}

// containerStates describes each service's container (ID, start time,
// restart count), to show that nothing was restarted.
func containerStates(ctx context.Context, t *testing.T, s *composeStack) string {
	t.Helper()
	var b strings.Builder
	for _, svc := range []string{"traefik", "registry", "auth"} {
		out, err := s.inspect(ctx, svc, "{{.Id}} {{.State.StartedAt}} restarts={{.RestartCount}}")
		if err != nil {
			t.Fatal(err)
		}
		fmt.Fprintf(&b, "%s: %s; ", svc, out)
	}
	return b.String()
}
