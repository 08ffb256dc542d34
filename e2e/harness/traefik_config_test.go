package harness

import (
	"context"
	"net"
	"path/filepath"
	"strings"
	"testing"
)

// TestLoadTraefikConfig derives the configuration from the repository's own
// docker-compose.yml and traefik/ and checks that only addresses and paths
// changed: the forwardAuth middleware keeps its settings but asks the test's
// auth process, the registry's router keeps its rule and middleware and goes
// to the test's registry, and nothing points into a container any more.
func TestLoadTraefikConfig(t *testing.T) {
	root, err := RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	certDir := filepath.Join(dir, "mycerts")
	c, err := LoadTraefikConfig(context.Background(), TraefikInputs{
		RepoRoot: root,
		Dir:      dir,
		Backends: map[string]string{"registry": "127.0.0.1:1111", "auth": "127.0.0.1:2222"},
		Mounts:   map[string]string{"certs": certDir},
	})
	if err != nil {
		t.Fatal(err)
	}

	providers := c.Static["providers"].(map[string]any)
	if _, ok := providers["docker"]; ok {
		t.Error("the docker provider is still configured")
	}
	if got := providers["file"].(map[string]any)["directory"]; got != filepath.Join(dir, "dynamic") {
		t.Errorf("file provider directory: got %v, want %s", got, filepath.Join(dir, "dynamic"))
	}
	for name, addr := range c.EntryPoints {
		host, _, err := net.SplitHostPort(addr)
		if err != nil || host != "127.0.0.1" {
			t.Errorf("entry point %s: got address %q, want 127.0.0.1:PORT", name, addr)
		}
	}
	readTimeout := c.Static["entryPoints"].(map[string]any)["websecure"].(map[string]any)["transport"].(map[string]any)["respondingTimeouts"].(map[string]any)["readTimeout"]
	if readTimeout != 0 {
		t.Errorf("websecure readTimeout: got %v, want the repository's 0", readTimeout)
	}

	http := childMap(c.Dynamic[labelsFile], "http")
	fa := childMap(childMap(childMap(http, "middlewares"), "registry-auth"), "forwardauth")
	if got := childValue(fa, "address"); got != "https://127.0.0.1:2222/auth" {
		t.Errorf("forwardAuth address: got %v, want https://127.0.0.1:2222/auth", got)
	}
	// The hop's certificates: container paths under /certs become the test's files.
	tlsBlock := childMap(fa, "tls")
	for key, file := range map[string]string{"ca": "ca.crt", "cert": "traefik.crt", "key": "traefik.key"} {
		if got, want := childValue(tlsBlock, key), filepath.Join(certDir, "auth-hop", file); got != want {
			t.Errorf("forwardAuth tls.%s: got %v, want %s", key, got, want)
		}
	}
	if got := childValue(fa, "trustforwardheader"); got != "false" {
		t.Errorf("forwardAuth trustForwardHeader: got %v, want false as in docker-compose.yml", got)
	}
	router := childMap(childMap(http, "routers"), "registry")
	if got := childValue(router, "middlewares"); got != "registry-auth" {
		t.Errorf("registry router middlewares: got %v, want registry-auth", got)
	}
	if got, _ := childValue(router, "rule").(string); !strings.Contains(got, "/v2") {
		t.Errorf("registry router rule: got %q, want the /v2 prefix", got)
	}
	lb := childMap(childMap(childMap(http, "services"), "registry"), "loadbalancer")
	servers, _ := lb["servers"].([]any)
	if len(servers) != 1 || servers[0].(map[string]any)["url"] != "http://127.0.0.1:1111" {
		t.Errorf("registry service servers: got %v, want one at http://127.0.0.1:1111", servers)
	}
	if childValue(lb, "server") != nil {
		t.Error("the docker-only loadbalancer.server form is still there")
	}

	// No path of the containers is left (certificates, provider directory).
	for name, tree := range c.Dynamic {
		walkStrings(tree, func(s string) string {
			if strings.HasPrefix(s, "/certs") || strings.HasPrefix(s, "/etc/traefik") {
				t.Errorf("%s: container path %q left", name, s)
			}
			if strings.HasSuffix(s, ".crt") || strings.HasSuffix(s, ".key") {
				if !strings.HasPrefix(s, certDir+"/") {
					t.Errorf("%s: certificate path %q is not under %s", name, s, certDir)
				}
			}
			return s
		})
	}
	if addr, err := c.RouterAddr(); err != nil || addr != c.EntryPoints["websecure"] {
		t.Errorf("RouterAddr: got %q, %v; want websecure's %s", addr, err, c.EntryPoints["websecure"])
	}
}

// TestSetMiddleware swaps and removes the labels' forwardAuth middleware,
// as the benchmarks do, on the configuration derived from the repository.
func TestSetMiddleware(t *testing.T) {
	root, err := RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	load := func(t *testing.T) *TraefikConfig {
		t.Helper()
		c, err := LoadTraefikConfig(context.Background(), TraefikInputs{
			RepoRoot: root,
			Dir:      t.TempDir(),
			Backends: map[string]string{"registry": "127.0.0.1:1111", "auth": "127.0.0.1:2222"},
		})
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	router := func(c *TraefikConfig) map[string]any {
		return childMap(childMap(childMap(c.Dynamic[labelsFile], "http"), "routers"), "registry")
	}

	t.Run("replace", func(t *testing.T) {
		c := load(t)
		if got := c.MiddlewareKind("registry-auth"); got != "forwardauth" {
			t.Fatalf("MiddlewareKind before: got %q, want forwardauth", got)
		}
		if err := c.SetMiddleware("registry-auth", map[string]any{"basicAuth": map[string]any{"usersFile": "/x"}}); err != nil {
			t.Fatal(err)
		}
		if got := c.MiddlewareKind("registry-auth"); got != "basicauth" {
			t.Errorf("MiddlewareKind after: got %q, want basicauth", got)
		}
		if got := childValue(router(c), "middlewares"); got != "registry-auth" {
			t.Errorf("router middlewares: got %v, want registry-auth still", got)
		}
	})
	t.Run("remove", func(t *testing.T) {
		c := load(t)
		if err := c.SetMiddleware("registry-auth", nil); err != nil {
			t.Fatal(err)
		}
		if got := c.MiddlewareKind("registry-auth"); got != "" {
			t.Errorf("MiddlewareKind: got %q, want none", got)
		}
		http := childMap(c.Dynamic[labelsFile], "http")
		if v := childValue(http, "middlewares"); v != nil {
			t.Errorf("middlewares section: got %v, want it gone (it was the only middleware)", v)
		}
		if r := router(c); r == nil || childValue(r, "middlewares") != nil {
			t.Errorf("registry router: got %v, want it without middlewares", r)
		}
	})
	t.Run("unknown", func(t *testing.T) {
		if err := load(t).SetMiddleware("no-such", nil); err == nil {
			t.Error("got no error, want one for a middleware nothing declares")
		}
	})
}

// TestDropRouterMiddleware covers both forms of a router's middlewares.
func TestDropRouterMiddleware(t *testing.T) {
	tests := []struct {
		name string
		in   any
		want any // nil: the key is gone
	}{
		{"label string, alone", "registry-auth", nil},
		{"label string, among others", "a, registry-auth,b", "a,b"},
		{"YAML list", []any{"registry-auth", "a"}, "a"},
		{"not used", "a", "a"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := map[string]any{"Middlewares": tt.in}
			dropRouterMiddleware(r, "registry-auth")
			if got := childValue(r, "middlewares"); got != tt.want {
				t.Errorf("got %v, want %v", got, tt.want)
			}
		})
	}
}

// TestPlainHTTPForwardAuth: the plain-HTTP hop drops the tls block and the
// https:// of the labels' forwardAuth middleware.
func TestPlainHTTPForwardAuth(t *testing.T) {
	root, err := RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	c, err := LoadTraefikConfig(context.Background(), TraefikInputs{
		RepoRoot: root, Dir: dir,
		Backends: map[string]string{"registry": "127.0.0.1:1111", "auth": "127.0.0.1:2222"},
		Mounts:   map[string]string{"certs": filepath.Join(dir, "certs")},
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := c.PlainHTTPForwardAuth("registry-auth"); err != nil {
		t.Fatal(err)
	}
	fa := childMap(childMap(childMap(childMap(c.Dynamic[labelsFile], "http"), "middlewares"), "registry-auth"), "forwardauth")
	if got := childValue(fa, "address"); got != "http://127.0.0.1:2222/auth" {
		t.Errorf("address: got %v, want http://127.0.0.1:2222/auth", got)
	}
	if got := childValue(fa, "tls"); got != nil {
		t.Errorf("tls: got %v, want none", got)
	}
	if err := c.PlainHTTPForwardAuth("registry-auth"); err == nil {
		t.Error("a second call: got nil, want an error (no https:// address left)")
	}
}
