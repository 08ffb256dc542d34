package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/registry-auth/registry-auth/e2e/harness"
)

// startTimeout bounds how long any program may take to answer after start.
const startTimeout = 30 * time.Second

// lab is what every setup of a run shares: the programs, the certificate,
// the registry, and the list of processes to stop on the way out.
type lab struct {
	dir      string // the run's private directory
	logDir   string
	repoRoot string
	bins     map[string]string // "traefik", "registry", "registry-auth", "self"
	certs    *harness.Certs
	client   *http.Client // trusts certs; loopback only
	out      io.Writer    // progress lines
	started  time.Time

	registry     *harness.Process
	registryAddr string
	registryRoot string

	mu    sync.Mutex
	procs []*harness.Process
	seq   int
}

// start starts a program and remembers it, so stopAll can stop it whatever
// happens. Log file names get a sequence number: setups start the same
// program many times.
func (l *lab) start(name, bin string, args, env []string) (*harness.Process, error) {
	l.mu.Lock()
	l.seq++
	logName := fmt.Sprintf("%02d-%s", l.seq, name)
	l.mu.Unlock()
	p, err := harness.StartProcess(logName, l.logDir, bin, args, env)
	if err != nil {
		return nil, err
	}
	p.Name = name
	l.mu.Lock()
	l.procs = append(l.procs, p)
	l.mu.Unlock()
	return p, nil
}

// stopGrace is how long a stopped process group may take to exit after
// SIGTERM before it is killed: more than Traefik's default graceTimeOut
// (10 s) and Go's http.Server.Shutdown wait for new connections (5 s).
const stopGrace = 15 * time.Second

// errKilled marks a process group that had to be killed.
var errKilled = errors.New("did not exit after SIGTERM and was killed")

// stop sends SIGTERM to p's whole process group, kills the group if it has
// not exited after stopGrace, and returns errKilled (wrapped) if it had to.
// The whole group gets the signal because Apache's parent otherwise waits
// for a busy worker for 11 s before it kills it.
func stop(p *harness.Process) error {
	if p == nil {
		return nil
	}
	var killed error
	select {
	case <-p.Done():
	default:
		_ = syscall.Kill(-p.Pid(), syscall.SIGTERM)
		timer := time.NewTimer(stopGrace)
		select {
		case <-p.Done():
		case <-timer.C:
			_ = syscall.Kill(-p.Pid(), syscall.SIGKILL)
			<-p.Done()
			killed = fmt.Errorf("%s (pid %d) %w", p.Name, p.Pid(), errKilled)
		}
		timer.Stop()
	}
	err := errors.Join(killed, p.Stop()) // p has exited: Stop only records that it was asked to
	if kerr := syscall.Kill(-p.Pid(), syscall.SIGKILL); kerr == nil {
		// Something of the group outlived its leader.
		err = errors.Join(err, fmt.Errorf("%s (pid %d): leftover processes of its group %w", p.Name, p.Pid(), errKilled))
	}
	return err
}

// stopAll stops every process the lab started that still runs. It is safe
// to call more than once.
func (l *lab) stopAll() error {
	l.mu.Lock()
	procs := l.procs
	l.procs = nil
	l.mu.Unlock()
	var errs []error
	for i := len(procs) - 1; i >= 0; i-- { // reverse order: proxies before the registry
		select {
		case <-procs[i].Done():
			continue
		default:
		}
		if err := stop(procs[i]); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// startRegistry starts the distribution registry with the configuration of
// the registry:3 image (file storage, in-memory blob descriptor cache) and
// the environment docker-compose.yml gives it.
func (l *lab) startRegistry(ctx context.Context) error {
	addr, err := harness.FreeAddr()
	if err != nil {
		return err
	}
	l.registryRoot = filepath.Join(l.dir, "registry-data")
	cfg := harness.RegistryImageConfig(l.registryRoot, addr)
	cfgFile := filepath.Join(l.dir, "registry.yml")
	if err := os.WriteFile(cfgFile, []byte(cfg), 0o644); err != nil {
		return err
	}
	p, err := l.start("registry", l.bins["registry"], []string{"serve", cfgFile},
		[]string{"REGISTRY_HTTP_RELATIVEURLS=true", "OTEL_TRACES_EXPORTER=none"})
	if err != nil {
		return err
	}
	l.registry, l.registryAddr = p, addr
	url := "http://" + addr + "/v2/"
	return l.waitStatus(ctx, p, url, http.StatusOK)
}

// waitStatus waits until p is running and GET url (without credentials) answers want.
func (l *lab) waitStatus(ctx context.Context, p *harness.Process, url string, want int) error {
	return p.WaitReady(ctx, startTimeout, func() error {
		status, err := get(ctx, l.client, url, "", nil)
		if err == nil && status != want {
			err = fmt.Errorf("GET %s: status %d, want %d", url, status, want)
		}
		return err
	})
}

// deleteBlob removes a pushed blob's data from the registry's storage, to
// keep a run's disk use at one big layer at a time. Nothing reads it again.
func (l *lab) deleteBlob(hex string) error {
	if len(hex) < 2 || strings.ContainsAny(hex, "/.") {
		return fmt.Errorf("bad digest %q", hex)
	}
	return os.RemoveAll(filepath.Join(l.registryRoot, "docker", "registry", "v2", "blobs", "sha256", hex[:2], hex))
}

// stack is one running setup.
type stack struct {
	id        setupID
	dir       string
	files     *userFiles // this stack's own copy: the reload workload edits it
	proxy     *harness.Process
	proxyAddr string
	auth      *harness.Process // registry-auth or the ceiling server; nil otherwise
	authAddr  string
	authName  string
}

// proxyURL returns the URL of path through the setup's TLS proxy.
func (s *stack) proxyURL(path string) string { return "https://" + s.proxyAddr + path }

// stop stops the setup's processes, proxy first. Apache's workers now and
// then ignore SIGTERM after a load (its own log then shows "child process
// still did not exit"); being killed is a fact about Apache, printed to out,
// and no failure of the measurements.
func (s *stack) stop(out io.Writer) error {
	// Both at once: Traefik's graceful shutdown waits for its connections
	// to the auth server, which stopping the auth server ends.
	authErr := make(chan error, 1)
	go func() { authErr <- stop(s.auth) }()
	perr := stop(s.proxy)
	if s.id == apacheRecipe && errors.Is(perr, errKilled) {
		fmt.Fprintf(out, "  (%v)\n", perr)
		perr = nil
	}
	return errors.Join(perr, <-authErr)
}

// startSetup starts setup id in front of the lab's registry, with its own
// copy of files, and waits until the proxy answers.
func (l *lab) startSetup(ctx context.Context, id setupID, files *userFiles) (_ *stack, err error) {
	dir, err := os.MkdirTemp(l.dir, fmt.Sprintf("setup%d-", id))
	if err != nil {
		return nil, err
	}
	// Apache's workers run as "daemon" when started as root: they must read
	// the files in here.
	if err := os.Chmod(dir, 0o755); err != nil {
		return nil, err
	}
	s := &stack{id: id, dir: dir}
	defer func() {
		if err != nil {
			err = errors.Join(err, s.stop(l.out))
		}
	}()
	if s.files, err = copyUserFiles(files, filepath.Join(dir, "auth")); err != nil {
		return nil, err
	}
	if s.proxyAddr, err = harness.FreeAddr(); err != nil {
		return nil, err
	}
	switch id {
	case apacheRecipe:
		err = l.startApache(ctx, s)
	case traefikCeiling:
		if err = l.startCeiling(ctx, s); err == nil {
			err = l.startTraefik(ctx, s)
		}
	case traefikRegistryAuth, traefikRegistryNoTTL:
		var extra []string
		if id == traefikRegistryNoTTL {
			extra = []string{"--cache-ttl", "0"}
		}
		if err = l.startRegistryAuth(ctx, s, s.files, extra...); err == nil {
			err = l.startTraefik(ctx, s)
		}
	default:
		err = l.startTraefik(ctx, s)
	}
	if err != nil {
		return nil, err
	}
	// Ready when a request without credentials gets the setup's answer to
	// it: Traefik serves 404 until its file provider has loaded the routes.
	want := http.StatusUnauthorized
	if !id.authenticates() {
		want = http.StatusOK
	}
	url := s.proxyURL("/v2/")
	if err := l.waitStatus(ctx, s.proxy, url, want); err != nil {
		return nil, err
	}
	return s, nil
}

// copyUserFiles copies the htpasswd and groups files into dir.
func copyUserFiles(files *userFiles, dir string) (*userFiles, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	c := *files
	c.Htpasswd = filepath.Join(dir, "htpasswd")
	c.Groups = filepath.Join(dir, "groups")
	for src, dst := range map[string]string{files.Htpasswd: c.Htpasswd, files.Groups: c.Groups} {
		b, err := os.ReadFile(src)
		if err != nil {
			return nil, err
		}
		if err := os.WriteFile(dst, b, 0o644); err != nil {
			return nil, err
		}
	}
	return &c, nil
}

// startApache writes the recipe's httpd.conf and runs apache2 in the
// foreground on it.
func (l *lab) startApache(ctx context.Context, s *stack) error {
	root := filepath.Join(s.dir, "apache")
	if err := os.MkdirAll(root, 0o755); err != nil {
		return err
	}
	_, port, _ := strings.Cut(s.proxyAddr, ":")
	conf, err := writeApacheConfig(ctx, apacheConfig{
		ServerRoot:   root,
		Listen:       s.proxyAddr,
		Port:         port,
		CertFile:     l.certs.CertFile,
		KeyFile:      l.certs.KeyFile,
		Htpasswd:     s.files.Htpasswd,
		Groups:       s.files.Groups,
		RegistryAddr: l.registryAddr,
	})
	if err != nil {
		return err
	}
	s.proxy, err = l.start("apache", "apache2", []string{"-f", conf, "-DFOREGROUND"}, nil)
	return err
}

// startCeiling starts this program again as the "200 at once" server.
func (l *lab) startCeiling(ctx context.Context, s *stack) error {
	addr, err := harness.FreeAddr()
	if err != nil {
		return err
	}
	p, err := l.start("ceiling", l.bins["self"], nil, []string{ceilingEnv + "=" + addr})
	if err != nil {
		return err
	}
	s.auth, s.authAddr, s.authName = p, addr, "200-at-once server"
	url := "http://" + addr + "/auth"
	return l.waitStatus(ctx, p, url, http.StatusOK)
}

// startRegistryAuth starts registry-auth on files with the settings of
// docker-compose.yml's auth service plus extra flags, and waits for /readyz.
func (l *lab) startRegistryAuth(ctx context.Context, s *stack, files *userFiles, extra ...string) error {
	addr, err := harness.FreeAddr()
	if err != nil {
		return err
	}
	args := append([]string{"serve",
		"--listen", addr,
		"--htpasswd", files.Htpasswd,
		"--groups", files.Groups,
		"--push-group", pushGroup,
		"--log-format", "json",
	}, extra...)
	p, err := l.start("registry-auth", l.bins["registry-auth"], args, nil)
	if err != nil {
		return err
	}
	s.auth, s.authAddr, s.authName = p, addr, "registry-auth"
	url := "http://" + addr + "/readyz"
	return l.waitStatus(ctx, p, url, http.StatusOK)
}

// startTraefik derives Traefik's configuration from the repository (the
// static traefik.yml and the labels of docker-compose.yml, through the e2e
// harness), swaps the registry router's middleware for the setup's, and
// starts Traefik.
func (l *lab) startTraefik(ctx context.Context, s *stack) error {
	authAddr := s.authAddr
	if authAddr == "" {
		// The labels name http://auth:8080/auth; setups 2 and 3 replace
		// that middleware, so this address is never used.
		authAddr = "127.0.0.1:9"
	}
	cfg, err := harness.LoadTraefikConfig(ctx, harness.TraefikInputs{
		RepoRoot:    l.repoRoot,
		Dir:         filepath.Join(s.dir, "traefik"),
		Backends:    map[string]string{"registry": l.registryAddr, "auth": authAddr},
		Mounts:      map[string]string{"certs": l.certs.Dir},
		EntryPoints: map[string]string{"websecure": s.proxyAddr},
	})
	if err != nil {
		return err
	}
	if err := setMiddleware(cfg, s); err != nil {
		return err
	}
	static, err := cfg.Write()
	if err != nil {
		return err
	}
	s.proxy, err = l.start("traefik", l.bins["traefik"], []string{"--configFile=" + static}, nil)
	return err
}

// Names in docker-compose.yml's labels.
const (
	composeRouter     = "registry"
	composeMiddleware = "registry-auth"
)

// setMiddleware changes the registry router's middleware for setups 2 to 4;
// setups 5 and 6 keep the labels' forwardAuth middleware unchanged.
func setMiddleware(cfg *harness.TraefikConfig, s *stack) error {
	var tree map[string]any
	for _, t := range cfg.Dynamic {
		if lookup(t, "http", "routers", composeRouter) != nil {
			tree = t
		}
	}
	if tree == nil {
		return fmt.Errorf("no router %q in the configuration derived from docker-compose.yml", composeRouter)
	}
	router, _ := lookup(tree, "http", "routers", composeRouter).(map[string]any)
	middlewares, _ := lookup(tree, "http", "middlewares").(map[string]any)
	if router == nil || middlewares == nil || lookup(middlewares, composeMiddleware, "forwardauth") == nil {
		return fmt.Errorf("docker-compose.yml's labels no longer declare router %q with forwardAuth middleware %q: update bench/setups.go", composeRouter, composeMiddleware)
	}
	switch s.id {
	case traefikBasicAuth:
		middlewares[composeMiddleware] = map[string]any{"basicAuth": map[string]any{
			"usersFile": s.files.Htpasswd,
			"realm":     "Registry Authentication",
		}}
	case traefikNoAuth:
		delete(middlewares, composeMiddleware)
		if len(middlewares) == 0 {
			// Traefik refuses an empty "middlewares:" section.
			http, _ := lookup(tree, "http").(map[string]any)
			for k := range http {
				if strings.EqualFold(k, "middlewares") {
					delete(http, k)
				}
			}
		}
		for k := range router {
			if strings.EqualFold(k, "middlewares") {
				delete(router, k)
			}
		}
	case traefikCeiling, traefikRegistryAuth, traefikRegistryNoTTL:
		// The labels' forwardAuth, pointed at s.authAddr through Backends.
	default:
		return fmt.Errorf("setup %d is not a Traefik setup", s.id)
	}
	return nil
}

// lookup follows keys (matched without regard to case, as Traefik does)
// through nested maps.
func lookup(tree map[string]any, keys ...string) any {
	var cur any = tree
	for _, key := range keys {
		m, ok := cur.(map[string]any)
		if !ok {
			return nil
		}
		cur = nil
		for k, v := range m {
			if strings.EqualFold(k, key) {
				cur = v
			}
		}
		if cur == nil {
			return nil
		}
	}
	return cur
}
