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
)

// StackOptions configures a Stack.
type StackOptions struct {
	// Dir holds everything the stack writes (certificates, auth files,
	// registry storage, Traefik configuration, logs). Required.
	Dir string
	// HTPasswd and Groups are the initial contents of the auth files.
	HTPasswd, Groups string
	// AuthArgs are extra flags for "registry-auth serve", e.g. "--cache-ttl", "0".
	AuthArgs []string
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

	procs    *Processes // every process started, for logs and Close
	authBin  string
	authArgs []string
	authSvc  AuthService

	mu         sync.Mutex
	auth       *Process // the current registry-auth process, nil while stopped
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
	procs := s.procs.all()
	unexpected := map[*Process]bool{}
	for _, p := range procs {
		unexpected[p] = p.Unexpected()
	}
	if err := s.Close(); err != nil {
		t.Error(err)
	}
	if !t.Failed() {
		return
	}
	var bad []*Process
	for _, p := range procs {
		if unexpected[p] || p.Stop() != nil { // Stop returns how Close's stop went
			bad = append(bad, p)
		}
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
	s := &Stack{Dir: opts.Dir, procs: NewProcesses(filepath.Join(opts.Dir, "logs")), authBin: authBin, authArgs: opts.AuthArgs}
	for _, d := range []string{filepath.Join(opts.Dir, "certs"), filepath.Join(opts.Dir, "auth")} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return nil, err
		}
	}
	if s.Certs, err = NewCerts(filepath.Join(opts.Dir, "certs")); err != nil {
		return nil, err
	}
	reg, err := StartRegistry(ctx, s.procs, RegistryOptions{Bin: registryBin, RepoRoot: root, Dir: opts.Dir, Debug: true})
	if reg != nil {
		s.Registry, s.RegistryAddr, s.RegistryDebugAddr = reg.Process, reg.Addr, reg.DebugAddr
	}
	if err != nil {
		return s, s.closeAfter(err)
	}
	if err := s.configureAuth(ctx, root, opts); err != nil {
		return s, s.closeAfter(err)
	}
	if err := s.StartAuth(ctx); err != nil {
		return s, s.closeAfter(err)
	}
	if err := s.startTraefik(ctx, root, traefikBin); err != nil {
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

// configureAuth takes registry-auth's environment from the compose file,
// with the container's /auth mount replaced by Dir/auth, and writes the
// initial htpasswd and groups files where that environment says.
func (s *Stack) configureAuth(ctx context.Context, root string, opts StackOptions) error {
	var err error
	if s.authSvc, err = ComposeAuthService(ctx, root, filepath.Join(s.Dir, "auth"), s.Certs.HopDir); err != nil {
		return err
	}
	s.HTPasswdFile, s.GroupsFile = s.authSvc.HTPasswdFile, s.authSvc.GroupsFile
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
	p, err := StartRegistryAuth(ctx, s.procs, s.authBin, s.authSvc, s.AuthAddr, s.authArgs...)
	s.auth = p // also when it never got ready: its log says why, Close stops it
	return err
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

// startTraefik derives Traefik's configuration (LoadTraefikConfig), starts
// Traefik and waits until the registry route answers through it: 401 from
// registry-auth to a request without credentials, or 200 under a policy
// that lets anyone in (404 while Traefik has not loaded the routes yet).
func (s *Stack) startTraefik(ctx context.Context, root, bin string) error {
	cfg, err := LoadTraefikConfig(ctx, TraefikInputs{
		RepoRoot: root,
		Dir:      filepath.Join(s.Dir, "traefik"),
		Backends: map[string]string{"registry": s.RegistryAddr, "auth": s.AuthAddr},
		Mounts:   map[string]string{"certs": s.Certs.Dir},
	})
	if err != nil {
		return err
	}
	s.TraefikConfig = cfg
	if s.Addr, err = cfg.RouterAddr(); err != nil {
		return err
	}
	if s.Traefik, err = StartTraefik(s.procs, bin, cfg); err != nil {
		return err
	}
	return s.Traefik.WaitHTTP(ctx, s.HTTPClient(), s.URL()+"/v2/", http.StatusUnauthorized, http.StatusOK)
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

// AuthURL returns registry-auth's own base URL, http:// or https:// as the
// compose file configures it.
func (s *Stack) AuthURL() string { return s.authSvc.Scheme() + "://" + s.AuthAddr }

// AuthClient returns a client for registry-auth itself (its /metrics, say)
// that presents Traefik's client certificate and trusts the hop CA, with a
// new Transport the stack closes when it stops.
func (s *Stack) AuthClient() *http.Client {
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.TLSClientConfig = s.Certs.HopTLSConfig()
	s.mu.Lock()
	s.transports = append(s.transports, tr)
	s.mu.Unlock()
	return &http.Client{Transport: tr}
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

// Close closes the idle client connections the stack handed out (Traefik
// waits up to its grace period for open connections before it exits), then
// stops every process the stack started, all at once, and returns the
// errors of those that did not stop cleanly. It may be called more than
// once.
func (s *Stack) Close() error {
	s.mu.Lock()
	transports := append([]*http.Transport(nil), s.transports...)
	s.auth = nil
	s.mu.Unlock()
	for _, tr := range transports {
		tr.CloseIdleConnections()
	}
	return s.procs.StopAll()
}
