package e2e

import (
	"context"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/remote/transport"

	"github.com/registry-auth/registry-auth/e2e/harness"
)

// The accounts of the policy tests, besides pusher (an admin here) and reader.
var (
	teamMember = account{"carol", "carol-in-payments"}
	ciBot      = account{"ci-bot", "ci-bot-token-7"}
)

// e2ePolicy is what TestPolicy serves: admins everywhere, a team namespace, personal
// namespaces, public repositories for anonymous pulls, a secret namespace, reading elsewhere.
const e2ePolicy = `rules:
  - subjects: [group:admins]
    repositories: ["**"]
    actions: [pull, push, delete]
  - subjects: [authenticated]
    repositories: ["${user}/**"]
    actions: [pull, push, delete]
  - subjects: [group:payments, user:ci-bot]
    repositories: ["payments/**"]
    actions: [pull, push]
  - subjects: [authenticated]
    repositories: ["secret/**"]
    actions: []
  - subjects: [anonymous, authenticated]
    repositories: ["public/**"]
    actions: [pull]
  - subjects: [authenticated]
    repositories: ["**"]
    actions: [pull]
catalog: [group:admins]
`

// startPolicyStack starts the stack with --policy on a policy file beside the users, and
// returns the file's path.
func startPolicyStack(t *testing.T, policy string) (*harness.Stack, string) {
	t.Helper()
	dir := t.TempDir()
	policyFile := filepath.Join(dir, "policy", "policy.yaml")
	if err := os.MkdirAll(filepath.Dir(policyFile), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(policyFile, []byte(policy), 0o640); err != nil {
		t.Fatal(err)
	}
	s := harness.StartStack(t, harness.StackOptions{
		Dir:      dir,
		HTPasswd: htpasswdFor(t, pusher, reader, teamMember, ciBot),
		Groups:   "admins: " + pusher.name + "\npayments: " + teamMember.name + "\n",
		AuthArgs: []string{"--policy", policyFile},
	})
	return s, policyFile
}

// TestPolicy: the access policy through the real Traefik and registry, with
// go-containerregistry and skopeo as clients.
func TestPolicy(t *testing.T) {
	s, _ := startPolicyStack(t, e2ePolicy)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()

	t.Run("a team pushes to its namespace and is refused elsewhere", func(t *testing.T) {
		for _, a := range []*account{&teamMember, &ciBot} {
			if err := remote.Write(imageRef(t, s.Addr, "payments/api:"+a.name), randomOCIImage(t, 2, 4<<10), ggcrOptions(ctx, s, a)...); err != nil {
				t.Errorf("%s pushes to payments/api: %v", a.name, err)
			}
		}
		registryUnchanged(t, s, func() {
			err := remote.Write(imageRef(t, s.Addr, "other/api:x"), randomOCIImage(t, 1, 1<<10), ggcrOptions(ctx, s, &teamMember)...)
			wantRegistryError(t, err, http.StatusForbidden, transport.DeniedErrorCode)
		})
	})

	t.Run("a user pushes to their own namespace only", func(t *testing.T) {
		if err := remote.Write(imageRef(t, s.Addr, reader.name+"/tool:1"), randomOCIImage(t, 1, 4<<10), ggcrOptions(ctx, s, &reader)...); err != nil {
			t.Errorf("%s pushes to %s/tool: %v", reader.name, reader.name, err)
		}
		err := remote.Write(imageRef(t, s.Addr, teamMember.name+"/tool:1"), randomOCIImage(t, 1, 1<<10), ggcrOptions(ctx, s, &reader)...)
		wantRegistryError(t, err, http.StatusForbidden, transport.DeniedErrorCode)
	})

	img := randomOCIImage(t, 2, 16<<10)
	want, err := img.Digest()
	if err != nil {
		t.Fatal(err)
	}
	public := imageRef(t, s.Addr, "public/base:1")
	if err := remote.Write(public, img, ggcrOptions(ctx, s, &pusher)...); err != nil {
		t.Fatalf("an admin pushes public/base: %v", err)
	}

	t.Run("public repositories are pulled without credentials", func(t *testing.T) {
		got, err := remote.Image(public, ggcrOptions(ctx, s, nil)...)
		if err != nil {
			t.Fatalf("anonymous pull with go-containerregistry: %v", err)
		}
		verifyImage(t, got, img, want)
		k := newSkopeo(t, s)
		out, err := k.run(ctx, "inspect", "--cert-dir", k.certs, "docker://"+s.Addr+"/public/base:1")
		if err != nil || !strings.Contains(out, want.String()) {
			t.Fatalf("anonymous skopeo inspect: %v\n%s", err, out)
		}
		dest := "oci:" + filepath.Join(t.TempDir(), "layout") + ":1"
		if out, err := k.run(ctx, "copy", "--src-cert-dir", k.certs, "docker://"+s.Addr+"/public/base:1", dest); err != nil {
			t.Fatalf("anonymous skopeo copy: %v\n%s", err, out)
		}
		// Anything else still asks for credentials.
		_, err = remote.Image(imageRef(t, s.Addr, "payments/api:"+ciBot.name), ggcrOptions(ctx, s, nil)...)
		wantRegistryError(t, err, http.StatusUnauthorized, transport.UnauthorizedErrorCode)
	})

	t.Run("a push that mounts layers from a repository the pusher cannot read still succeeds", func(t *testing.T) {
		secret := imageRef(t, s.Addr, "secret/base:1")
		simg := randomOCIImage(t, 2, 32<<10)
		if err := remote.Write(secret, simg, ggcrOptions(ctx, s, &pusher)...); err != nil {
			t.Fatal(err)
		}
		// Layers read by an admin are mountable from secret/base: go-containerregistry asks
		// for a mount from there when carol writes them to her team's repository.
		mountable, err := remote.Image(secret, ggcrOptions(ctx, s, &pusher)...)
		if err != nil {
			t.Fatal(err)
		}
		target := imageRef(t, s.Addr, "payments/from-secret:1")
		if err := remote.Write(target, mountable, ggcrOptions(ctx, s, &teamMember)...); err != nil {
			t.Fatalf("carol's push with refused mounts: %v", err)
		}
		got, err := remote.Image(target, ggcrOptions(ctx, s, &teamMember)...)
		if err != nil {
			t.Fatal(err)
		}
		sw, _ := simg.Digest()
		verifyImage(t, got, simg, sw)
		if logs := s.Auth().Logs(); !strings.Contains(logs, `"decision":"redirected"`) || !strings.Contains(logs, `"reason":"mount_source_not_readable"`) {
			t.Errorf("registry-auth logged no redirected mount; the test did not exercise one")
		}
		// And carol still cannot read the source.
		_, err = remote.Image(secret, ggcrOptions(ctx, s, &teamMember)...)
		wantRegistryError(t, err, http.StatusForbidden, transport.DeniedErrorCode)
	})

	t.Run("the catalog is for admins", func(t *testing.T) {
		client := s.HTTPClient()
		if status, _, body := doRequest(t, client, "GET", s.URL()+"/v2/_catalog", &pusher, nil, nil); status != 200 || !strings.Contains(body, "public/base") {
			t.Errorf("admin catalog: got %d %s", status, body)
		}
		if status, _, _ := doRequest(t, client, "GET", s.URL()+"/v2/_catalog", &reader, nil, nil); status != 403 {
			t.Errorf("reader catalog: got %d, want 403", status)
		}
	})
}

// TestPolicyEditUnderLoad: while clients pull, an edit of the policy grants a new push; it
// takes effect within a second of the write, and no request gets a 5xx.
func TestPolicyEditUnderLoad(t *testing.T) {
	s, policyFile := startPolicyStack(t, e2ePolicy)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	if err := remote.Write(imageRef(t, s.Addr, "public/base:1"), randomOCIImage(t, 1, 4<<10), ggcrOptions(ctx, s, &pusher)...); err != nil {
		t.Fatal(err)
	}
	client := s.HTTPClient()
	manifest := s.URL() + "/v2/public/base/manifests/1"
	accept := http.Header{"Accept": {"application/vnd.oci.image.manifest.v1+json"}}

	var requests, failures atomic.Int64
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-stop:
					return
				default:
				}
				// Not doRequest: it may call t.Fatal, which only the test's goroutine may.
				req, _ := http.NewRequestWithContext(ctx, "GET", manifest, nil)
				req.Header = accept.Clone()
				req.SetBasicAuth(reader.name, reader.password)
				resp, err := client.Do(req)
				requests.Add(1)
				if err != nil {
					failures.Add(1)
					t.Errorf("pull under load: %v", err)
					return
				}
				resp.Body.Close()
				if resp.StatusCode != 200 {
					failures.Add(1)
					t.Errorf("pull under load: got %d", resp.StatusCode)
					return
				}
			}
		}()
	}

	// reader may not push to payments/ until the edit names him.
	probe := s.URL() + "/v2/payments/edit/blobs/uploads/"
	if status, _, _ := doRequest(t, client, "POST", probe, &reader, nil, nil); status != 403 {
		t.Fatalf("before the edit: got %d, want 403", status)
	}
	edited := strings.Replace(e2ePolicy, "[group:payments, user:ci-bot]", "[group:payments, user:ci-bot, user:"+reader.name+"]", 1)
	tmp := policyFile + ".tmp"
	if err := os.WriteFile(tmp, []byte(edited), 0o640); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, policyFile); err != nil {
		t.Fatal(err)
	}
	written := time.Now()
	deadline := written.Add(time.Second)
	var took time.Duration
	for {
		status, _, _ := doRequest(t, client, "POST", probe, &reader, nil, nil)
		if status == http.StatusAccepted {
			took = time.Since(written)
			break
		}
		if status >= 500 {
			t.Fatalf("probe after the edit: got %d", status)
		}
		if time.Now().After(deadline) {
			t.Fatalf("the edit was not in force 1 s after the write (last status %d)", status)
		}
	}
	close(stop)
	wg.Wait()
	t.Logf("policy edit in force %v after the write; %d pulls under load, %d failed", took.Round(time.Millisecond), requests.Load(), failures.Load())
	if requests.Load() == 0 {
		t.Error("no pull ran during the edit")
	}
}
