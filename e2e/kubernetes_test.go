package e2e

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/remote/transport"
	"github.com/registry-auth/registry-auth/e2e/harness"

	"go.yaml.in/yaml/v4"
)

// kubeNamespace is the namespace of deploy/kubernetes.
const kubeNamespace = "registry"

// authLBAddr is the address of Traefik's auth-lb entry point, which the base's Middleware
// names (and k3s/traefik-config.yaml defines).
const authLBAddr = "127.0.0.1:9099"

// TestKubernetes applies deploy/kubernetes to a real kube-apiserver (with Traefik's CRDs)
// and runs the real Traefik with its kubernetesCRD provider against it. No kubelet runs here:
// the registry and two registry-auth replicas are processes of this machine, on addresses
// the test adds to lo (the API server refuses 127.0.0.0/8 in an EndpointSlice),
// EndpointSlices made by the test point the Services at them,
// and the Secret volume is laid out from the Secret read back from the API server as
// kubelet's atomic writer lays it out. So Traefik reads the Middleware, the ServersTransport
// with its Secrets and the IngressRoutes from the API server exactly as in a cluster.
func TestKubernetes(t *testing.T) {
	etcd := harness.RequireTool(t, "etcd", "etcd-server")
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	root, err := harness.RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	procs := harness.NewProcesses(filepath.Join(dir, "logs"))
	var kube *harness.KubeAPIServer
	var traefik, registry *harness.Process
	var replicaProcs []*harness.Process
	t.Cleanup(func() {
		// In order: Traefik's watches keep kube-apiserver from stopping, and kube-apiserver
		// does not finish stopping without etcd (KubeAPIServer.Stop stops it, then etcd).
		if traefik != nil {
			if err := traefik.Stop(); err != nil {
				t.Error(err)
			}
		}
		if kube != nil {
			kube.Client.CloseIdleConnections()
			if err := kube.Stop(); err != nil {
				t.Error(err)
			}
		}
		if err := procs.StopAll(); err != nil {
			t.Error(err)
		}
		if t.Failed() {
			logged := append([]*harness.Process{traefik, registry}, replicaProcs...)
			if kube != nil {
				logged = append(logged, kube.Process)
			}
			for _, p := range logged {
				if p != nil {
					t.Logf("--- %s log (tail) ---\n%s", p.LogFile, p.LogTail(4<<10))
				}
			}
		}
	})

	bin, err := harness.BuildKubeAPIServer(ctx)
	if err != nil {
		t.Fatal(err)
	}
	kubeDir := filepath.Join(dir, "kube")
	must(t, os.MkdirAll(kubeDir, 0o755))
	if kube, err = harness.StartKubeAPIServer(ctx, procs, harness.KubeOptions{Bin: bin, Etcd: etcd, Dir: kubeDir}); err != nil {
		t.Fatalf("start kube-apiserver: %v", err)
	}
	api := kubeAPI{t: t, k: kube, ctx: ctx}

	// Traefik's CRDs, then the base: every object accepted with strict server-side validation.
	crds, err := harness.TraefikCRDs(ctx)
	if err != nil {
		t.Fatal(err)
	}
	crdYAML, err := os.ReadFile(crds)
	must(t, err)
	for _, crd := range yamlDocuments(t, crdYAML) {
		api.apply(crd)
		api.waitEstablished(crd)
	}
	_, base := renderKubernetesBase(t)
	for _, o := range base {
		api.apply(o)
	}
	t.Logf("deploy/kubernetes: %d objects accepted by kube-apiserver %s with Traefik's CRDs", len(base), harness.KubernetesVersion)

	// The Secrets, made as README.md says (kubectl create secret generic --from-file).
	certs, err := harness.NewCerts(filepath.Join(dir, "certs"))
	must(t, err)
	hop := func(name string) []byte {
		b, err := os.ReadFile(filepath.Join(certs.HopDir, name))
		must(t, err)
		return b
	}
	carol := account{"carol", "carol-arrives"}
	files := map[string][]byte{"htpasswd": []byte(htpasswdFor(t, pusher, reader)), "groups": []byte(groupsFor(pusher))}
	api.apply(secret("registry-auth-files", files))
	api.apply(secret("registry-auth-tls", map[string][]byte{"tls.crt": hop("auth.crt"), "tls.key": hop("auth.key"), "ca.crt": hop("ca.crt")}))
	api.apply(secret("registry-auth-hop-client", map[string][]byte{"tls.crt": hop("traefik.crt"), "tls.key": hop("traefik.key"), "ca.crt": hop("ca.crt")}))

	// The pods' volumes, from the Secrets as the API server returns them.
	authDir, tlsDir := filepath.Join(dir, "volumes", "auth"), filepath.Join(dir, "volumes", "tls")
	authVolume, tlsVolume := secretVolume{authDir}, secretVolume{tlsDir}
	for _, d := range []string{authDir, tlsDir} {
		must(t, os.MkdirAll(d, 0o755))
	}
	must(t, authVolume.write(api.secretData("registry-auth-files")))
	must(t, tlsVolume.write(api.secretData("registry-auth-tls")))

	// The registry, and registry-auth twice with the Deployment's environment, as the pods
	// would be: each on an address of its own.
	replicas, registryIP := []string{"10.213.23.2", "10.213.23.3"}, "10.213.23.4"
	podAddresses(t, append(replicas, registryIP)...)
	registryBin, err := harness.BuildRegistry(ctx)
	must(t, err)
	reg, err := harness.StartRegistry(ctx, procs, harness.RegistryOptions{Bin: registryBin, RepoRoot: root, Dir: dir,
		Addr: net.JoinHostPort(registryIP, freePortOn(t, registryIP))})
	if reg != nil {
		registry = reg.Process
	}
	if err != nil {
		t.Fatalf("start the registry: %v", err)
	}
	authBin, err := harness.BuildRegistryAuth(ctx)
	must(t, err)
	authPort := freePortOn(t, replicas...)
	svc := harness.AuthService{Env: deploymentEnv(t, base, map[string]string{"/auth": authDir, "/tls": tlsDir}), TLS: true}
	for i, ip := range replicas {
		// harness.Processes names logs after the program: one directory per replica.
		rp := harness.NewProcesses(filepath.Join(dir, "logs", fmt.Sprintf("replica-%d", i+1)))
		t.Cleanup(func() { rp.StopAll() })
		p, err := harness.StartRegistryAuth(ctx, rp, authBin, svc, net.JoinHostPort(ip, authPort))
		if p != nil {
			replicaProcs = append(replicaProcs, p)
		}
		if err != nil {
			t.Fatalf("start registry-auth on %s: %v", ip, err)
		}
	}
	_, regPort, _ := net.SplitHostPort(reg.Addr)
	api.apply(endpointSlice("registry", "http", regPort, registryIP))
	api.apply(endpointSlice("registry-auth", "https", authPort, replicas...))

	// Traefik: the static configuration of traefik/traefik.yml, its routes from the API server
	// (kubernetesCRD, reading KUBECONFIG), and the auth-lb entry point of k3s/traefik-config.yaml.
	traefikBin, err := harness.BuildTraefik(ctx)
	must(t, err)
	cfg, err := harness.LoadTraefikConfig(ctx, harness.TraefikInputs{
		RepoRoot: root, Dir: filepath.Join(dir, "traefik"),
		// The compose labels' routes are dropped below; their backends must still resolve.
		Backends: map[string]string{"registry": reg.Addr, "auth": net.JoinHostPort(replicas[0], authPort)}, Mounts: map[string]string{"certs": certs.Dir},
	})
	must(t, err)
	cfg.WithoutComposeLabels()
	providers := cfg.Static["providers"].(map[string]any)
	providers["kubernetesCRD"] = map[string]any{"namespaces": []any{kubeNamespace}}
	entryPoints := cfg.Static["entryPoints"].(map[string]any)
	for name, ep := range k3sEntryPoints(t, root) {
		if name == "auth-lb" {
			entryPoints[name] = ep
		}
	}
	if got := dig(entryPoints, "auth-lb", "address"); got != authLBAddr {
		t.Fatalf("k3s/traefik-config.yaml's auth-lb is at %v, want %s as the Middleware asks", got, authLBAddr)
	}
	static, err := cfg.Write()
	must(t, err)
	traefik, err = procs.Start("traefik", traefikBin, []string{"--configFile=" + static}, []string{"KUBECONFIG=" + kube.Kubeconfig})
	must(t, err)
	addr := cfg.EntryPoints["websecure"]
	tr := &http.Transport{TLSClientConfig: certs.TLSConfig(), ForceAttemptHTTP2: true}
	defer tr.CloseIdleConnections()
	client := &http.Client{Transport: tr}
	if err := traefik.WaitHTTP(ctx, client, "https://"+addr+"/v2/", http.StatusUnauthorized); err != nil {
		t.Fatalf("Traefik did not route /v2 through registry-auth: %v", err)
	}

	opts := func(a *account, extra ...remote.Option) []remote.Option {
		auth := authn.Anonymous
		if a != nil {
			auth = &authn.Basic{Username: a.name, Password: a.password}
		}
		return append([]remote.Option{remote.WithAuth(auth), remote.WithTransport(tr), remote.WithContext(ctx)}, extra...)
	}
	img := randomOCIImage(t, 2, 64<<10)
	want, err := img.Digest()
	must(t, err)
	pushed := imageRef(t, addr, "team/app:v1")

	t.Run("push, pull and refusals, as through the compose stack", func(t *testing.T) {
		if err := remote.Write(pushed, img, opts(&pusher)...); err != nil {
			t.Fatalf("push by the push group: %v", err)
		}
		got, err := remote.Image(pushed, opts(&reader)...)
		if err != nil {
			t.Fatalf("pull by a reader: %v", err)
		}
		verifyImage(t, got, img, want)
		err = remote.Write(imageRef(t, addr, "team/app:by-reader"), randomOCIImage(t, 1, 1<<10), opts(&reader)...)
		wantRegistryError(t, err, http.StatusForbidden, transport.DeniedErrorCode)
		for _, a := range []*account{nil, {pusher.name, "wrong"}} {
			_, err := remote.Image(pushed, opts(a)...)
			wantRegistryError(t, err, http.StatusUnauthorized, transport.UnauthorizedErrorCode)
		}
	})

	t.Run("each replica answers sub-requests", func(t *testing.T) {
		// The auth-lb route balances per request: a few dozen pulls reach both replicas.
		for range 40 {
			if _, err := remote.Head(pushed, opts(&reader)...); err != nil {
				t.Fatal(err)
			}
		}
		for i := range replicas {
			log, err := os.ReadFile(replicaProcs[i].LogFile)
			must(t, err)
			if n := bytes.Count(log, []byte(`"msg":"decision"`)); n < 5 {
				t.Errorf("replica %d (%s) decided %d requests, want a share of them", i+1, replicas[i], n)
			} else {
				t.Logf("replica %d (%s): %d decisions", i+1, replicas[i], n)
			}
		}
	})

	t.Run("a Secret swap is in force at once", func(t *testing.T) {
		// carol added, bob removed: the Secret updated in the API server, read back, and
		// swapped into the volume as kubelet would (after its sync delay, which is kubelet's).
		next := map[string][]byte{"htpasswd": []byte(htpasswdFor(t, pusher, carol)), "groups": []byte(groupsFor(pusher, carol))}
		api.apply(secret("registry-auth-files", next))
		data := api.secretData("registry-auth-files")
		if !bytes.Equal(data["htpasswd"], next["htpasswd"]) {
			t.Fatal("the Secret read back is not the one applied")
		}
		swapped := time.Now()
		must(t, authVolume.write(data))
		err := harness.WaitFor(ctx, time.Minute, func() error {
			if _, err := remote.Head(pushed, opts(&carol)...); err != nil {
				return fmt.Errorf("carol: %w", err)
			}
			if _, err := remote.Head(pushed, opts(&reader)...); err == nil {
				return errors.New("bob is still let in")
			}
			return nil
		})
		if err != nil {
			t.Fatalf("the swap was not in force: %v", err)
		}
		took := time.Since(swapped)
		t.Logf("the swapped Secret was in force through Traefik %v after the swap (carol accepted, bob refused)", took.Round(time.Millisecond))
		_, err = remote.Image(pushed, opts(&reader)...)
		wantRegistryError(t, err, http.StatusUnauthorized, transport.UnauthorizedErrorCode)
		if err := remote.Write(imageRef(t, addr, "team/app:by-carol"), randomOCIImage(t, 1, 1<<10), opts(&carol)...); err != nil {
			t.Errorf("carol's push after the swap: %v", err)
		}
	})
}

// kubeAPI talks to the test's kube-apiserver as its administrator.
type kubeAPI struct {
	t   *testing.T
	k   *harness.KubeAPIServer
	ctx context.Context
}

// kubeResources are the resources the test writes, by kind: their plural and whether they
// live in a namespace (what a RESTMapper would find by discovery).
var kubeResources = map[string]struct {
	plural     string
	namespaced bool
}{
	"Namespace":                {"namespaces", false},
	"CustomResourceDefinition": {"customresourcedefinitions", false},
	"Secret":                   {"secrets", true},
	"Service":                  {"services", true},
	"PersistentVolumeClaim":    {"persistentvolumeclaims", true},
	"Deployment":               {"deployments", true},
	"PodDisruptionBudget":      {"poddisruptionbudgets", true},
	"NetworkPolicy":            {"networkpolicies", true},
	"EndpointSlice":            {"endpointslices", true},
	"Middleware":               {"middlewares", true},
	"ServersTransport":         {"serverstransports", true},
	"IngressRoute":             {"ingressroutes", true},
}

// path is the API path of o.
func (a kubeAPI) path(o kubeObject) string {
	a.t.Helper()
	r, ok := kubeResources[o.kind()]
	if !ok {
		a.t.Fatalf("kind %s: add it to kubeResources", o.kind())
	}
	version, _ := o["apiVersion"].(string)
	prefix := "/apis/" + version
	if !strings.Contains(version, "/") {
		prefix = "/api/" + version
	}
	if r.namespaced {
		prefix += "/namespaces/" + o.meta("namespace")
	}
	return prefix + "/" + r.plural + "/" + o.meta("name")
}

// apply applies o by server-side apply with strict field validation, as `kubectl apply
// --server-side --validate=strict` does, retrying while the API server does not serve its
// kind yet (404: a CRD becomes servable shortly after it is established); any other
// refusal fails the test.
func (a kubeAPI) apply(o kubeObject) {
	a.t.Helper()
	body, err := json.Marshal(map[string]any(o))
	must(a.t, err)
	path := a.path(o) + "?fieldManager=registry-auth-e2e&force=true&fieldValidation=Strict"
	var refused error
	err = harness.WaitFor(a.ctx, time.Minute, func() error {
		status, answer, err := a.k.Do(a.ctx, http.MethodPatch, path, "application/apply-patch+yaml", body)
		switch {
		case err != nil:
			return err
		case status == http.StatusOK || status == http.StatusCreated:
			return nil
		case status == http.StatusNotFound:
			return fmt.Errorf("%d\n%s", status, answer)
		}
		refused = fmt.Errorf("%d\n%s", status, answer)
		return nil // no retry: the refusal is the answer
	})
	if err == nil {
		err = refused
	}
	if err != nil {
		a.t.Fatalf("apply %s %s/%s: %v", o.kind(), o.meta("namespace"), o.meta("name"), err)
	}
}

// get reads the object at path.
func (a kubeAPI) get(path string) map[string]any {
	a.t.Helper()
	status, answer, err := a.k.Do(a.ctx, http.MethodGet, path, "", nil)
	must(a.t, err)
	var o map[string]any
	if err := json.Unmarshal(answer, &o); err != nil || status != http.StatusOK {
		a.t.Fatalf("GET %s: %d %v\n%s", path, status, err, answer)
	}
	return o
}

// waitEstablished waits until the CRD crd is Established.
func (a kubeAPI) waitEstablished(crd kubeObject) {
	a.t.Helper()
	err := harness.WaitFor(a.ctx, time.Minute, func() error {
		conditions, _ := dig(a.get(a.path(crd)), "status", "conditions").([]any)
		for _, c := range conditions {
			if dig(c, "type") == "Established" && dig(c, "status") == "True" {
				return nil
			}
		}
		return fmt.Errorf("conditions %v", conditions)
	})
	if err != nil {
		a.t.Fatalf("CRD %s not established: %v", crd.meta("name"), err)
	}
}

// secretData is the Secret name's files, as the API server returns them.
func (a kubeAPI) secretData(name string) map[string][]byte {
	a.t.Helper()
	data, _ := a.get("/api/v1/namespaces/" + kubeNamespace + "/secrets/" + name)["data"].(map[string]any)
	files := map[string][]byte{}
	for k, v := range data {
		b, err := base64.StdEncoding.DecodeString(v.(string))
		must(a.t, err)
		files[k] = b
	}
	return files
}

// secret is a generic Secret of the base's namespace with files, as `kubectl create secret
// generic NAME --from-file=...` makes it.
func secret(name string, files map[string][]byte) kubeObject {
	data := map[string]any{}
	for k, v := range files {
		data[k] = base64.StdEncoding.EncodeToString(v)
	}
	return kubeObject{"apiVersion": "v1", "kind": "Secret", "type": "Opaque",
		"metadata": map[string]any{"name": name, "namespace": kubeNamespace}, "data": data}
}

// endpointSlice points the Service service's port portName at port on addresses, as the
// EndpointSlice controller would for ready pods with those addresses.
func endpointSlice(service, portName, port string, addresses ...string) kubeObject {
	p, _ := strconv.Atoi(port)
	var endpoints []any
	for _, a := range addresses {
		endpoints = append(endpoints, map[string]any{"addresses": []any{a}, "conditions": map[string]any{"ready": true, "serving": true}})
	}
	return kubeObject{"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice", "addressType": "IPv4",
		"metadata": map[string]any{"name": service + "-e2e", "namespace": kubeNamespace,
			"labels": map[string]any{"kubernetes.io/service-name": service, "endpointslice.kubernetes.io/managed-by": "registry-auth-e2e"}},
		"ports":     []any{map[string]any{"name": portName, "port": p, "protocol": "TCP"}},
		"endpoints": endpoints}
}

// deploymentEnv is the registry-auth container's environment in the base's Deployment, with
// its mount paths replaced by local directories.
func deploymentEnv(t *testing.T, base []kubeObject, mounts map[string]string) []string {
	t.Helper()
	for _, o := range base {
		if o.kind() != "Deployment" || o.meta("name") != "registry-auth" {
			continue
		}
		vars, _ := dig(o, "spec", "template", "spec", "containers", 0, "env").([]any)
		var env []string
		for _, v := range vars {
			value, _ := dig(v, "value").(string)
			for from, to := range mounts {
				if strings.HasPrefix(value, from+"/") {
					value = to + strings.TrimPrefix(value, from)
				}
			}
			env = append(env, fmt.Sprintf("%s=%s", dig(v, "name"), value))
		}
		return env
	}
	t.Fatal("the base has no registry-auth Deployment")
	return nil
}

// yamlDocuments splits a multi-document YAML file into objects.
func yamlDocuments(t *testing.T, data []byte) []kubeObject {
	t.Helper()
	var objects []kubeObject
	dec := yaml.NewDecoder(bytes.NewReader(data))
	for {
		var o map[string]any
		if err := dec.Decode(&o); err == io.EOF {
			return objects
		} else if err != nil {
			t.Fatal(err)
		}
		if o != nil {
			objects = append(objects, o)
		}
	}
}

// podAddresses gives this machine's loopback interface the addresses addrs for the test
// (the API server refuses loopback addresses in an EndpointSlice, but not these): the kernel
// delivers traffic to them as to 127.0.0.1, so nothing leaves the machine. It removes them
// after the test. It needs CAP_NET_ADMIN (root, as in CI).
func podAddresses(t *testing.T, addrs ...string) {
	t.Helper()
	ipBin := harness.RequireTool(t, "ip", "iproute2")
	ip := func(args ...string) error {
		if out, err := exec.Command(ipBin, args...).CombinedOutput(); err != nil {
			return fmt.Errorf("ip %s: %v: %s (the Kubernetes test needs root, or CAP_NET_ADMIN, to add addresses to lo)", strings.Join(args, " "), err, out)
		}
		return nil
	}
	for _, a := range addrs {
		ip("addr", "del", a+"/32", "dev", "lo") // left by a run that was killed; an error means there was none
		must(t, ip("addr", "add", a+"/32", "dev", "lo"))
		t.Cleanup(func() {
			if err := ip("addr", "del", a+"/32", "dev", "lo"); err != nil {
				t.Error(err)
			}
		})
	}
}

// freePortOn is a TCP port free on every one of ips.
func freePortOn(t *testing.T, ips ...string) string {
	t.Helper()
	for range 20 {
		l, err := net.Listen("tcp", net.JoinHostPort(ips[0], "0"))
		must(t, err)
		_, port, _ := net.SplitHostPort(l.Addr().String())
		var held []net.Listener
		ok := true
		for _, ip := range ips[1:] {
			o, err := net.Listen("tcp", net.JoinHostPort(ip, port))
			if err != nil {
				ok = false
				break
			}
			held = append(held, o)
		}
		l.Close()
		for _, h := range held {
			h.Close()
		}
		if ok {
			return port
		}
	}
	t.Fatalf("no port free on all of %v", ips)
	return ""
}
