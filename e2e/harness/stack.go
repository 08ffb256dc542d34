package harness

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/compose-spec/compose-go/v2/types"
)

// startTimeout bounds how long each program may take to become ready.
const startTimeout = 30 * time.Second

// StackOptions configures a Stack.
type StackOptions struct {
	// Dir holds everything the stack writes (certificates, auth files,
	// registry storage, Traefik configuration, logs). Required.
	Dir string
	// HTPasswd and Groups are the initial contents of the auth files.
	HTPasswd, Groups string
	// AuthArgs are extra flags for "registry-auth serve", e.g. "--cache-ttl", "0".
	AuthArgs []string
	// Traefik, if set, edits Traefik's configuration before it is written
	// (the benchmarks swap the middleware this way).
	Traefik func(*TraefikConfig) error
}

// Stack is the repository's docker-compose stack played by plain processes
// on loopback: the registry, registry-auth and Traefik in front of both,
// configured from docker-compose.yml and traefik/ as described at
// LoadTraefikConfig. Its methods are safe for concurrent use.
type Stack struct {
	Dir               string
	Certs             *Certs
	HTPasswdFile      string // where registry-auth reads users (from the compose environment)
	GroupsFile        string // where registry-auth reads groups
	RegistryAddr      string // the registry's loopback host:port (behind Traefik)
	RegistryDebugAddr string // the registry's debug server with /metrics
	AuthAddr          string // registry-auth's loopback host:port
	Addr              string // Traefik's registry entry point, host:port: clients use this
	TraefikConfig     *TraefikConfig

	Registry, Traefik *Process

	authBin  string
	authArgs []string
	authEnv  []string
	logDir   string

	mu         sync.Mutex
	auth       *Process   // the current registry-auth process, nil while stopped
	procs      []*Process // every process started, for logs and Close
	transports []*http.Transport
}

// StartStack builds the programs (from the cache when possible), starts a
// Stack in a temporary directory, and stops it when the test ends. If the
// test failed, it prints the logs of the processes that misbehaved (exited on
// their own or failed to stop cleanly), or the log tails of all of them.
func StartStack(t testing.TB, opts StackOptions) *Stack {
	t.Helper()
	if opts.Dir == "" {
		opts.Dir = t.TempDir()
	}
	s, err := NewStack(context.Background(), opts)
	if s != nil {
		t.Cleanup(func() { s.cleanup(t) })
	}
	if err != nil {
		t.Fatalf("start stack: %v", err)
	}
	return s
}

func (s *Stack) cleanup(t testing.TB) {
	s.mu.Lock()
	procs := append([]*Process(nil), s.procs...)
	s.mu.Unlock()
	var bad []*Process
	for _, p := range procs {
		if p.Unexpected() {
			bad = append(bad, p)
		}
	}
	for _, p := range s.stopAll() {
		t.Errorf("stop %s: %v", p.Name, p.stopErr)
		bad = append(bad, p)
	}
	if !t.Failed() {
		return
	}
	if len(bad) == 0 {
		for _, p := range procs {
			t.Logf("--- %s log (tail) ---\n%s", p.Name, p.LogTail(4<<10))
		}
		return
	}
	for _, p := range bad {
		t.Logf("--- %s misbehaved (exit: %v); its log ---\n%s", p.Name, p.ExitErr(), p.LogTail(64<<10))
	}
}

// NewStack builds the programs and starts the stack; Close stops it. On
// error it stops whatever it started, and returns the Stack too if it got
// as far as starting a process, so that the caller can read the logs.
func NewStack(ctx context.Context, opts StackOptions) (*Stack, error) {
	traefikBin, err := BuildTraefik(ctx)
	if err != nil {
		return nil, err
	}
	registryBin, err := BuildRegistry(ctx)
	if err != nil {
		return nil, err
	}
	authBin, err := BuildRegistryAuth(ctx)
	if err != nil {
		return nil, err
	}
	root, err := RepoRoot()
	if err != nil {
		return nil, err
	}
	s := &Stack{Dir: opts.Dir, authBin: authBin, authArgs: opts.AuthArgs, logDir: filepath.Join(opts.Dir, "logs")}
	for _, d := range []string{s.logDir, filepath.Join(opts.Dir, "certs"), filepath.Join(opts.Dir, "auth")} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return nil, err
		}
	}
	if s.Certs, err = NewCerts(filepath.Join(opts.Dir, "certs")); err != nil {
		return nil, err
	}
	project, err := LoadCompose(ctx, root)
	if err != nil {
		return nil, err
	}
	if err := s.startRegistry(ctx, project, root, registryBin); err != nil {
		return s, s.closeAfter(err)
	}
	if err := s.configureAuth(project, root, opts); err != nil {
		return s, s.closeAfter(err)
	}
	if err := s.StartAuth(ctx); err != nil {
		return s, s.closeAfter(err)
	}
	if err := s.startTraefik(ctx, root, traefikBin, opts.Traefik); err != nil {
		return s, s.closeAfter(err)
	}
	return s, nil
}

// closeAfter stops the stack after a failed start and returns err.
func (s *Stack) closeAfter(err error) error {
	if cerr := s.Close(); cerr != nil {
		err = fmt.Errorf("%w (and stopping: %v)", err, cerr)
	}
	return err
}

// startRegistry starts the registry on loopback with the environment the
// compose file gives it, filesystem storage under Dir, and its debug server
// (Prometheus metrics) on another loopback port.
func (s *Stack) startRegistry(ctx context.Context, project *types.Project, root, bin string) error {
	svc, err := composeService(project, "registry")
	if err != nil {
		return err
	}
	if s.RegistryAddr, err = FreeAddr(); err != nil {
		return err
	}
	if s.RegistryDebugAddr, err = FreeAddr(); err != nil {
		return err
	}
	config := filepath.Join(s.Dir, "registry.yml")
	if err := os.WriteFile(config, []byte(registryLoopbackConfig(s.RegistryAddr, s.RegistryDebugAddr, filepath.Join(s.Dir, "registry-data"))), 0o644); err != nil {
		return err
	}
	env := append(serviceEnv(svc, newMountMap(svc, root, nil)), "OTEL_TRACES_EXPORTER=none")
	p, err := StartProcess("registry", s.logDir, bin, []string{"serve", config}, env)
	if err != nil {
		return err
	}
	s.track(p)
	s.Registry = p
	return p.WaitReady(ctx, startTimeout, func() error {
		return expectStatus(http.DefaultClient, "http://"+s.RegistryAddr+"/v2/", http.StatusOK)
	})
}

// registryLoopbackConfig is a registry configuration like the one the
// official image ships, on loopback addresses and a local directory.
func registryLoopbackConfig(addr, debugAddr, dataDir string) string {
	return fmt.Sprintf(`version: 0.1
log:
  level: info
  formatter: text
storage:
  filesystem:
    rootdirectory: %s
  delete:
    enabled: true
http:
  addr: %s
  debug:
    addr: %s
    prometheus:
      enabled: true
      path: /metrics
`, dataDir, addr, debugAddr)
}

// configureAuth takes registry-auth's environment from the compose file,
// with the container's /auth mount replaced by Dir/auth, and writes the
// initial htpasswd and groups files where that environment says.
func (s *Stack) configureAuth(project *types.Project, root string, opts StackOptions) error {
	svc, err := composeService(project, "auth")
	if err != nil {
		return err
	}
	s.authEnv = serviceEnv(svc, newMountMap(svc, root, map[string]string{"auth": filepath.Join(s.Dir, "auth")}))
	for _, kv := range s.authEnv {
		k, v, _ := strings.Cut(kv, "=")
		switch k {
		case "REGISTRY_AUTH_HTPASSWD":
			s.HTPasswdFile = v
		case "REGISTRY_AUTH_GROUPS":
			s.GroupsFile = v
		}
	}
	if s.HTPasswdFile == "" || s.GroupsFile == "" {
		return errors.New("docker-compose.yml: the auth service sets no REGISTRY_AUTH_HTPASSWD or REGISTRY_AUTH_GROUPS")
	}
	if s.AuthAddr, err = FreeAddr(); err != nil {
		return err
	}
	if err := os.WriteFile(s.HTPasswdFile, []byte(opts.HTPasswd), 0o640); err != nil {
		return err
	}
	return os.WriteFile(s.GroupsFile, []byte(opts.Groups), 0o640)
}

// StartAuth starts registry-auth on AuthAddr and waits until /readyz
// answers 200. It is an error to start it while it runs.
func (s *Stack) StartAuth(ctx context.Context) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.auth != nil {
		return errors.New("registry-auth is already running")
	}
	name := "registry-auth"
	if n := s.countNamed(name); n > 0 {
		name += "-" + strconv.Itoa(n+1)
	}
	args := append([]string{"serve", "--listen", s.AuthAddr}, s.authArgs...)
	p, err := StartProcess(name, s.logDir, s.authBin, args, s.authEnv)
	if err != nil {
		return err
	}
	s.procs = append(s.procs, p)
	s.auth = p
	return p.WaitReady(ctx, startTimeout, func() error {
		return expectStatus(http.DefaultClient, "http://"+s.AuthAddr+"/readyz", http.StatusOK)
	})
}

// StopAuth stops registry-auth (SIGTERM) and waits until it has exited.
func (s *Stack) StopAuth() error {
	s.mu.Lock()
	p := s.auth
	s.auth = nil
	s.mu.Unlock()
	if p == nil {
		return errors.New("registry-auth is not running")
	}
	return p.Stop()
}

// Auth returns the running registry-auth process, or nil while it is stopped.
func (s *Stack) Auth() *Process {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.auth
}

func (s *Stack) countNamed(prefix string) int {
	n := 0
	for _, p := range s.procs {
		if strings.HasPrefix(p.Name, prefix) {
			n++
		}
	}
	return n
}

func (s *Stack) track(p *Process) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.procs = append(s.procs, p)
}

// startTraefik derives Traefik's configuration (LoadTraefikConfig), lets
// edit change it, starts Traefik and waits until the registry route answers
// through it (any status but 404 and 5xx: a 401 from the auth service).
func (s *Stack) startTraefik(ctx context.Context, root, bin string, edit func(*TraefikConfig) error) error {
	cfg, err := LoadTraefikConfig(ctx, TraefikInputs{
		RepoRoot: root,
		Dir:      filepath.Join(s.Dir, "traefik"),
		Backends: map[string]string{"registry": s.RegistryAddr, "auth": s.AuthAddr},
		Mounts:   map[string]string{"certs": s.Certs.Dir},
	})
	if err != nil {
		return err
	}
	if edit != nil {
		if err := edit(cfg); err != nil {
			return err
		}
	}
	s.TraefikConfig = cfg
	if s.Addr, err = cfg.RouterAddr(); err != nil {
		return err
	}
	static, err := cfg.Write()
	if err != nil {
		return err
	}
	p, err := StartProcess("traefik", s.logDir, bin, []string{"--configFile=" + static}, nil)
	if err != nil {
		return err
	}
	s.track(p)
	s.Traefik = p
	client := s.HTTPClient()
	return p.WaitReady(ctx, startTimeout, func() error {
		resp, err := client.Get(s.URL() + "/v2/")
		if err != nil {
			return err
		}
		resp.Body.Close()
		if resp.StatusCode == http.StatusNotFound || resp.StatusCode >= 500 {
			return fmt.Errorf("GET /v2/ through Traefik: %s", resp.Status)
		}
		return nil
	})
}

// URL returns the base URL clients use: https://127.0.0.1:PORT.
func (s *Stack) URL() string { return "https://" + s.Addr }

// HTTPClient returns a client that trusts the stack's certificate, with a
// new Transport. It has no overall timeout: give requests a context.
func (s *Stack) HTTPClient() *http.Client {
	return &http.Client{Transport: s.Transport()}
}

// Transport returns a new transport (its own connection pool, HTTP/2 when
// the server offers it) that trusts the stack's certificate. The stack
// closes its idle connections when it stops.
func (s *Stack) Transport() *http.Transport {
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.TLSClientConfig = s.Certs.TLSConfig()
	tr.MaxIdleConnsPerHost = 64
	s.mu.Lock()
	s.transports = append(s.transports, tr)
	s.mu.Unlock()
	return tr
}

// RequestCounts counts requests by lower-case HTTP method ("get", "put"...).
type RequestCounts map[string]int

// Total returns the number of requests of every method.
func (c RequestCounts) Total() int {
	n := 0
	for _, v := range c {
		n += v
	}
	return n
}

// Writes returns the number of requests that change the registry: POST,
// PUT, PATCH and DELETE.
func (c RequestCounts) Writes() int {
	return c["post"] + c["put"] + c["patch"] + c["delete"]
}

// RegistryRequests returns the requests the registry has served so far, by
// method, from its registry_http_requests_total counter.
func (s *Stack) RegistryRequests() (RequestCounts, error) {
	resp, err := http.Get("http://" + s.RegistryDebugAddr + "/metrics")
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("registry metrics: %s", resp.Status)
	}
	counts := RequestCounts{}
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		line := sc.Text()
		if !strings.HasPrefix(line, "registry_http_requests_total{") {
			continue
		}
		// registry_http_requests_total{code="200",handler="base",method="get"} 1
		labels, value, _ := strings.Cut(strings.TrimPrefix(line, "registry_http_requests_total{"), "} ")
		v, err := strconv.ParseFloat(value, 64)
		if err != nil {
			return nil, fmt.Errorf("registry metrics: %q: %w", line, err)
		}
		_, method, _ := strings.Cut(labels, `method="`)
		method, _, _ = strings.Cut(method, `"`)
		counts[method] += int(v)
	}
	return counts, sc.Err()
}

// Close stops every process the stack started, Traefik first, and returns
// the errors of those that did not stop cleanly.
func (s *Stack) Close() error {
	var errs []error
	for _, p := range s.stopAll() {
		errs = append(errs, fmt.Errorf("stop %s: %w", p.Name, p.stopErr))
	}
	return errors.Join(errs...)
}

// stopAll closes the idle client connections the stack handed out (Traefik
// waits up to its grace period for open connections before it exits), stops
// Traefik, then the other processes, newest first, and returns those that
// did not stop cleanly.
func (s *Stack) stopAll() []*Process {
	s.mu.Lock()
	procs := append([]*Process(nil), s.procs...)
	transports := append([]*http.Transport(nil), s.transports...)
	s.auth = nil
	s.mu.Unlock()
	for _, tr := range transports {
		tr.CloseIdleConnections()
	}
	order := make([]*Process, 0, len(procs))
	if s.Traefik != nil {
		order = append(order, s.Traefik)
	}
	for i := len(procs) - 1; i >= 0; i-- {
		if procs[i] != s.Traefik {
			order = append(order, procs[i])
		}
	}
	var failed []*Process
	for _, p := range order {
		if p.stopErr = p.Stop(); p.stopErr != nil {
			failed = append(failed, p)
		}
	}
	return failed
}

// expectStatus GETs url and returns an error unless the status is want.
func expectStatus(client *http.Client, url string, want int) error {
	resp, err := client.Get(url)
	if err != nil {
		return err
	}
	resp.Body.Close()
	if resp.StatusCode != want {
		return fmt.Errorf("GET %s: got %s, want %d", url, resp.Status, want)
	}
	return nil
}
