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
// reach the service), a Traefik object's Secret in another namespace than its own (Traefik
// reads them from the object's namespace and fails), a Secret-backed file the service is not
// pointed at, and an auth-lb address that k3s/traefik-config.yaml does not define.
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

	// The auth-lb entry point the Middleware asks is the one the k3s configuration defines.
	root, err := harness.RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	var config struct {
		Spec struct {
			ValuesContent string `yaml:"valuesContent"`
		}
	}
	data, err := os.ReadFile(filepath.Join(root, "deploy", "kubernetes", "k3s", "traefik-config.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	if err := yaml.Unmarshal(data, &config); err != nil {
		t.Fatal(err)
	}
	var values struct {
		AdditionalArguments []string `yaml:"additionalArguments"`
	}
	if err := yaml.Unmarshal([]byte(config.Spec.ValuesContent), &values); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"--entryPoints.auth-lb.address=127.0.0.1:9099", "--entryPoints.auth-lb.forwardedHeaders.trustedIPs=127.0.0.1/32", "--entryPoints.websecure.transport.respondingTimeouts.readTimeout=0"} {
		if !slices.Contains(values.AdditionalArguments, want) {
			t.Errorf("k3s/traefik-config.yaml lacks %s", want)
		}
	}
}
