package e2e

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/registry-auth/registry-auth/e2e/harness"

	"go.yaml.in/yaml/v4"
	"sigs.k8s.io/kustomize/api/krusty"
	"sigs.k8s.io/kustomize/kyaml/filesys"
)

// kubeObject is one object of the rendered base, as a generic tree.
type kubeObject map[string]any

func (o kubeObject) kind() string { s, _ := o["kind"].(string); return s }

func (o kubeObject) meta(key string) string {
	m, _ := o["metadata"].(map[string]any)
	s, _ := m[key].(string)
	return s
}

// dig follows keys (strings for maps, ints for lists) into o, nil when a step is missing.
func dig(tree any, path ...any) any {
	if o, ok := tree.(kubeObject); ok {
		tree = map[string]any(o)
	}
	for _, p := range path {
		switch k := p.(type) {
		case string:
			m, ok := tree.(map[string]any)
			if !ok {
				return nil
			}
			tree = m[k]
		case int:
			l, ok := tree.([]any)
			if !ok || k >= len(l) {
				return nil
			}
			tree = l[k]
		}
	}
	return tree
}

// renderKubernetesBase renders deploy/kubernetes as `kubectl apply -k` does (kustomize's own
// library, the one kubectl embeds), and returns its YAML and its objects.
func renderKubernetesBase(t testing.TB) ([]byte, []kubeObject) {
	t.Helper()
	root, err := harness.RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	m, err := krusty.MakeKustomizer(krusty.MakeDefaultOptions()).Run(filesys.MakeFsOnDisk(), filepath.Join(root, "deploy", "kubernetes"))
	if err != nil {
		t.Fatalf("kustomize build deploy/kubernetes: %v", err)
	}
	out, err := m.AsYaml()
	if err != nil {
		t.Fatal(err)
	}
	var objects []kubeObject
	for _, doc := range strings.Split(string(out), "\n---\n") {
		// Into a plain map: yaml.v3 gives nested mappings the type of the outer one.
		var o map[string]any
		if err := yaml.Unmarshal([]byte(doc), &o); err != nil {
			t.Fatal(err)
		}
		objects = append(objects, o)
	}
	return out, objects
}

// TestKubernetesManifestsStatic: the traps of the Kubernetes base that a cluster would not
// report: a Secret mounted with subPath (a copy kubelet never updates: edits would never
// reach the service), a file the service reads outside its Secret volumes, a Traefik
// object's Secret in another namespace than its own (Traefik reads them from the object's
// namespace and fails), trusted proxies without the auth-lb hop's 127.0.0.1 (every client
// would be one address to the throttle), a NetworkPolicy that lets every namespace in, and an
// auth-lb address that k3s/traefik-config.yaml does not define.
func TestKubernetesManifestsStatic(t *testing.T) {
	t.Parallel()
	_, objects := renderKubernetesBase(t)
	kinds := map[string]int{}
	for _, o := range objects {
		kinds[o.kind()]++
		if o.kind() != "Namespace" && o.meta("namespace") != "registry" {
			t.Errorf("%s %s is in namespace %q, want registry (the namespace of its Secrets)", o.kind(), o.meta("name"), o.meta("namespace"))
		}
	}
	for _, want := range []string{"Deployment", "Service", "PodDisruptionBudget", "NetworkPolicy", "Middleware", "IngressRoute", "ServersTransport", "PersistentVolumeClaim"} {
		if kinds[want] == 0 {
			t.Errorf("the base has no %s", want)
		}
	}

	var secretRefs []string // Secrets the Traefik objects read, by name
	for _, o := range objects {
		switch o.kind() {
		case "Deployment":
			secretVolumes := map[string]bool{}
			volumes, _ := dig(o, "spec", "template", "spec", "volumes").([]any)
			for _, v := range volumes {
				if name, ok := dig(v, "secret", "secretName").(string); ok && name != "" {
					secretVolumes[dig(v, "name").(string)] = true
				}
			}
			containers, _ := dig(o, "spec", "template", "spec", "containers").([]any)
			for _, c := range containers {
				mounts, _ := dig(c, "volumeMounts").([]any)
				for _, m := range mounts {
					if sub, _ := dig(m, "subPath").(string); sub != "" && secretVolumes[dig(m, "name").(string)] {
						t.Errorf("%s mounts Secret volume %v with subPath %q: kubelet never updates such a mount", o.meta("name"), dig(m, "name"), sub)
					}
					if sub, _ := dig(m, "subPathExpr").(string); sub != "" {
						t.Errorf("%s mounts %v with subPathExpr", o.meta("name"), dig(m, "name"))
					}
				}
				if o.meta("name") == "registry-auth" {
					checkServiceFiles(t, c, secretVolumes)
				}
			}
		case "NetworkPolicy":
			rules, _ := dig(o, "spec", "ingress").([]any)
			for _, r := range rules {
				peers, _ := dig(r, "from").([]any)
				for _, p := range peers {
					if ns, _ := dig(p, "namespaceSelector", "matchLabels").(map[string]any); len(ns) == 0 {
						t.Errorf("NetworkPolicy %s admits pods of every namespace: name Traefik's", o.meta("name"))
					}
				}
			}
		case "Middleware":
			for _, key := range []string{"caSecret", "certSecret"} {
				if s, ok := dig(o, "spec", "forwardAuth", "tls", key).(string); ok {
					secretRefs = append(secretRefs, s)
				}
			}
			if addr, _ := dig(o, "spec", "forwardAuth", "address").(string); addr != "http://127.0.0.1:9099/auth" {
				t.Errorf("Middleware %s asks %q, want Traefik's own auth-lb entry point http://127.0.0.1:9099/auth", o.meta("name"), addr)
			}
			if dig(o, "spec", "forwardAuth", "trustForwardHeader") == true {
				t.Errorf("Middleware %s trusts client-sent X-Forwarded-* headers", o.meta("name"))
			}
		case "ServersTransport":
			for _, key := range []string{"rootCAsSecrets", "certificatesSecrets"} {
				list, _ := dig(o, "spec", key).([]any)
				for _, s := range list {
					secretRefs = append(secretRefs, s.(string))
				}
			}
			rootCAs, _ := dig(o, "spec", "rootCAs").([]any)
			for _, ca := range rootCAs {
				if s, ok := dig(ca, "secret").(string); ok {
					secretRefs = append(secretRefs, s)
				}
			}
		}
	}
	if len(secretRefs) == 0 {
		t.Error("no Traefik object references a Secret: the hop's client certificate is missing")
	}
	for _, s := range secretRefs {
		// Traefik takes a bare name from the referencing object's namespace; a
		// "namespace/name" would be another namespace's Secret, which it does not read.
		if strings.Contains(s, "/") {
			t.Errorf("a Traefik object references Secret %q in another namespace: Traefik reads a Middleware's or ServersTransport's Secrets from its own namespace", s)
		}
	}

	// The auth-lb entry point the Middleware asks is the one the k3s configuration defines,
	// with the websecure setting that large uploads need.
	root, err := harness.RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	k3s := k3sEntryPoints(t, root)
	for _, c := range []struct {
		path []any
		want any
	}{
		{[]any{"auth-lb", "address"}, authLBAddr},
		{[]any{"auth-lb", "forwardedHeaders", "trustedIPs", 0}, "127.0.0.1/32"},
		{[]any{"websecure", "transport", "respondingTimeouts", "readTimeout"}, "0"},
	} {
		if got := dig(k3s, c.path...); got != c.want {
			t.Errorf("k3s/traefik-config.yaml: entry point setting %v is %v, want %v", c.path, got, c.want)
		}
	}

}

// k3sEntryPoints are the entry points k3s/traefik-config.yaml's arguments configure, as the
// static configuration's entryPoints tree (--entryPoints.auth-lb.address=X is
// entryPoints: {auth-lb: {address: X}}; a trustedIPs value is a list).
func k3sEntryPoints(t *testing.T, root string) map[string]any {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(root, "deploy", "kubernetes", "k3s", "traefik-config.yaml"))
	must(t, err)
	var config struct {
		Spec struct {
			ValuesContent string `yaml:"valuesContent"`
		}
	}
	must(t, yaml.Unmarshal(data, &config))
	var values struct {
		AdditionalArguments []string `yaml:"additionalArguments"`
	}
	must(t, yaml.Unmarshal([]byte(config.Spec.ValuesContent), &values))
	tree := map[string]any{}
	for _, arg := range values.AdditionalArguments {
		key, value, ok := strings.Cut(strings.TrimPrefix(arg, "--entryPoints."), "=")
		if !ok || !strings.HasPrefix(arg, "--entryPoints.") {
			t.Fatalf("k3s/traefik-config.yaml: unexpected argument %q", arg)
		}
		parts := strings.Split(key, ".")
		m := tree
		for _, p := range parts[:len(parts)-1] {
			next, _ := m[p].(map[string]any)
			if next == nil {
				next = map[string]any{}
				m[p] = next
			}
			m = next
		}
		var v any = value
		if parts[len(parts)-1] == "trustedIPs" {
			v = []any{value}
		}
		m[parts[len(parts)-1]] = v
	}
	return tree
}

// checkServiceFiles checks the registry-auth container c: every file its environment names is
// in a Secret volume (secretVolumes, by volume name), and its trusted proxies include the
// auth-lb hop's 127.0.0.1.
func checkServiceFiles(t *testing.T, c any, secretVolumes map[string]bool) {
	t.Helper()
	var secretDirs []string
	mounts, _ := dig(c, "volumeMounts").([]any)
	for _, m := range mounts {
		if secretVolumes[dig(m, "name").(string)] {
			secretDirs = append(secretDirs, dig(m, "mountPath").(string)+"/")
		}
	}
	files := 0
	vars, _ := dig(c, "env").([]any)
	for _, v := range vars {
		name, _ := dig(v, "name").(string)
		value, _ := dig(v, "value").(string)
		switch name {
		case "REGISTRY_AUTH_HTPASSWD", "REGISTRY_AUTH_GROUPS", "REGISTRY_AUTH_TOKENS", "REGISTRY_AUTH_POLICY",
			"REGISTRY_AUTH_TLS_CERT", "REGISTRY_AUTH_TLS_KEY", "REGISTRY_AUTH_TLS_CLIENT_CA":
			if value == "" {
				continue // none: the policy's built-in rule
			}
			files++
			if !slices.ContainsFunc(secretDirs, func(dir string) bool { return strings.HasPrefix(value, dir) }) {
				t.Errorf("registry-auth reads %s=%s, outside its Secret volumes %v", name, value, secretDirs)
			}
		case "REGISTRY_AUTH_TRUSTED_PROXIES":
			if !slices.Contains(strings.Split(value, ","), "127.0.0.1/32") {
				t.Errorf("REGISTRY_AUTH_TRUSTED_PROXIES=%s lacks 127.0.0.1/32, the auth-lb hop inside Traefik", value)
			}
		}
	}
	if files < 6 {
		t.Errorf("registry-auth's environment names %d files, want its htpasswd, groups and tokens files and its TLS pair and client CA", files)
	}
}
