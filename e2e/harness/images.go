package harness

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
)

// Image names used by the repository's docker-compose.yml. The stack test
// builds images under these names from static binaries, because no image can
// be pulled on the project's machines.
const (
	TraefikImage      = "traefik:" + TraefikVersion
	RegistryImage     = "registry:3.1.2" // distribution RegistryVersion
	RegistryAuthImage = "registry-auth:local"
)

// ImageExists reports whether the Docker engine has an image called ref.
func ImageExists(ctx context.Context, ref string) bool {
	return imageID(ctx, ref) != ""
}

// BuildImage runs "docker build" of dockerfile in a fresh context directory
// holding files (name in the context -> path on disk, hard-linked or copied)
// and tags the result tag. It needs no base image when dockerfile starts
// FROM scratch. The build output is returned in the error on failure.
func BuildImage(ctx context.Context, tag, dockerfile string, files map[string]string) error {
	dir, err := os.MkdirTemp("", "image-context-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	for name, src := range files {
		dst := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
			return err
		}
		if err := os.Link(src, dst); err != nil {
			if err := copyFile(src, dst); err != nil {
				return err
			}
			if err := os.Chmod(dst, 0o755); err != nil {
				return err
			}
		}
	}
	if err := os.WriteFile(filepath.Join(dir, "Dockerfile"), []byte(dockerfile), 0o644); err != nil {
		return err
	}
	replaced := imageID(ctx, tag)
	if err := docker(ctx, nil, "build", "--quiet", "-t", tag, dir); err != nil {
		return err
	}
	removeIfReplaced(ctx, replaced, tag)
	return nil
}

// imageID returns the ID of the image ref, or "" if there is none.
func imageID(ctx context.Context, ref string) string {
	out, err := exec.CommandContext(ctx, "docker", "image", "inspect", "--format", "{{.Id}}", ref).Output()
	if err != nil {
		return ""
	}
	return strings.TrimSpace(string(out))
}

// removeIfReplaced removes the image old if tag no longer names it, so that
// rebuilding a tag leaves no dangling image behind. docker refuses (and this
// ignores) the removal while a container or another tag still uses it.
func removeIfReplaced(ctx context.Context, old, tag string) {
	if old != "" && imageID(ctx, tag) != old {
		exec.CommandContext(ctx, "docker", "rmi", old).Run()
	}
}

// EnsureTraefikImage makes sure the engine has TraefikImage. An existing
// image (a real one pulled elsewhere, or one built earlier) is kept; otherwise
// it is built FROM scratch from BuildTraefik's static binary, laid out like the
// official image: the binary on PATH as "traefik", which is also the
// entrypoint, and the configuration read from /etc/traefik/traefik.yml.
// It returns a short description of what it did.
func EnsureTraefikImage(ctx context.Context) (string, error) {
	if ImageExists(ctx, TraefikImage) {
		return TraefikImage + ": existing image used", nil
	}
	bin, err := BuildTraefik(ctx)
	if err != nil {
		return "", err
	}
	const dockerfile = `FROM scratch
COPY traefik /usr/local/bin/traefik
ENV PATH=/usr/local/bin:/usr/bin:/bin
EXPOSE 80
ENTRYPOINT ["traefik"]
`
	if err := BuildImage(ctx, TraefikImage, dockerfile, map[string]string{"traefik": bin}); err != nil {
		return "", err
	}
	return TraefikImage + ": built FROM scratch from " + bin, nil
}

// EnsureRegistryImage makes sure the engine has RegistryImage. An existing
// image is kept; otherwise it is built FROM scratch from BuildRegistry's
// static binary with the official image's layout: /bin/registry, entrypoint
// "registry serve /etc/distribution/config.yml", the official default config,
// a volume at /var/lib/registry and tracing export off.
// It returns a short description of what it did.
func EnsureRegistryImage(ctx context.Context) (string, error) {
	if ImageExists(ctx, RegistryImage) {
		return RegistryImage + ": existing image used", nil
	}
	bin, err := BuildRegistry(ctx)
	if err != nil {
		return "", err
	}
	cfg, err := os.CreateTemp("", "registry-config-*.yml")
	if err != nil {
		return "", err
	}
	defer os.Remove(cfg.Name())
	if _, err := cfg.WriteString(RegistryImageConfig("/var/lib/registry", ":5000", "")); err != nil {
		cfg.Close()
		return "", err
	}
	if err := cfg.Close(); err != nil {
		return "", err
	}
	const dockerfile = `FROM scratch
COPY registry /bin/registry
COPY config.yml /etc/distribution/config.yml
ENV PATH=/bin
ENV OTEL_TRACES_EXPORTER=none
VOLUME ["/var/lib/registry"]
EXPOSE 5000
ENTRYPOINT ["registry"]
CMD ["serve", "/etc/distribution/config.yml"]
`
	files := map[string]string{"registry": bin, "config.yml": cfg.Name()}
	if err := BuildImage(ctx, RegistryImage, dockerfile, files); err != nil {
		return "", err
	}
	return RegistryImage + ": built FROM scratch from " + bin, nil
}

// BuildRegistryAuthImage builds RegistryAuthImage from the repository's own
// Dockerfile without pulling anything, the way the Dockerfile documents for a
// binary built outside Docker: "docker build --target runtime" (the stage
// with the user, port, health check and entrypoint, which comes before the Go
// stage), then that image plus the static binary at /registry-auth.
func BuildRegistryAuthImage(ctx context.Context, binary string) (string, error) {
	root, err := RepoRoot()
	if err != nil {
		return "", err
	}
	const runtimeTag = "registry-auth:runtime"
	replaced := imageID(ctx, runtimeTag)
	if err := docker(ctx, nil, "build", "--quiet", "--target", "runtime", "-t", runtimeTag, root); err != nil {
		return "", err
	}
	removeIfReplaced(ctx, replaced, runtimeTag)
	dockerfile := "FROM " + runtimeTag + "\nCOPY registry-auth /registry-auth\n"
	if err := BuildImage(ctx, RegistryAuthImage, dockerfile, map[string]string{"registry-auth": binary}); err != nil {
		return "", err
	}
	return RegistryAuthImage + ": Dockerfile --target runtime + " + binary, nil
}

// docker runs the docker CLI with extra environment env and returns an error
// holding its output when it fails.
func docker(ctx context.Context, env []string, args ...string) error {
	var out bytes.Buffer
	cmd := exec.CommandContext(ctx, "docker", args...)
	cmd.Env = append(os.Environ(), env...)
	cmd.Stdout = &out
	cmd.Stderr = &out
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("docker %s: %w\n%s", strings.Join(args, " "), err, out.Bytes())
	}
	return nil
}

// BuildStackImages makes sure the engine has the three images docker-compose.yml names,
// without pulling anything: Traefik and the registry built FROM scratch from their Go
// modules (kept when the engine already has them), registry-auth:local from this
// checkout. progress gets one line per image.
func BuildStackImages(ctx context.Context, progress func(string)) error {
	for _, ensure := range []func(context.Context) (string, error){EnsureTraefikImage, EnsureRegistryImage} {
		what, err := ensure(ctx)
		if err != nil {
			return err
		}
		progress(what)
	}
	bin, err := BuildRegistryAuth(ctx)
	if err != nil {
		return err
	}
	what, err := BuildRegistryAuthImage(ctx, bin)
	if err != nil {
		return err
	}
	progress(what)
	return nil
}
