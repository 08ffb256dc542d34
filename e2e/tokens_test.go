package e2e

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/crane"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/remote/transport"

	"github.com/registry-auth/registry-auth/e2e/harness"
)

// The details registry-auth's 403 and 401 bodies give for tokens (responses.go): they tell
// a token's refusal by its scopes from one by the push group, and a revoked token's login.
const (
	scopeDeniedDetail  = "the token's scopes do not allow this here"
	groupDeniedDetail  = "pushing and deleting need membership of the push group"
	tokenRefusedDetail = "the token is unknown, its secret wrong, or it expired or was revoked"
)

// TestTokens: robot tokens made, revoked and listed by the real `registry-auth token`
// commands, used through Traefik and the registry by the docker CLI and crane. Both tokens
// that may push by their scopes or not are in the push group, so that nothing but their
// scopes stands between them and a push; a third token with push scopes is left out of it,
// to show the policy still has its say.
func TestTokens(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	dir := t.TempDir()
	// Under Dir/auth, where the stack keeps the htpasswd and groups files; it does not
	// exist when the service starts (no tokens), and the first token create makes it.
	tokensFile := filepath.Join(dir, "auth", "tokens.yaml")
	s := harness.StartStack(t, harness.StackOptions{
		Dir:      dir,
		HTPasswd: htpasswdFor(t, pusher, reader),
		Groups:   "pusher: " + pusher.name + " token+puller token+ci\n",
		AuthArgs: []string{"--tokens", tokensFile},
	})
	tc := newTokenCLI(ctx, t, s, tokensFile)
	puller := tc.create(ctx, t, "puller", "pull:team/*")
	ci := tc.create(ctx, t, "ci", "pull,push:team/**")
	outsider := tc.create(ctx, t, "outsider", "pull,push:team/**") // not in the push group

	img := dockerPullableImage(t)
	want, err := img.Digest()
	if err != nil {
		t.Fatal(err)
	}
	app := s.Addr + "/team/app:1"
	if err := remote.Write(imageRef(t, s.Addr, "team/app:1"), img, ggcrOptions(ctx, s, &pusher)...); err != nil {
		t.Fatalf("push of team/app:1 as %s: %v", pusher.name, err)
	}

	top := t
	var dk *tokenDocker // logged in as the pull-only token by subtest 1; nil without docker
	t.Run("1 a pull-only token logs in with docker, pulls, and is refused a push", func(t *testing.T) {
		harness.RequireDocker(t)
		// The whole test owns the docker configuration and the CA's installation: subtest 3
		// pulls again with this login.
		d, err := newTokenDocker(top, s)
		if err != nil {
			t.Fatal(err)
		}
		top.Cleanup(func() {
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			d.docker(ctx, nil, "rmi", "-f", app, s.Addr+"/team/app:by-puller")
		})
		d.login(ctx, t, puller)
		dk = d
		out, err := d.docker(ctx, nil, "pull", app)
		if err != nil {
			t.Fatalf("docker pull %s as %s: %v\n%s", app, puller.name, err, out)
		}
		pulled := "no digest"
		if m := regexp.MustCompile(`Digest: (sha256:[0-9a-f]{64})`).FindStringSubmatch(out); m != nil {
			pulled = m[1]
		}
		if pulled != want.String() {
			t.Fatalf("docker pull as %s: got %s, want digest %s:\n%s", puller.name, pulled, want, out)
		}
		if out, err := d.docker(ctx, nil, "tag", app, s.Addr+"/team/app:by-puller"); err != nil {
			t.Fatalf("docker tag: %v\n%s", err, out)
		}
		outsideBefore := decisions(s, puller, "outside_token_scope")
		registryUnchanged(t, s, func() {
			out, err := d.docker(ctx, nil, "push", s.Addr+"/team/app:by-puller")
			if err == nil || !strings.Contains(out, "denied") {
				t.Errorf("docker push as %s: got error %v, want a refusal showing denied:\n%s", puller.name, err, out)
			}
			t.Logf("docker push as the pull-only token: %s", lastLines(out, 1))
		})
		// docker shows only the message, not the detail: the log says the scopes refused it
		// (the token is in the push group).
		waitDecisions(ctx, t, s, puller, "outside_token_scope", outsideBefore)
	})

	t.Run("2 a push token pushes with crane inside its scopes only", func(t *testing.T) {
		pushes := []struct {
			name   string
			who    account
			repo   string
			status int // 0: the push succeeds
		}{
			{"one level below team", ci, "team/x:1", 0},
			{"deeper below team: ** spans levels", ci, "team/x/y:1", 0},
			{"outside its scopes", ci, "other/x:1", http.StatusForbidden},
			{"a pull-only token's push", puller, "team/x:by-puller", http.StatusForbidden},
			{"push scopes, but not in the push group", outsider, "team/x:by-outsider", http.StatusForbidden},
		}
		for _, p := range pushes {
			t.Run(p.name, func(t *testing.T) {
				pushed := randomOCIImage(t, 2, 8<<10)
				dst := s.Addr + "/" + p.repo
				if p.status == 0 {
					if err := crane.Push(pushed, dst, craneOptions(ctx, s, p.who)...); err != nil {
						t.Fatalf("crane push %s as %s: got %v, want success", p.repo, p.who.name, err)
					}
					// The token reads back what it pushed.
					got, err := crane.Digest(dst, craneOptions(ctx, s, p.who)...)
					if wantDigest, _ := pushed.Digest(); err != nil || got != wantDigest.String() {
						t.Fatalf("crane digest %s as %s: got %q (%v), want %s", p.repo, p.who.name, got, err, wantDigest)
					}
					return
				}
				registryUnchanged(t, s, func() {
					err := crane.Push(pushed, dst, craneOptions(ctx, s, p.who)...)
					wantRegistryError(t, err, p.status, transport.DeniedErrorCode)
				})
			})
		}

		t.Run("the catalog is outside its scopes", func(t *testing.T) {
			_, err := crane.Catalog(s.Addr, craneOptions(ctx, s, ci)...)
			wantRegistryError(t, err, http.StatusForbidden, transport.DeniedErrorCode)
		})

		// The 403 bodies say what refused, which crane's HEAD requests cannot show: the
		// token's scopes, or the push group (the policy) when the scopes would allow it. A
		// person may list the catalog: only the token's scopes refuse it.
		answers := []struct {
			method, path string
			who          account
			status       int
			body         string
		}{
			{"POST", "/v2/other/x/blobs/uploads/", ci, http.StatusForbidden, scopeDeniedDetail},
			{"HEAD", "/v2/other/x/manifests/1", ci, http.StatusForbidden, ""},
			{"POST", "/v2/team/x/blobs/uploads/", puller, http.StatusForbidden, scopeDeniedDetail},
			{"POST", "/v2/team/x/blobs/uploads/", outsider, http.StatusForbidden, groupDeniedDetail},
			{"GET", "/v2/_catalog", ci, http.StatusForbidden, scopeDeniedDetail},
			{"GET", "/v2/_catalog", pusher, http.StatusOK, `"team/x"`},
		}
		client := s.HTTPClient()
		for _, a := range answers {
			status, _, body := doRequest(t, client, a.method, s.URL()+a.path, &a.who, nil, nil)
			if status != a.status || !strings.Contains(body, a.body) {
				t.Errorf("%s %s as %s: got %d %s, want %d with %q", a.method, a.path, a.who.name, status, strings.TrimSpace(body), a.status, a.body)
			}
		}
	})

	t.Run("3 a revoked token is refused at once, cached login included", func(t *testing.T) {
		// A pull just before the revocation leaves the token's login in the service's cache.
		if _, err := remote.Image(imageRef(t, s.Addr, "team/app:1"), ggcrOptions(ctx, s, &puller)...); err != nil {
			t.Fatalf("pull as %s before the revocation: %v", puller.name, err)
		}
		out := tc.run(ctx, t, "revoke", "--wait", tc.authURL, "puller")
		t.Logf("token revoke:\n%s", strings.TrimSpace(out))

		// No polling: --wait returned once the service had loaded the revocation.
		_, err := remote.Image(imageRef(t, s.Addr, "team/app:1"), ggcrOptions(ctx, s, &puller)...)
		wantRegistryError(t, err, http.StatusUnauthorized, transport.UnauthorizedErrorCode)
		status, _, body := doRequest(t, s.HTTPClient(), "GET", s.URL()+"/v2/team/app/manifests/1", &puller, nil, nil)
		if status != http.StatusUnauthorized || !strings.Contains(body, tokenRefusedDetail) {
			t.Errorf("GET the manifest as the revoked %s: got %d %s, want 401 with %q", puller.name, status, strings.TrimSpace(body), tokenRefusedDetail)
		}
		// Only that token: the other one still pulls.
		if _, err := crane.Digest(app, craneOptions(ctx, s, ci)...); err != nil {
			t.Errorf("crane digest as %s after another token's revocation: got %v, want success", ci.name, err)
		}
		list := tc.run(ctx, t, "list")
		if !regexp.MustCompile(`(?m)^puller\s.*\srevoked\s`).MatchString(list) || !regexp.MustCompile(`(?m)^ci\s.*\sactive\s`).MatchString(list) {
			t.Errorf("token list after the revocation: got\n%s\nwant puller revoked and ci active", list)
		}

		t.Run("docker pull", func(t *testing.T) {
			harness.RequireDocker(t)
			if dk == nil {
				t.Fatal("subtest 1 did not log docker in as the token")
			}
			// Without the local copy, so that the pull has to ask the registry.
			if out, err := dk.docker(ctx, nil, "rmi", "-f", app); err != nil {
				t.Fatalf("docker rmi: %v\n%s", err, out)
			}
			revokedBefore := decisions(s, puller, "revoked")
			registryUnreached(t, s, func() {
				out, err := dk.docker(ctx, nil, "pull", app)
				if err == nil || !strings.Contains(strings.ToLower(out), "unauthorized") {
					t.Errorf("docker pull as the revoked %s: got error %v, want a refusal showing unauthorized:\n%s", puller.name, err, out)
				}
				t.Logf("docker pull as the revoked token: %s", lastLines(out, 1))
			})
			// The engine's request carried the token, and registry-auth refused it as revoked
			// (not as a request without credentials).
			waitDecisions(ctx, t, s, puller, "revoked", revokedBefore)
		})
	})
}

// decisions counts the decisions registry-auth has logged for a's requests with reason.
func decisions(s *harness.Stack, a account, reason string) int {
	n := 0
	for _, line := range strings.Split(s.Auth().Logs(), "\n") {
		if strings.Contains(line, `"msg":"decision"`) && strings.Contains(line, `"user":"`+a.name+`"`) && strings.Contains(line, `"reason":"`+reason+`"`) {
			n++
		}
	}
	return n
}

// waitDecisions fails the test unless registry-auth logs more than before decisions for a's
// requests with reason within 5 s. Polled: the log line may follow the answer.
func waitDecisions(ctx context.Context, t *testing.T, s *harness.Stack, a account, reason string, before int) {
	t.Helper()
	err := harness.WaitFor(ctx, 5*time.Second, func() error {
		if got := decisions(s, a, reason); got <= before {
			return fmt.Errorf("got %d decisions for %s with reason %s, want more than the %d before", got, a.name, reason, before)
		}
		return nil
	})
	if err != nil {
		t.Errorf("registry-auth's log: %v", err)
	}
}

// tokenCLI runs the real `registry-auth token` commands on the stack's tokens file.
type tokenCLI struct {
	bin, file string
	authURL   string // registry-auth's own base URL, for --wait
	registry  string // Traefik's address, for the printed login lines
	// env lets --wait verify registry-auth's certificate, as in the compose stack's one-off
	// container, where the service's REGISTRY_AUTH_TLS_CLIENT_CA names the hop CA.
	env []string
}

func newTokenCLI(ctx context.Context, t *testing.T, s *harness.Stack, file string) *tokenCLI {
	t.Helper()
	bin, err := harness.BuildRegistryAuth(ctx)
	if err != nil {
		t.Fatal(err)
	}
	return &tokenCLI{bin: bin, file: file, authURL: s.AuthURL(), registry: s.Addr,
		env: append(os.Environ(), "REGISTRY_AUTH_TLS_CLIENT_CA="+s.Certs.HopCAFile)}
}

// run runs `registry-auth token COMMAND --tokens FILE args...`, fails the test if it fails,
// and returns its combined output.
func (c *tokenCLI) run(ctx context.Context, t *testing.T, command string, args ...string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, c.bin, append([]string{"token", command, "--tokens", c.file}, args...)...)
	cmd.Env = c.env
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("registry-auth token %s %s: %v\n%s", command, strings.Join(args, " "), err, out)
	}
	return string(out)
}

// create makes the token name with scopes, waits until the stack's registry-auth has loaded
// it, and returns its login: token+name and the secret the command printed once.
func (c *tokenCLI) create(ctx context.Context, t *testing.T, name string, scopes ...string) account {
	t.Helper()
	args := []string{"--wait", c.authURL, "--registry", c.registry}
	for _, sc := range scopes {
		args = append(args, "--scope", sc)
	}
	out := c.run(ctx, t, "create", append(args, name)...)
	secret := printedSecret(t, out)
	login := account{"token+" + name, secret}
	// The printed docker login line is one a user can paste.
	if want := "| docker login " + c.registry + " --username " + login.name + " --password-stdin"; !strings.Contains(out, want) {
		t.Errorf("token create %s: got\n%s\nwant a line with %q", name, out, want)
	}
	return login
}

// printedSecret is the secret in token create's output: the first line after "Its secret,
// shown this once" that is not blank, indented by four spaces.
func printedSecret(t *testing.T, out string) string {
	t.Helper()
	_, after, ok := strings.Cut(out, "Its secret, shown this once")
	if !ok {
		t.Fatalf("token create printed no %q:\n%s", "Its secret, shown this once", out)
	}
	lines := strings.Split(after, "\n")[1:] // the rest of the heading's line
	for _, line := range lines {
		if strings.TrimSpace(line) == "" {
			continue
		}
		if !regexp.MustCompile(`^    rat_[A-Za-z0-9_-]{43}$`).MatchString(line) {
			t.Fatalf("the line after the secret's heading: got %q, want four spaces and rat_ with 43 base64url characters", line)
		}
		return strings.TrimSpace(line)
	}
	t.Fatalf("token create printed no secret after its heading:\n%s", out)
	return ""
}

// craneOptions are crane's options for the stack as a (its CA, a's credentials, ctx).
func craneOptions(ctx context.Context, s *harness.Stack, a account) []crane.Option {
	return []crane.Option{
		crane.WithAuth(&authn.Basic{Username: a.name, Password: a.password}),
		crane.WithTransport(s.Transport()),
		crane.WithContext(ctx),
	}
}

// dockerPullableImage is a random two-layer OCI image whose configuration names this
// machine's platform, so that the docker engine runs no platform check against an empty one.
func dockerPullableImage(t *testing.T) v1.Image {
	t.Helper()
	img := randomOCIImage(t, 2, 16<<10)
	cfg, err := img.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	cfg = cfg.DeepCopy()
	cfg.OS, cfg.Architecture = "linux", runtime.GOARCH
	if img, err = mutate.ConfigFile(img, cfg); err != nil {
		t.Fatal(err)
	}
	return img
}

// tokenDocker runs the docker CLI against the stack with a DOCKER_CONFIG of its own, so
// that its login never touches ~/.docker. (The e2e_test package's dockerCLI is the same for
// the compose stack, out of this package's reach.)
type tokenDocker struct {
	host         string // the stack's Traefik, 127.0.0.1:PORT
	dockerConfig string
}

// newTokenDocker makes the docker engine trust the stack's CA for its address, as a user
// installs a registry's CA in /etc/docker/certs.d, and gives the CLI a configuration
// directory of its own. Both are removed when owner ends; it returns errors rather than
// failing owner, which may be the parent of the running test.
func newTokenDocker(owner *testing.T, s *harness.Stack) (*tokenDocker, error) {
	certDir := filepath.Join("/etc/docker/certs.d", s.Addr)
	if _, err := os.Stat(certDir); err == nil {
		return nil, fmt.Errorf("%s exists already; the stack's port is new, so something else left it", certDir)
	}
	ca, err := os.ReadFile(s.Certs.CAFile)
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(certDir, 0o755); err != nil {
		return nil, fmt.Errorf("trusting the stack's certificate for docker needs write access to %s: %w", certDir, err)
	}
	owner.Cleanup(func() { os.RemoveAll(certDir) })
	if err := os.WriteFile(filepath.Join(certDir, "ca.crt"), ca, 0o644); err != nil {
		return nil, err
	}
	config, err := os.MkdirTemp("", "tokens-docker-config-")
	if err != nil {
		return nil, err
	}
	owner.Cleanup(func() { os.RemoveAll(config) })
	return &tokenDocker{host: s.Addr, dockerConfig: config}, nil
}

// docker runs the docker CLI with stdin (may be nil) and returns its combined output.
func (d *tokenDocker) docker(ctx context.Context, stdin io.Reader, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "docker", args...)
	cmd.Env = append(os.Environ(), "DOCKER_CONFIG="+d.dockerConfig)
	cmd.Stdin = stdin
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	cmd.WaitDelay = 5 * time.Second
	err := cmd.Run()
	if err != nil && errors.Is(ctx.Err(), context.DeadlineExceeded) {
		err = errors.Join(err, ctx.Err())
	}
	return out.String(), err
}

// login logs the docker CLI in to the stack as a, the password on standard input as the
// line token create prints does.
func (d *tokenDocker) login(ctx context.Context, t *testing.T, a account) {
	t.Helper()
	out, err := d.docker(ctx, strings.NewReader(a.password), "login", d.host, "--username", a.name, "--password-stdin")
	if err != nil || !strings.Contains(out, "Login Succeeded") {
		t.Fatalf("docker login as %s: got %v, want Login Succeeded:\n%s", a.name, err, out)
	}
}
