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
	"time"

	"github.com/registry-auth/registry-auth/e2e/harness"
	"github.com/registry-auth/registry-auth/internal/slapd"
)

// lab is what every setup of a run shares: the programs, the certificate,
// the registry, and the processes to stop on the way out.
type lab struct {
	dir      string // the run's private directory
	repoRoot string
	bins     map[string]string // "traefik", "registry", "registry-auth", "self"
	procs    *harness.Processes
	certs    *harness.Certs
	client   *http.Client // trusts certs; loopback only
	// hopClient talks to the auth servers themselves: it trusts the hop CA and
	// presents Traefik's client certificate (plain HTTP works with it too).
	hopClient *http.Client
	editFiles *userFiles // the edit workload's 500 users, nil when it does not run
	directory *directory // setups 10 and 11's slapd, started by the first of them
	out       io.Writer  // progress lines
	started   time.Time
	registry  *harness.Registry
}

// deleteBlob removes a pushed blob's data from the registry's storage, to
// keep a run's disk use at one big layer at a time. Nothing reads it again.
func (l *lab) deleteBlob(hex string) error {
	if len(hex) < 2 || strings.ContainsAny(hex, "/.") {
		return fmt.Errorf("bad digest %q", hex)
	}
	return os.RemoveAll(filepath.Join(l.registry.DataDir, "docker", "registry", "v2", "blobs", "sha256", hex[:2], hex))
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

// stop stops the setup's processes together. Apache's workers now and then
// ignore SIGTERM after a load (its own log then shows "child process still
// did not exit"); being killed is a fact about Apache, printed to out, and
// no failure of the measurements.
func (s *stack) stop(out io.Writer) error {
	err := harness.StopTogether(s.proxy, s.auth)
	if (s.id == apacheRecipe || s.id == apacheLDAP) && errors.Is(err, harness.ErrKilled) {
		fmt.Fprintf(out, "  (%v)\n", err)
		return nil
	}
	return err
}

// startSetup starts setup id in front of the lab's registry, with its own
// copy of files (the directory's users are not copied: there is one
// directory), and waits until the proxy answers.
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
	if files.Directory {
		if _, err = l.startDirectory(ctx); err != nil {
			return nil, err
		}
		s.files = files
	} else if s.files, err = copyUserFiles(files, filepath.Join(dir, "auth")); err != nil {
		return nil, err
	}
	if s.proxyAddr, err = harness.FreeAddr(); err != nil {
		return nil, err
	}
	switch id {
	case apacheRecipe, apacheLDAP:
		err = l.startApache(ctx, s)
	case traefikCeiling, traefikCeilingTLS:
		if err = l.startCeiling(ctx, s); err == nil {
			err = l.startTraefik(ctx, s)
		}
	case traefikRegistryAuth, traefikRegistryNoTTL, traefikRegistryAuthTLS, traefikRegistryAuthPolicy, traefikRegistryAuthLDAP:
		// The compose file's tokens file, there by default: none until the
		// tokens workload writes it.
		extra := []string{"--tokens", s.tokensFile()}
		switch id {
		case traefikRegistryAuthLDAP:
			var ldap []string
			if ldap, err = l.directory.registryAuthFlags(filepath.Join(dir, "auth")); err != nil {
				return nil, err
			}
			extra = append(extra, ldap...)
		case traefikRegistryNoTTL:
			extra = append(extra, "--cache-ttl", "0")
		case traefikRegistryAuthPolicy:
			path := filepath.Join(filepath.Dir(s.files.Htpasswd), "policy.yml")
			if err = writeLongPolicy(path); err != nil {
				return nil, err
			}
			extra = append(extra, "--policy", path)
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
	if err := s.proxy.WaitHTTP(ctx, l.client, s.proxyURL("/v2/"), want); err != nil {
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

// startApache writes the recipe's httpd.conf (setup 10: with the
// directory) and runs apache2 in the foreground on it.
func (l *lab) startApache(ctx context.Context, s *stack) error {
	root := filepath.Join(s.dir, "apache")
	if err := os.MkdirAll(root, 0o755); err != nil {
		return err
	}
	_, port, _ := strings.Cut(s.proxyAddr, ":")
	var ldap *apacheLDAPConfig
	if s.id == apacheLDAP {
		ldap = &apacheLDAPConfig{
			URL:          l.directory.userURL(),
			BindDN:       slapd.AccountDN(serviceAccount),
			BindPassword: serviceAccountPassword,
			PushGroupDN:  slapd.GroupDN(pushGroup),
		}
	}
	conf, err := writeApacheConfig(ctx, apacheConfig{
		ServerRoot:   root,
		Listen:       s.proxyAddr,
		Port:         port,
		CertFile:     l.certs.CertFile,
		KeyFile:      l.certs.KeyFile,
		Htpasswd:     s.files.Htpasswd,
		Groups:       s.files.Groups,
		RegistryAddr: l.registry.Addr,
		LDAP:         ldap,
	})
	if err != nil {
		return err
	}
	s.proxy, err = l.procs.Start("apache", "apache2", []string{"-f", conf, "-DFOREGROUND"}, nil)
	return err
}

// startCeiling starts this program again as the "200 at once" server, over
// TLS with registry-auth's certificate and client CA for setup 7.
func (l *lab) startCeiling(ctx context.Context, s *stack) error {
	addr, err := harness.FreeAddr()
	if err != nil {
		return err
	}
	env := []string{ceilingEnv + "=" + addr}
	if s.id.tlsHop() {
		env = append(env, ceilingTLSEnv+"="+strings.Join(l.hopFiles(), string(filepath.ListSeparator)))
	}
	p, err := l.procs.Start("ceiling", l.bins["self"], nil, env)
	if err != nil {
		return err
	}
	s.auth, s.authAddr, s.authName = p, addr, "200-at-once server"
	return p.WaitHTTP(ctx, l.hopClient, s.authURL("/auth"), http.StatusOK)
}

// hopFiles are registry-auth's certificate, key and client CA as the
// harness made them (the compose file's ./certs/auth-hop).
func (l *lab) hopFiles() []string {
	return []string{filepath.Join(l.certs.HopDir, "auth.crt"), filepath.Join(l.certs.HopDir, "auth.key"), l.certs.HopCAFile}
}

// authURL returns the URL of path on the setup's auth server itself.
func (s *stack) authURL(path string) string {
	if s.id.tlsHop() {
		return "https://" + s.authAddr + path
	}
	return "http://" + s.authAddr + path
}

// authConnections returns how many TCP connections the setup's auth server
// has accepted so far, by its own count: registry-auth's
// registry_auth_connections_accepted_total, the ceiling server's
// /connections. -1 for setups without a separate auth server.
func (l *lab) authConnections(ctx context.Context, s *stack) (int64, error) {
	switch {
	case s.id.ceiling():
		return l.fetchCount(ctx, s.authURL(ceilingConnectionsPath), "")
	case s.id.usesRegistryAuth():
		return l.fetchCount(ctx, s.authURL("/metrics"), "registry_auth_connections_accepted_total ")
	}
	return -1, nil
}

// fetchCount GETs url with the hop client (it has Traefik's client
// certificate) and returns the number on the line that starts with prefix
// (the whole body when prefix is empty).
func (l *lab) fetchCount(ctx context.Context, url, prefix string) (int64, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return 0, err
	}
	resp, err := l.hopClient.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return 0, err
	}
	for _, line := range strings.Split(string(body), "\n") {
		if v, ok := strings.CutPrefix(line, prefix); ok && (prefix != "" || line != "") {
			var f float64
			if _, err := fmt.Sscan(strings.TrimSpace(v), &f); err != nil {
				return 0, fmt.Errorf("%s: %q: %w", url, line, err)
			}
			return int64(f), nil
		}
	}
	return 0, fmt.Errorf("%s: no line %q", url, prefix)
}

// startRegistryAuth starts registry-auth as docker-compose.yml's auth
// service runs it, its /auth directory being the one that holds files
// (s.dir/auth for the directory's users, whose flags extra holds), plus
// extra flags, and waits for /readyz.
func (l *lab) startRegistryAuth(ctx context.Context, s *stack, files *userFiles, extra ...string) error {
	authDir := filepath.Join(s.dir, "auth")
	if !files.Directory {
		authDir = filepath.Dir(files.Htpasswd)
	}
	svc, err := harness.ComposeAuthService(ctx, l.repoRoot, authDir, l.certs.HopDir)
	if err != nil {
		return err
	}
	if !s.id.tlsHop() {
		svc = svc.WithoutTLS()
	}
	if !files.Directory && (svc.HTPasswdFile != files.Htpasswd || svc.GroupsFile != files.Groups) {
		return fmt.Errorf("docker-compose.yml's auth service reads %s and %s, the users are in %s and %s: update copyUserFiles",
			svc.HTPasswdFile, svc.GroupsFile, files.Htpasswd, files.Groups)
	}
	addr, err := harness.FreeAddr()
	if err != nil {
		return err
	}
	s.auth, err = harness.StartRegistryAuth(ctx, l.procs, l.bins["registry-auth"], svc, addr, extra...)
	s.authAddr, s.authName = addr, "registry-auth"
	return err
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
		Backends:    map[string]string{"registry": l.registry.Addr, "auth": authAddr},
		Mounts:      map[string]string{"certs": l.certs.Dir},
		EntryPoints: map[string]string{"websecure": s.proxyAddr},
	})
	if err != nil {
		return err
	}
	if err := setMiddleware(cfg, s); err != nil {
		return err
	}
	s.proxy, err = harness.StartTraefik(l.procs, l.bins["traefik"], cfg)
	return err
}

// composeMiddleware is the forwardAuth middleware of docker-compose.yml's
// labels, which the registry router uses.
const composeMiddleware = "registry-auth"

// setMiddleware changes the registry router's middleware for setups 2 and
// 3; setups 4 to 6 take the plain-HTTP form of the labels' forwardAuth
// middleware, 7 to 9 and 11 keep it as it is (HTTPS with Traefik's client
// certificate); both point at s.authAddr through Backends.
func setMiddleware(cfg *harness.TraefikConfig, s *stack) error {
	if kind := cfg.MiddlewareKind(composeMiddleware); kind != "forwardauth" {
		return fmt.Errorf("docker-compose.yml's labels no longer declare the forwardAuth middleware %q (found %q): update bench/setups.go", composeMiddleware, kind)
	}
	switch s.id {
	case traefikBasicAuth:
		return cfg.SetMiddleware(composeMiddleware, map[string]any{"basicAuth": map[string]any{
			"usersFile": s.files.Htpasswd,
			"realm":     "Registry Authentication",
		}})
	case traefikNoAuth:
		return cfg.SetMiddleware(composeMiddleware, nil)
	case traefikCeiling, traefikRegistryAuth, traefikRegistryNoTTL:
		// The plain-HTTP hop, as a user who keeps it configures it.
		return cfg.PlainHTTPForwardAuth(composeMiddleware)
	case traefikCeilingTLS, traefikRegistryAuthTLS, traefikRegistryAuthPolicy, traefikRegistryAuthLDAP:
		return nil // the labels' HTTPS hop with Traefik's client certificate
	default:
		return fmt.Errorf("setup %d is not a Traefik setup", s.id)
	}
}
