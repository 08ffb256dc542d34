package harness

import (
	"context"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"

	"github.com/compose-spec/compose-go/v2/types"
	"go.yaml.in/yaml/v4"
)

// TraefikInputs says what replaces the Docker world of the repository's stack
// when Traefik runs as a plain process.
type TraefikInputs struct {
	// RepoRoot is the checkout holding docker-compose.yml and traefik/.
	RepoRoot string
	// Dir receives the generated configuration: Dir/traefik.yml and
	// Dir/dynamic/ (the file provider's directory).
	Dir string
	// Backends maps compose service names to the loopback host:port of the
	// process that plays that service, e.g. "registry" -> "127.0.0.1:41234".
	Backends map[string]string
	// Mounts maps bind-mount sources of the traefik service, relative to
	// RepoRoot (e.g. "certs"), to the directories that replace them. The
	// file provider's directory is always Dir/dynamic.
	Mounts map[string]string
	// EntryPoints maps entry point names to loopback addresses. Entry points
	// of traefik/traefik.yml not named here get a free loopback port.
	EntryPoints map[string]string
}

// TraefikConfig is Traefik's configuration derived from the repository:
// the static configuration of traefik/traefik.yml with only addresses and
// paths changed, and a dynamic configuration made of the files in
// traefik/dynamic/ plus the tree that the docker provider would build from
// the traefik.* labels of docker-compose.yml. Callers may change a
// middleware (SetMiddleware: the benchmarks swap registry-auth for others)
// before Write.
type TraefikConfig struct {
	Dir         string
	Static      map[string]any            // traefik.yml
	Dynamic     map[string]map[string]any // file name in Dir/dynamic -> content
	EntryPoints map[string]string         // entry point name -> loopback address
}

// labelsFile is the dynamic configuration file holding the label tree.
const labelsFile = "compose-labels.yml"

// LoadTraefikConfig derives Traefik's configuration for a stack on loopback
// from the repository's docker-compose.yml, traefik/traefik.yml and
// traefik/dynamic/. It changes addresses and paths only:
//   - every entry point's address becomes a loopback address;
//   - the docker provider is removed (its routers, services and middlewares
//     come from the labels instead, in the file provider's directory);
//   - container paths under the traefik service's bind mounts become the
//     paths on this machine (Mounts replaces sources such as ./certs);
//   - service URLs and addresses that name a compose service (such as the
//     forwardAuth address https://auth:8080/auth) point at Backends;
//   - container paths in the labels (the forwardAuth tls.ca, tls.cert and
//     tls.key under /certs) become the paths on this machine, as in the files.
func LoadTraefikConfig(ctx context.Context, in TraefikInputs) (*TraefikConfig, error) {
	project, err := LoadCompose(ctx, in.RepoRoot)
	if err != nil {
		return nil, err
	}
	traefikSvc, err := composeService(project, "traefik")
	if err != nil {
		return nil, err
	}
	replace := map[string]string{"traefik/dynamic": filepath.Join(in.Dir, "dynamic")}
	for k, v := range in.Mounts {
		replace[k] = v
	}
	mounts := newMountMap(traefikSvc, in.RepoRoot, replace)

	c := &TraefikConfig{Dir: in.Dir, Dynamic: map[string]map[string]any{}, EntryPoints: map[string]string{}}
	if c.Static, err = readYAML(filepath.Join(in.RepoRoot, "traefik", "traefik.yml")); err != nil {
		return nil, err
	}
	if err := c.localizeStatic(in.EntryPoints, mounts); err != nil {
		return nil, err
	}
	if err := c.loadDynamicFiles(filepath.Join(in.RepoRoot, "traefik", "dynamic"), mounts); err != nil {
		return nil, err
	}
	labels, err := labelTree(project, in.Backends, exposedByDefault(c.Static))
	if err != nil {
		return nil, err
	}
	mounts.rewrite(labels)
	c.Dynamic[labelsFile] = labels
	return c, nil
}

// localizeStatic changes the static configuration's entry point addresses
// and paths, and replaces the docker provider by the file provider.
func (c *TraefikConfig) localizeStatic(addrs map[string]string, mounts mountMap) error {
	entryPoints, _ := c.Static["entryPoints"].(map[string]any)
	for name, ep := range entryPoints {
		ep, ok := ep.(map[string]any)
		if !ok {
			return fmt.Errorf("traefik.yml: entry point %s is not a map", name)
		}
		addr := addrs[name]
		if addr == "" {
			var err error
			if addr, err = FreeAddr(); err != nil {
				return err
			}
		}
		ep["address"] = addr
		c.EntryPoints[name] = addr
	}
	providers, _ := c.Static["providers"].(map[string]any)
	file, _ := providers["file"].(map[string]any)
	if file == nil {
		return fmt.Errorf("traefik.yml has no file provider to hold the label configuration")
	}
	delete(providers, "docker")
	mounts.rewrite(c.Static)
	if dir, _ := file["directory"].(string); dir != filepath.Join(c.Dir, "dynamic") {
		return fmt.Errorf("traefik.yml: file provider directory %q is not the mounted traefik/dynamic", dir)
	}
	return nil
}

// loadDynamicFiles reads the YAML files of traefik/dynamic, with container
// paths (certificates) translated.
func (c *TraefikConfig) loadDynamicFiles(dir string, mounts mountMap) error {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return err
	}
	for _, e := range entries {
		ext := filepath.Ext(e.Name())
		if e.IsDir() || (ext != ".yml" && ext != ".yaml") {
			continue
		}
		tree, err := readYAML(filepath.Join(dir, e.Name()))
		if err != nil {
			return err
		}
		mounts.rewrite(tree)
		c.Dynamic[e.Name()] = tree
	}
	return nil
}

// exposedByDefault reports the docker provider's exposedByDefault setting
// (Traefik's default is true).
func exposedByDefault(static map[string]any) bool {
	providers, _ := static["providers"].(map[string]any)
	docker, _ := providers["docker"].(map[string]any)
	v, ok := docker["exposedByDefault"].(bool)
	return !ok || v
}

// WithoutComposeLabels drops the routers, services and middlewares derived from
// docker-compose.yml's labels, for a Traefik whose routes come from another provider (the
// kubernetesCRD provider of e2e/kubernetes_test.go).
func (c *TraefikConfig) WithoutComposeLabels() { delete(c.Dynamic, labelsFile) }

// Write writes Dir/traefik.yml and the dynamic files, and returns the path
// of the static configuration file (for traefik --configFile).
func (c *TraefikConfig) Write() (string, error) {
	dyn := filepath.Join(c.Dir, "dynamic")
	if err := os.MkdirAll(dyn, 0o755); err != nil {
		return "", err
	}
	for name, tree := range c.Dynamic {
		if err := writeYAML(filepath.Join(dyn, name), tree); err != nil {
			return "", err
		}
	}
	static := filepath.Join(c.Dir, "traefik.yml")
	return static, writeYAML(static, c.Static)
}

// labelTree turns the traefik.* labels of the compose services into the
// dynamic configuration tree the docker provider would build, for the file
// provider: keys of "traefik.http.routers.registry.rule" become nested maps
// http -> routers -> registry -> rule. Services become load balancers on the
// Backends addresses. Services without traefik.enable=true are skipped when
// exposedByDefault is false, as the docker provider does.
func labelTree(project *types.Project, backends map[string]string, exposedByDefault bool) (map[string]any, error) {
	tree := map[string]any{}
	names := make([]string, 0, len(project.Services))
	for name := range project.Services {
		names = append(names, name)
	}
	sort.Strings(names)
	for _, name := range names {
		labels := project.Services[name].Labels
		enabled := exposedByDefault
		if v, ok := labels["traefik.enable"]; ok {
			enabled, _ = strconv.ParseBool(v)
		}
		if !enabled {
			continue
		}
		own := map[string]any{}
		for key, value := range labels {
			path := strings.Split(key, ".")
			if path[0] != "traefik" || len(path) < 3 || (path[1] != "http" && path[1] != "tcp" && path[1] != "udp") {
				continue // traefik.enable, traefik.docker.*: provider settings
			}
			setPath(own, path[1:], value)
		}
		if err := containerServices(own, name, backends[name]); err != nil {
			return nil, err
		}
		merge(tree, own)
	}
	if err := pointAtBackends(tree, project, backends); err != nil {
		return nil, err
	}
	return tree, nil
}

// containerServices replaces the docker-only "loadbalancer.server.port"
// form of the HTTP services a container declares by the file provider's
// "loadBalancer.servers[].url" on the container's backend address, creates
// the default service named after the container when it has routers but no
// service, and binds routers without a service to the container's service.
func containerServices(own map[string]any, container, backend string) error {
	http := childMap(own, "http")
	if http == nil {
		return nil
	}
	routers := childMap(http, "routers")
	services := childMap(http, "services")
	if services == nil && routers != nil {
		services = map[string]any{container: map[string]any{}}
		http["services"] = services
	}
	for name, svc := range services {
		if backend == "" {
			return fmt.Errorf("docker-compose.yml: service %s declares Traefik service %s, but no process plays it", container, name)
		}
		svcMap, _ := svc.(map[string]any)
		lb := childMap(svcMap, "loadbalancer")
		if lb == nil {
			lb = map[string]any{}
			svcMap["loadbalancer"] = lb
		}
		scheme := "http"
		if server := childMap(lb, "server"); server != nil {
			if s, ok := server["scheme"].(string); ok {
				scheme = s
			}
			deleteKey(lb, "server")
		}
		lb["servers"] = []any{map[string]any{"url": scheme + "://" + backend}}
	}
	if len(services) == 1 {
		for svcName := range services {
			for _, r := range routers {
				if r, ok := r.(map[string]any); ok && childValue(r, "service") == nil {
					r["service"] = svcName
				}
			}
		}
	}
	return nil
}

// pointAtBackends rewrites every URL in the tree whose host is a compose
// service (e.g. the forwardAuth address http://auth:8080/auth) to the
// loopback address of the process that plays that service.
func pointAtBackends(tree map[string]any, project *types.Project, backends map[string]string) error {
	var err error
	walkStrings(tree, func(s string) string {
		u, perr := url.Parse(s)
		if perr != nil || (u.Scheme != "http" && u.Scheme != "https") {
			return s
		}
		if _, isService := project.Services[u.Hostname()]; !isService {
			return s
		}
		addr, ok := backends[u.Hostname()]
		if !ok {
			err = fmt.Errorf("docker-compose.yml labels name %s, but no process plays service %s", s, u.Hostname())
			return s
		}
		u.Host = addr
		return u.String()
	})
	return err
}

// setPath stores value at the nested key path of tree, making maps on the way.
func setPath(tree map[string]any, path []string, value string) {
	for _, k := range path[:len(path)-1] {
		next, ok := tree[k].(map[string]any)
		if !ok {
			next = map[string]any{}
			tree[k] = next
		}
		tree = next
	}
	tree[path[len(path)-1]] = value
}

// merge copies src into dst, recursing into maps present in both.
func merge(dst, src map[string]any) {
	for k, v := range src {
		sm, sok := v.(map[string]any)
		dm, dok := dst[k].(map[string]any)
		if sok && dok {
			merge(dm, sm)
			continue
		}
		dst[k] = v
	}
}

// MiddlewareKind returns the type of the HTTP middleware name as the
// dynamic configuration declares it, in lower case ("forwardauth",
// "basicauth"...), or "" if nothing declares it.
func (c *TraefikConfig) MiddlewareKind(name string) string {
	for _, tree := range c.Dynamic {
		for kind := range childMap(childMap(childMap(tree, "http"), "middlewares"), name) {
			return strings.ToLower(kind)
		}
	}
	return ""
}

// SetMiddleware replaces the definition of the HTTP middleware name by def,
// e.g. {"basicAuth": {"usersFile": ...}}, where the dynamic configuration
// declares it. With a nil def it removes the middleware, every router's use
// of it, and a middlewares section left empty (which Traefik refuses). It
// fails if nothing declares the middleware.
func (c *TraefikConfig) SetMiddleware(name string, def map[string]any) error {
	found := false
	for _, tree := range c.Dynamic {
		http := childMap(tree, "http")
		middlewares := childMap(http, "middlewares")
		if childMap(middlewares, name) == nil {
			continue
		}
		found = true
		deleteKey(middlewares, name)
		if def != nil {
			middlewares[name] = def
		} else if len(middlewares) == 0 {
			deleteKey(http, "middlewares")
		}
	}
	if !found {
		return fmt.Errorf("the Traefik configuration declares no middleware %q", name)
	}
	if def != nil {
		return nil
	}
	for _, tree := range c.Dynamic {
		for _, r := range childMap(childMap(tree, "http"), "routers") {
			if r, ok := r.(map[string]any); ok {
				dropRouterMiddleware(r, name)
			}
		}
	}
	return nil
}

// PlainHTTPForwardAuth turns the forwardAuth middleware name into the
// plain-HTTP hop a user may still configure instead of the repository's
// HTTPS one: its address's https:// becomes http:// and its tls block goes.
// Use it with AuthService.WithoutTLS.
func (c *TraefikConfig) PlainHTTPForwardAuth(name string) error {
	for _, tree := range c.Dynamic {
		fa := childMap(childMap(childMap(childMap(tree, "http"), "middlewares"), name), "forwardauth")
		if fa == nil {
			continue
		}
		addr, _ := childValue(fa, "address").(string)
		if !strings.HasPrefix(addr, "https://") {
			return fmt.Errorf("forwardAuth middleware %q: address %q is not https://", name, addr)
		}
		deleteKey(fa, "address")
		deleteKey(fa, "tls")
		fa["address"] = "http://" + strings.TrimPrefix(addr, "https://")
		return nil
	}
	return fmt.Errorf("the Traefik configuration declares no forwardAuth middleware %q", name)
}

// dropRouterMiddleware removes name from a router's middlewares: a
// comma-separated string in labels, a list in YAML files. A router left with
// none loses the key.
func dropRouterMiddleware(router map[string]any, name string) {
	var kept []string
	switch v := childValue(router, "middlewares").(type) {
	case string:
		for _, m := range strings.Split(v, ",") {
			if m = strings.TrimSpace(m); m != name && m != "" {
				kept = append(kept, m)
			}
		}
	case []any:
		for _, m := range v {
			if m, _ := m.(string); m != name && m != "" {
				kept = append(kept, m)
			}
		}
	default:
		return
	}
	deleteKey(router, "middlewares")
	if len(kept) > 0 {
		router["middlewares"] = strings.Join(kept, ",")
	}
}

// childValue returns the value under key, matching the key without regard to
// case, as Traefik's label and file parsers do.
func childValue(m map[string]any, key string) any {
	for k, v := range m {
		if strings.EqualFold(k, key) {
			return v
		}
	}
	return nil
}

func childMap(m map[string]any, key string) map[string]any {
	v, _ := childValue(m, key).(map[string]any)
	return v
}

func deleteKey(m map[string]any, key string) {
	for k := range m {
		if strings.EqualFold(k, key) {
			delete(m, k)
		}
	}
}

func readYAML(path string) (map[string]any, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	tree := map[string]any{}
	if err := yaml.Unmarshal(data, &tree); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return tree, nil
}

func writeYAML(path string, tree any) error {
	data, err := yaml.Marshal(tree)
	if err != nil {
		return err
	}
	return os.WriteFile(path, data, 0o644)
}

// RouterAddr returns the loopback address of the entry point the compose
// labels' routers use (the registry's, websecure in the repository): the
// first one a router names, or else the one marked asDefault.
func (c *TraefikConfig) RouterAddr() (string, error) {
	routers := childMap(childMap(c.Dynamic[labelsFile], "http"), "routers")
	if len(routers) == 0 {
		return "", fmt.Errorf("the compose labels declare no router")
	}
	name := ""
	for _, r := range routers {
		r, _ := r.(map[string]any)
		eps, _ := childValue(r, "entrypoints").(string)
		if first, _, _ := strings.Cut(eps, ","); strings.TrimSpace(first) != "" {
			name = strings.TrimSpace(first)
			break
		}
	}
	if name == "" {
		entryPoints, _ := c.Static["entryPoints"].(map[string]any)
		for n, ep := range entryPoints {
			if ep, _ := ep.(map[string]any); ep["asDefault"] == true {
				name = n
			}
		}
	}
	addr, ok := c.EntryPoints[name]
	if !ok {
		return "", fmt.Errorf("the routers' entry point %q is not in traefik.yml", name)
	}
	return addr, nil
}
