package e2e

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/remote"

	"github.com/registry-auth/registry-auth/e2e/harness"
)

// skopeoCLI runs skopeo against a stack with a private HOME and runtime
// directory, so no credentials or configuration of the machine leak in.
type skopeoCLI struct {
	t      testing.TB
	bin    string // Debian's skopeo (containers/image, the stack behind podman)
	home   string
	certs  string // directory with the CA as ca.crt
	policy string // signature policy accepting anything, for copies
}

func newSkopeo(t testing.TB, s *harness.Stack) *skopeoCLI {
	t.Helper()
	bin := harness.RequireTool(t, "skopeo", "skopeo")
	home := t.TempDir()
	policy := filepath.Join(home, "policy.json")
	if err := os.WriteFile(policy, []byte(`{"default":[{"type":"insecureAcceptAnything"}]}`), 0o644); err != nil {
		t.Fatal(err)
	}
	return &skopeoCLI{t: t, bin: bin, home: home, certs: s.Certs.CADir, policy: policy}
}

// run runs skopeo with args and returns its combined output. Passwords are
// passed with --creds, as users do; the tests' passwords are throw-away.
func (k *skopeoCLI) run(ctx context.Context, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, k.bin, append([]string{"--policy", k.policy}, args...)...)
	cmd.Env = []string{
		"HOME=" + k.home,
		"XDG_RUNTIME_DIR=" + k.home,
		"REGISTRY_AUTH_FILE=" + filepath.Join(k.home, "auth.json"),
		"PATH=/usr/bin:/bin",
	}
	var out bytes.Buffer
	cmd.Stdout = &out
	cmd.Stderr = &out
	err := cmd.Run()
	return out.String(), err
}

// creds returns the value of --creds for an account.
func creds(a account) string { return a.name + ":" + a.password }

// TestSkopeo drives the stack with skopeo through Traefik: steps 1 to 5 and
// 7 of issue 4 (step 6, the 1 GiB layer, is TestLargeLayer).
func TestSkopeo(t *testing.T) {
	s := startStack(t)
	k := newSkopeo(t, s)
	ctx := context.Background()
	img := randomOCIImage(t, 3, 256<<10)
	want, err := img.Digest()
	if err != nil {
		t.Fatal(err)
	}
	src := filepath.Join(t.TempDir(), "oci")
	if _, err := layout.Write(src, emptyIndex()); err != nil {
		t.Fatal(err)
	}
	lp, _ := layout.FromPath(src)
	if err := lp.AppendImage(img, layout.WithAnnotations(map[string]string{"org.opencontainers.image.ref.name": "v1"})); err != nil {
		t.Fatal(err)
	}
	dest := "docker://" + s.Addr + "/e2e/skopeo:v1"

	t.Run("1 push by the push group", func(t *testing.T) {
		out, err := k.run(ctx, "copy", "--preserve-digests", "--dest-cert-dir", k.certs, "--dest-creds", creds(pusher), "oci:"+src+":v1", dest)
		if err != nil {
			t.Fatalf("skopeo copy to the registry as %s: %v\n%s", pusher.name, err, out)
		}
		// go-containerregistry, as the pusher, sees the manifest skopeo pushed.
		d, err := remote.Head(imageRef(t, s.Addr, "e2e/skopeo:v1"), ggcrOptions(ctx, s, &pusher)...)
		if err != nil || d.Digest != want {
			t.Fatalf("pushed manifest: %v, digest %v, want %s", err, d, want)
		}
	})

	t.Run("2 pull by a read-only user", func(t *testing.T) {
		dir := filepath.Join(t.TempDir(), "pulled")
		out, err := k.run(ctx, "copy", "--src-cert-dir", k.certs, "--src-creds", creds(reader), dest, "dir:"+dir)
		if err != nil {
			t.Fatalf("skopeo copy from the registry as %s: %v\n%s", reader.name, err, out)
		}
		verifyDirLayout(t, dir, want.String())
	})

	t.Run("3 push by a read-only user is denied", func(t *testing.T) {
		out, err := k.run(ctx, "copy", "--dest-cert-dir", k.certs, "--dest-creds", creds(reader), "oci:"+src+":v1", "docker://"+s.Addr+"/e2e/skopeo:by-reader")
		if err == nil || !strings.Contains(out, "denied") {
			t.Fatalf("skopeo push as %s: got %v\n%s\nwant an error showing denied", reader.name, err, out)
		}
	})

	t.Run("4 no credentials and wrong password are unauthorized", func(t *testing.T) {
		wrong := creds(account{pusher.name, "not-" + pusher.password})
		for _, args := range [][]string{
			{"inspect", "--raw", "--cert-dir", k.certs, "--no-creds", dest},
			{"inspect", "--raw", "--cert-dir", k.certs, "--creds", wrong, dest},
			{"copy", "--dest-cert-dir", k.certs, "--dest-no-creds", "oci:" + src + ":v1", dest},
			{"copy", "--dest-cert-dir", k.certs, "--dest-creds", wrong, "oci:" + src + ":v1", dest},
		} {
			out, err := k.run(ctx, args...)
			if err == nil || !strings.Contains(strings.ToLower(out), "unauthorized") {
				t.Errorf("skopeo %s: got %v\n%s\nwant an error showing unauthorized", args[0], err, out)
			}
		}
	})

	t.Run("5 client-sent X-Forwarded-Method GET does not let a push through", func(t *testing.T) {
		spoof := startSpoofingProxy(t, s)
		registryUnchanged(t, s, func() {
			out, err := k.run(ctx, "copy", "--dest-cert-dir", k.certs, "--dest-creds", creds(reader), "oci:"+src+":v1", "docker://"+spoof.Addr+"/e2e/skopeo:spoofed")
			if err == nil || !strings.Contains(out, "denied") {
				t.Fatalf("skopeo push as %s with X-Forwarded-Method: GET: got %v\n%s\nwant an error showing denied", reader.name, err, out)
			}
		})
		if spoof.Requests() == 0 {
			t.Fatal("the spoofing proxy saw no request")
		}
	})

	t.Run("7 auth service stopped", func(t *testing.T) {
		if err := s.StopAuth(); err != nil {
			t.Fatal(err)
		}
		registryUnreached(t, s, func() {
			out, err := k.run(ctx, "inspect", "--raw", "--cert-dir", k.certs, "--creds", creds(reader), dest)
			if err == nil {
				t.Errorf("skopeo inspect with the auth service stopped: got no error\n%s", out)
			}
			out, err = k.run(ctx, "copy", "--dest-cert-dir", k.certs, "--dest-creds", creds(pusher), "oci:"+src+":v1", "docker://"+s.Addr+"/e2e/skopeo:auth-down")
			if err == nil {
				t.Errorf("skopeo push with the auth service stopped: got no error\n%s", out)
			}
			t.Logf("skopeo push with the auth service stopped: %v: %s", err, lastLines(out, 2))
		})
		if err := s.StartAuth(ctx); err != nil {
			t.Fatal(err)
		}
		if out, err := k.run(ctx, "inspect", "--raw", "--cert-dir", k.certs, "--creds", creds(reader), dest); err != nil {
			t.Fatalf("skopeo inspect after the auth service came back: %v\n%s", err, out)
		}
	})
}

// verifyDirLayout checks a skopeo "dir:" copy: the manifest hashes to want
// and every blob file hashes to its name.
func verifyDirLayout(t testing.TB, dir, want string) {
	t.Helper()
	manifest, err := os.ReadFile(filepath.Join(dir, "manifest.json"))
	if err != nil {
		t.Fatal(err)
	}
	if got := sha256Digest(manifest); got != want {
		t.Fatalf("pulled manifest digest %s, want %s", got, want)
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	blobs := 0
	for _, e := range entries {
		if e.Name() == "manifest.json" || e.Name() == "version" {
			continue
		}
		data, err := os.ReadFile(filepath.Join(dir, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		if got := sha256Digest(data); got != "sha256:"+e.Name() {
			t.Fatalf("blob %s hashes to %s", e.Name(), got)
		}
		blobs++
	}
	if blobs != 4 { // the config and three layers
		t.Fatalf("pulled %d blobs, want 4", blobs)
	}
}

func sha256Digest(b []byte) string {
	sum := sha256.Sum256(b)
	return "sha256:" + hex.EncodeToString(sum[:])
}

// lastLines returns the last n lines of s, for short log messages.
func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, " | ")
}
