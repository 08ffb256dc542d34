// Package harness builds, configures and runs the real programs of the
// registry-auth stack (Traefik, the distribution registry and registry-auth)
// as plain processes on loopback, for the e2e tests and the benchmarks.
package harness

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"
)

// Pinned versions of the programs the stack is tested against.
const (
	TraefikVersion  = "v3.6.12"
	RegistryVersion = "v3.1.2"
	// ConformanceVersion is the OCI distribution-spec conformance program (the
	// registry API's own test suite), a pseudo-version of its main branch.
	ConformanceVersion = "v0.0.0-20260831232431-97274622c111"
)

const (
	rootModule     = "github.com/registry-auth/registry-auth"
	traefikModule  = "github.com/traefik/traefik/v3"
	registryModule = "github.com/distribution/distribution/v3/cmd/registry"
	conformanceCmd = "github.com/opencontainers/distribution-spec/conformance"
)

// RepoRoot returns the directory of the registry-auth checkout: the nearest
// directory at or above the working directory whose go.mod declares the
// module github.com/registry-auth/registry-auth. The environment variable
// REGISTRY_AUTH_REPO overrides the search.
func RepoRoot() (string, error) {
	if dir := os.Getenv("REGISTRY_AUTH_REPO"); dir != "" {
		return filepath.Abs(dir)
	}
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if modulePath(filepath.Join(dir, "go.mod")) == rootModule {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", fmt.Errorf("no go.mod of module %s at or above the working directory (set REGISTRY_AUTH_REPO)", rootModule)
		}
		dir = parent
	}
}

// modulePath returns the module path declared in the go.mod file at path,
// or "" when the file is missing or has no module line.
func modulePath(path string) string {
	f, err := os.Open(path)
	if err != nil {
		return ""
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) >= 2 && fields[0] == "module" {
			return strings.Trim(fields[1], `"`)
		}
	}
	return ""
}

// CacheDir returns the binary cache shared by the e2e tests and the
// benchmarks: $REGISTRY_AUTH_CACHE, or else
// $HOME/.cache/registry-auth-e2e. It creates the directory if needed.
func CacheDir() (string, error) {
	dir := os.Getenv("REGISTRY_AUTH_CACHE")
	if dir == "" {
		home, err := os.UserHomeDir()
		if err != nil {
			return "", fmt.Errorf("cache directory: %w (set REGISTRY_AUTH_CACHE)", err)
		}
		dir = filepath.Join(home, ".cache", "registry-auth-e2e")
	}
	dir, err := filepath.Abs(dir)
	if err != nil {
		return "", err
	}
	return dir, os.MkdirAll(dir, 0o755)
}

// BuildTraefik returns the path of a Traefik TraefikVersion binary at
// <cache>/traefik-<version>/traefik, building it on first use. Traefik cannot
// be "go install"ed (its go.mod has replace directives), so its module source
// is downloaded, copied to <cache>/src/traefik-<version> and built there.
// The first build takes minutes; later calls return at once. Concurrent
// callers, in this process or others, serialise on a lock file.
func BuildTraefik(ctx context.Context) (string, error) {
	cache, err := CacheDir()
	if err != nil {
		return "", err
	}
	name := "traefik-" + TraefikVersion
	bin := filepath.Join(cache, name, "traefik")
	return bin, buildOnce(ctx, bin, func(tmp string) error {
		src, err := traefikSource(ctx, filepath.Join(cache, "src", name))
		if err != nil {
			return err
		}
		return goCommand(ctx, src, nil, "build", "-trimpath", "-o", tmp, "./cmd/traefik")
	})
}

// TraefikCRDs returns the path of the CustomResourceDefinitions of Traefik's kubernetesCRD
// provider at TraefikVersion (traefik.io/v1alpha1: IngressRoute, Middleware, ServersTransport
// and the others), the file Traefik's documentation installs, from its module source.
func TraefikCRDs(ctx context.Context) (string, error) {
	cache, err := CacheDir()
	if err != nil {
		return "", err
	}
	src, err := traefikSource(ctx, filepath.Join(cache, "src", "traefik-"+TraefikVersion))
	if err != nil {
		return "", err
	}
	return filepath.Join(src, "docs", "content", "reference", "dynamic-configuration", "kubernetes-crd-definition-v1.yml"), nil
}

// traefikSource makes sure a writable copy of Traefik's module source is at
// dst and returns dst. The copy is made under a temporary name and renamed,
// so an existing dst is always complete.
func traefikSource(ctx context.Context, dst string) (string, error) {
	if _, err := os.Stat(filepath.Join(dst, "go.mod")); err == nil {
		return dst, nil
	}
	if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
		return "", err
	}
	var info struct{ Dir, Error string }
	out, err := goOutput(ctx, filepath.Dir(dst), "mod", "download", "-json", traefikModule+"@"+TraefikVersion)
	if jerr := json.Unmarshal(out, &info); jerr != nil || info.Dir == "" {
		return "", fmt.Errorf("go mod download %s@%s: %v %s %s", traefikModule, TraefikVersion, err, info.Error, out)
	}
	tmp, err := os.MkdirTemp(filepath.Dir(dst), filepath.Base(dst)+".tmp-")
	if err != nil {
		return "", err
	}
	defer os.RemoveAll(tmp)                      // no-op after a successful rename
	if err := os.Chmod(tmp, 0o755); err != nil { // MkdirTemp makes it 0700
		return "", err
	}
	if err := copyTree(info.Dir, tmp); err != nil {
		return "", err
	}
	if err := os.Rename(tmp, dst); err != nil {
		return "", err
	}
	return dst, nil
}

// BuildRegistry returns the path of a distribution registry RegistryVersion
// binary at <cache>/registry-<version>/registry, installing it with
// "go install" on first use. Safe for concurrent callers.
func BuildRegistry(ctx context.Context) (string, error) {
	return goInstall(ctx, registryModule, RegistryVersion, "registry")
}

// BuildConformance returns the path of the OCI conformance program at
// ConformanceVersion, <cache>/conformance-<version>/conformance, installing
// it with "go install" on first use. Safe for concurrent callers.
func BuildConformance(ctx context.Context) (string, error) {
	return goInstall(ctx, conformanceCmd, ConformanceVersion, "conformance")
}

// goInstall returns <cache>/<name>-<version>/<name>, installing the command
// pkg@version there with "go install" when it is not there yet.
func goInstall(ctx context.Context, pkg, version, name string) (string, error) {
	cache, err := CacheDir()
	if err != nil {
		return "", err
	}
	bin := filepath.Join(cache, name+"-"+version, name)
	return bin, buildOnce(ctx, bin, func(tmp string) error {
		gobin, err := os.MkdirTemp(filepath.Dir(tmp), "gobin-")
		if err != nil {
			return err
		}
		defer os.RemoveAll(gobin)
		env := []string{"GOBIN=" + gobin}
		if err := goCommand(ctx, cache, env, "install", pkg+"@"+version); err != nil {
			return err
		}
		return os.Rename(filepath.Join(gobin, name), tmp)
	})
}

// BuildRegistryAuth builds registry-auth from the checkout found by RepoRoot
// and returns the binary's path, <cache>/registry-auth/<checkout hash>/
// registry-auth. It builds on every call (Go's build cache makes a rebuild
// of unchanged code take a second or two), so the tests always run the code
// in the working tree. The binary is written under a temporary name and
// renamed, so concurrent callers never run a half-written file, and each
// checkout has its own directory, so two checkouts never swap binaries.
func BuildRegistryAuth(ctx context.Context) (string, error) {
	root, err := RepoRoot()
	if err != nil {
		return "", err
	}
	cache, err := CacheDir()
	if err != nil {
		return "", err
	}
	sum := sha256.Sum256([]byte(root))
	dir := filepath.Join(cache, "registry-auth", hex.EncodeToString(sum[:6]))
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", err
	}
	bin := filepath.Join(dir, "registry-auth")
	tmp, err := tempName(bin)
	if err != nil {
		return "", err
	}
	defer os.Remove(tmp) // no-op after a successful rename
	ldflags := "-X main.version=" + checkoutVersion(ctx, root)
	if err := goCommand(ctx, root, nil, "build", "-trimpath", "-ldflags", ldflags, "-o", tmp, "."); err != nil {
		return "", err
	}
	return bin, os.Rename(tmp, bin)
}

// checkoutVersion is what the README's manual build stamps into the binary:
// `git describe --always --dirty` of the checkout, or "dev" without git.
func checkoutVersion(ctx context.Context, root string) string {
	out, err := exec.CommandContext(ctx, "git", "-C", root, "describe", "--always", "--dirty").Output()
	if v := strings.TrimSpace(string(out)); err == nil && v != "" {
		return v
	}
	return "dev"
}

// buildOnce makes sure an executable exists at bin. If it does not, it takes
// the lock file bin+".lock", checks again (another process may have built it
// meanwhile), and runs build with a temporary path in the same directory,
// which is then renamed to bin.
func buildOnce(ctx context.Context, bin string, build func(tmp string) error) error {
	if isExecutable(bin) {
		return nil
	}
	if err := os.MkdirAll(filepath.Dir(bin), 0o755); err != nil {
		return err
	}
	unlock, err := lockFile(ctx, bin+".lock")
	if err != nil {
		return err
	}
	defer unlock()
	if isExecutable(bin) {
		return nil
	}
	tmp, err := tempName(bin)
	if err != nil {
		return err
	}
	defer os.Remove(tmp) // no-op after a successful rename
	if err := build(tmp); err != nil {
		return fmt.Errorf("build %s: %w", bin, err)
	}
	return os.Rename(tmp, bin)
}

// tempName returns an unused path beside path for a file to be renamed to
// path later. The name is unique per process and call, so it never collides
// with another builder's temporary file.
func tempName(path string) (string, error) {
	f, err := os.CreateTemp(filepath.Dir(path), filepath.Base(path)+".tmp-*")
	if err != nil {
		return "", err
	}
	name := f.Name()
	f.Close()
	return name, nil
}

func isExecutable(path string) bool {
	fi, err := os.Stat(path)
	return err == nil && fi.Mode().IsRegular() && fi.Mode()&0o111 != 0
}

// lockFile takes an exclusive flock on path, polling so that ctx can cancel
// the wait, and returns the function that releases it. The kernel releases
// the lock if the process dies, so a crashed build never blocks the next.
func lockFile(ctx context.Context, path string) (unlock func(), err error) {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		return nil, err
	}
	tick := time.NewTicker(250 * time.Millisecond)
	defer tick.Stop()
	for {
		err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB)
		if err == nil {
			return func() { f.Close() }, nil
		}
		if !errors.Is(err, syscall.EWOULDBLOCK) {
			f.Close()
			return nil, fmt.Errorf("lock %s: %w", path, err)
		}
		select {
		case <-ctx.Done():
			f.Close()
			return nil, fmt.Errorf("waiting for lock %s: %w", path, ctx.Err())
		case <-tick.C:
		}
	}
}

// goCommand runs the go tool in dir with static, workspace-free settings plus
// env, and returns an error holding the tool's output when it fails.
func goCommand(ctx context.Context, dir string, env []string, args ...string) error {
	cmd := exec.CommandContext(ctx, "go", args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), append([]string{"CGO_ENABLED=0", "GOWORK=off"}, env...)...)
	out, err := cmd.CombinedOutput()
	if err != nil {
		return fmt.Errorf("go %s (in %s): %w\n%s", strings.Join(args, " "), dir, err, out)
	}
	return nil
}

// goOutput runs the go tool in dir and returns its standard output.
func goOutput(ctx context.Context, dir string, args ...string) ([]byte, error) {
	var stderr bytes.Buffer
	cmd := exec.CommandContext(ctx, "go", args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "GOWORK=off")
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		err = fmt.Errorf("%w: %s", err, stderr.Bytes())
	}
	return out, err
}

// copyTree copies the regular files and directories under src to dst (which
// exists), making them writable: the module cache is read-only, and a
// read-only tree could not be removed with the cache.
func copyTree(src, dst string) error {
	return filepath.WalkDir(src, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(src, path)
		if err != nil {
			return err
		}
		target := filepath.Join(dst, rel)
		switch {
		case d.IsDir():
			return os.MkdirAll(target, 0o755)
		case d.Type().IsRegular():
			return copyFile(path, target)
		default:
			return nil // module zips hold no symlinks or devices
		}
	})
}

func copyFile(src, dst string) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o644)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return err
	}
	return out.Close()
}
