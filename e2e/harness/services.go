package harness

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
)

// The programs of docker-compose.yml as processes on loopback: each started
// with what the compose file gives its service (environment, configuration),
// with only addresses and paths changed. Stack and the benchmarks start them
// through these functions, so both run what the compose file runs.

// RegistryImageConfig is the configuration the official registry image
// ships at /etc/distribution/config.yml (distribution-library-image), which
// the compose file relies on, with its storage directory and listen address
// replaced (the image's own values are /var/lib/registry and :5000). A
// non-empty debugAddr adds the debug server there, with Prometheus metrics
// at /metrics (the image has none).
func RegistryImageConfig(rootDir, addr, debugAddr string) string {
	cfg := fmt.Sprintf(`version: 0.1
log:
  fields:
    service: registry
storage:
  cache:
    blobdescriptor: inmemory
  filesystem:
    rootdirectory: %s
http:
  addr: %s
  headers:
    X-Content-Type-Options: [nosniff]
`, rootDir, addr)
	if debugAddr != "" {
		cfg += fmt.Sprintf(`  debug:
    addr: %s
    prometheus:
      enabled: true
      path: /metrics
`, debugAddr)
	}
	return cfg + `health:
  storagedriver:
    enabled: true
    interval: 10s
    threshold: 3
`
}

// Registry is a distribution registry started by StartRegistry.
type Registry struct {
	*Process
	Addr      string // loopback host:port, plain HTTP
	DebugAddr string // the debug server's host:port, "" without one
	DataDir   string // the storage's root directory
}

// RegistryOptions says how to start the registry.
type RegistryOptions struct {
	Bin      string // the registry binary (BuildRegistry)
	RepoRoot string // the checkout whose docker-compose.yml gives the environment
	Dir      string // receives registry.yml and the storage, registry-data/
	// Debug adds the debug server with Prometheus metrics on another
	// loopback port (what Stack.RegistryRequests reads).
	Debug bool
	// Addr is where it listens, host:port; empty: a free loopback port.
	Addr string
}

// StartRegistry starts the registry with RegistryImageConfig on a free
// loopback port and the environment docker-compose.yml gives the registry
// service, and waits until /v2/ answers 200. If it started the process but
// the wait failed, it returns the Registry with the error; ps stops it.
func StartRegistry(ctx context.Context, ps *Processes, opts RegistryOptions) (*Registry, error) {
	project, err := LoadCompose(ctx, opts.RepoRoot)
	if err != nil {
		return nil, err
	}
	svc, err := composeService(project, "registry")
	if err != nil {
		return nil, err
	}
	r := &Registry{DataDir: filepath.Join(opts.Dir, "registry-data"), Addr: opts.Addr}
	if r.Addr == "" {
		if r.Addr, err = FreeAddr(); err != nil {
			return nil, err
		}
	}
	if opts.Debug {
		if r.DebugAddr, err = FreeAddr(); err != nil {
			return nil, err
		}
	}
	config := filepath.Join(opts.Dir, "registry.yml")
	if err := os.WriteFile(config, []byte(RegistryImageConfig(r.DataDir, r.Addr, r.DebugAddr)), 0o644); err != nil {
		return nil, err
	}
	// The image sets OTEL_TRACES_EXPORTER=none (see EnsureRegistryImage).
	env := append(serviceEnv(svc, newMountMap(svc, opts.RepoRoot, nil)), "OTEL_TRACES_EXPORTER=none")
	if r.Process, err = ps.Start("registry", opts.Bin, []string{"serve", config}, env); err != nil {
		return nil, err
	}
	return r, r.WaitHTTP(ctx, http.DefaultClient, "http://"+r.Addr+"/v2/", http.StatusOK)
}

// AuthService is docker-compose.yml's auth service for a registry-auth
// process on this machine: the service's environment, with its /auth mount
// replaced by a local directory and its ./certs/auth-hop mount by the test's
// (Certs.HopDir), and the files that environment names.
type AuthService struct {
	Env                      []string
	HTPasswdFile, GroupsFile string // under the local directory
	TLS                      bool   // the environment sets REGISTRY_AUTH_TLS_CERT: the listener speaks HTTPS
}

// Scheme is "https" when the service listens with TLS, else "http".
func (a AuthService) Scheme() string {
	if a.TLS {
		return "https"
	}
	return "http"
}

// WithoutTLS is the service as a user who keeps the plain-HTTP hop runs it:
// the same environment without the REGISTRY_AUTH_TLS_* variables.
func (a AuthService) WithoutTLS() AuthService {
	var env []string
	for _, kv := range a.Env {
		if !strings.HasPrefix(kv, "REGISTRY_AUTH_TLS_") {
			env = append(env, kv)
		}
	}
	a.Env, a.TLS = env, false
	return a
}

// ComposeAuthService reads the auth service of repoRoot's
// docker-compose.yml, its /auth mount replaced by authDir and its
// ./certs/auth-hop mount by hopDir.
func ComposeAuthService(ctx context.Context, repoRoot, authDir, hopDir string) (AuthService, error) {
	project, err := LoadCompose(ctx, repoRoot)
	if err != nil {
		return AuthService{}, err
	}
	svc, err := composeService(project, "auth")
	if err != nil {
		return AuthService{}, err
	}
	a := AuthService{Env: serviceEnv(svc, newMountMap(svc, repoRoot, map[string]string{"auth": authDir, "certs/auth-hop": hopDir}))}
	for _, kv := range a.Env {
		k, v, _ := strings.Cut(kv, "=")
		switch k {
		case "REGISTRY_AUTH_HTPASSWD":
			a.HTPasswdFile = v
		case "REGISTRY_AUTH_GROUPS":
			a.GroupsFile = v
		case "REGISTRY_AUTH_TLS_CERT":
			a.TLS = v != ""
		}
	}
	if a.HTPasswdFile == "" || a.GroupsFile == "" {
		return AuthService{}, errors.New("docker-compose.yml: the auth service sets no REGISTRY_AUTH_HTPASSWD or REGISTRY_AUTH_GROUPS")
	}
	return a, nil
}

// StartRegistryAuth starts "registry-auth serve --listen addr args..." (bin,
// from BuildRegistryAuth) with the service's environment and waits until
// /readyz answers 200 (over HTTPS when the service has TLS; /readyz needs no
// client certificate). If the wait fails, it returns the process with the
// error; ps stops it.
func StartRegistryAuth(ctx context.Context, ps *Processes, bin string, svc AuthService, addr string, args ...string) (*Process, error) {
	p, err := ps.Start("registry-auth", bin, append([]string{"serve", "--listen", addr}, args...), svc.Env)
	if err != nil {
		return nil, err
	}
	client := http.DefaultClient
	if svc.TLS {
		// Readiness only: whether the certificate is the right one is what the
		// tests through Traefik (which verifies it) find out.
		tr := http.DefaultTransport.(*http.Transport).Clone()
		tr.TLSClientConfig = &tls.Config{InsecureSkipVerify: true}
		client = &http.Client{Transport: tr}
		defer tr.CloseIdleConnections()
	}
	return p, p.WaitHTTP(ctx, client, svc.Scheme()+"://"+addr+"/readyz", http.StatusOK)
}

// StartTraefik writes cfg and starts Traefik (bin, from BuildTraefik) on it.
// It does not wait: what a ready Traefik answers depends on its routes, so
// the caller waits with WaitHTTP.
func StartTraefik(ps *Processes, bin string, cfg *TraefikConfig) (*Process, error) {
	static, err := cfg.Write()
	if err != nil {
		return nil, err
	}
	return ps.Start("traefik", bin, []string{"--configFile=" + static}, nil)
}
