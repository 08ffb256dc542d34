package harness

import (
	"context"
	"encoding/json"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestKubeAPIServer builds kube-apiserver (about half an hour the first time
// on two cores, then from the cache), starts it with etcd, and talks to it
// as the administrator with plain HTTP: a Namespace by server-side apply, a
// ConfigMap by POST, both read back, and /version.
func TestKubeAPIServer(t *testing.T) {
	etcd := RequireTool(t, "etcd", "etcd-server")
	ctx := t.Context()
	built := time.Now()
	bin, err := BuildKubeAPIServer(ctx)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("kube-apiserver %s: %s (build or cache lookup: %v)", KubernetesVersion, bin, time.Since(built).Round(time.Millisecond))

	dir := t.TempDir()
	ps := NewProcesses(filepath.Join(dir, "logs"))
	started := time.Now()
	k, err := StartKubeAPIServer(ctx, ps, KubeOptions{Bin: bin, Etcd: etcd, Dir: dir})
	t.Cleanup(func() {
		if k != nil {
			k.Client.CloseIdleConnections()
		}
		// kube-apiserver first: it needs etcd to stop quickly.
		stopped := time.Now()
		if err := k.Stop(); err != nil {
			t.Error(err)
		}
		if k != nil {
			t.Logf("kube-apiserver and etcd stopped in %v", time.Since(stopped).Round(time.Millisecond))
		}
		if err := ps.StopAll(); err != nil {
			t.Error(err)
		}
		if t.Failed() {
			for _, p := range ps.all() {
				t.Logf("--- %s log (tail) ---\n%s", p.Name, p.LogTail(8<<10))
			}
		}
	})
	if err != nil {
		t.Fatalf("start kube-apiserver: %v", err)
	}
	t.Logf("etcd and kube-apiserver ready after %v; kube-apiserver from its start to ok at /readyz: %v",
		time.Since(started).Round(time.Millisecond), k.ReadyAfter.Round(time.Millisecond))

	var version struct{ GitVersion, Major, Minor string }
	kubeRequest(t, k, http.MethodGet, "/version", "", nil, http.StatusOK, &version)
	if version.GitVersion != KubernetesVersion {
		t.Errorf("/version: got gitVersion %q, want %q", version.GitVersion, KubernetesVersion)
	}

	const ns = "registry-auth-e2e"
	applied := "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: " + ns + "\n  labels:\n    app: registry-auth\n"
	kubeRequest(t, k, http.MethodPatch, "/api/v1/namespaces/"+ns+"?fieldManager=registry-auth-e2e",
		"application/apply-patch+yaml", []byte(applied), http.StatusCreated, nil)

	cm, err := json.Marshal(map[string]any{
		"apiVersion": "v1",
		"kind":       "ConfigMap",
		"metadata":   map[string]any{"name": "policy"},
		"data":       map[string]string{"policy.yaml": "rules: []\n"},
	})
	if err != nil {
		t.Fatal(err)
	}
	kubeRequest(t, k, http.MethodPost, "/api/v1/namespaces/"+ns+"/configmaps", "application/json", cm, http.StatusCreated, nil)

	var gotNS struct {
		Metadata struct {
			Name   string
			Labels map[string]string
		}
		Status struct{ Phase string }
	}
	kubeRequest(t, k, http.MethodGet, "/api/v1/namespaces/"+ns, "", nil, http.StatusOK, &gotNS)
	if gotNS.Metadata.Name != ns || gotNS.Metadata.Labels["app"] != "registry-auth" || gotNS.Status.Phase != "Active" {
		t.Errorf("namespace: got %+v, want name %s, label app=registry-auth, phase Active", gotNS, ns)
	}
	var gotCM struct {
		Metadata struct{ Name, Namespace string }
		Data     map[string]string
	}
	kubeRequest(t, k, http.MethodGet, "/api/v1/namespaces/"+ns+"/configmaps/policy", "", nil, http.StatusOK, &gotCM)
	if gotCM.Metadata.Name != "policy" || gotCM.Metadata.Namespace != ns || gotCM.Data["policy.yaml"] != "rules: []\n" {
		t.Errorf("configmap: got %+v, want policy in %s with policy.yaml %q", gotCM, ns, "rules: []\n")
	}

	// Without a client certificate the same read is anonymous: RBAC lets
	// system:anonymous read /version but no ConfigMap.
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tlsConfig := k.TLSConfig()
	tlsConfig.Certificates = nil
	tr.TLSClientConfig = tlsConfig
	defer tr.CloseIdleConnections()
	anon := &http.Client{Transport: tr}
	for path, want := range map[string]int{
		"/version": http.StatusOK,
		"/api/v1/namespaces/" + ns + "/configmaps/policy": http.StatusForbidden,
	} {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, k.URL+path, nil)
		if err != nil {
			t.Fatal(err)
		}
		resp, err := anon.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != want {
			t.Errorf("anonymous GET %s: got %s, want %d", path, resp.Status, want)
		}
	}
}

// kubeRequest sends body to the API server as the administrator, fails t
// unless the answer has status want, and decodes a JSON answer into out
// when out is not nil.
func kubeRequest(t *testing.T, k *KubeAPIServer, method, path, contentType string, body []byte, want int, out any) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	status, data, err := k.Do(ctx, method, path, contentType, body)
	if err != nil {
		t.Fatal(err)
	}
	if status != want {
		t.Fatalf("%s %s: got %d, want %d: %s", method, path, status, want, strings.TrimSpace(string(data)))
	}
	if out != nil {
		if err := json.Unmarshal(data, out); err != nil {
			t.Fatalf("%s %s: %v: %s", method, path, err, data)
		}
	}
}
