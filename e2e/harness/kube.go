package harness

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// A real Kubernetes API server on loopback: kube-apiserver built from the
// Go module proxy, with Debian's etcd as its storage.

// KubernetesVersion is the release of kube-apiserver that BuildKubeAPIServer
// builds. Its staging modules (k8s.io/api and the others) are served as
// v0.<minor>.<patch>: stagingVersion.
const KubernetesVersion = "v1.36.3"

const (
	kubernetesModule = "k8s.io/kubernetes"
	stagingVersion   = "v0.36.3"
	// kubeAPIServerMain is upstream's main package of kube-apiserver, copied
	// verbatim into the wrapper module.
	kubeAPIServerMain = "cmd/kube-apiserver/apiserver.go"
	// kubeStartTimeout bounds how long kube-apiserver may take to answer ok at
	// /readyz: it creates its bootstrap objects in etcd first, which takes
	// seconds on an idle machine and longer on one that is busy building.
	kubeStartTimeout = 2 * time.Minute
)

// BuildKubeAPIServer returns the path of a kube-apiserver KubernetesVersion
// binary at <cache>/kube-apiserver-<version>/kube-apiserver, building it on
// first use (about half an hour on two cores; later calls return at once).
// k8s.io/kubernetes cannot be "go install"ed: its go.mod replaces every
// staging module (k8s.io/api, k8s.io/apiserver...) by a directory of its own
// tree. So the build happens in a small wrapper module that requires
// k8s.io/kubernetes and replaces each of those modules by its published
// release, with upstream's main package as its own. The version is stamped
// with the -X flags upstream's hack/lib/version.sh uses, so /version reports
// KubernetesVersion. Concurrent callers, in this process or others,
// serialise on a lock file.
func BuildKubeAPIServer(ctx context.Context) (string, error) {
	cache, err := CacheDir()
	if err != nil {
		return "", err
	}
	bin := filepath.Join(cache, "kube-apiserver-"+KubernetesVersion, "kube-apiserver")
	return bin, buildOnce(ctx, bin, func(tmp string) error {
		dir, err := os.MkdirTemp(filepath.Dir(tmp), "module-")
		if err != nil {
			return err
		}
		defer os.RemoveAll(dir)
		if err := writeKubeWrapperModule(ctx, dir); err != nil {
			return err
		}
		if err := goCommand(ctx, dir, nil, "mod", "tidy"); err != nil {
			return err
		}
		return goCommand(ctx, dir, nil, "build", "-trimpath", "-ldflags", kubeVersionLDFlags(), "-o", tmp, ".")
	})
}

// writeKubeWrapperModule writes go.mod and main.go of the wrapper module
// into dir: the go and godebug lines of k8s.io/kubernetes's go.mod, a
// requirement of k8s.io/kubernetes, a replacement by stagingVersion for each
// module its go.mod replaces by a directory of staging/, and main.go copied
// from upstream's kube-apiserver.
func writeKubeWrapperModule(ctx context.Context, dir string) error {
	var info struct{ Dir, GoMod, Error string }
	out, err := goOutput(ctx, dir, "mod", "download", "-json", kubernetesModule+"@"+KubernetesVersion)
	if jerr := json.Unmarshal(out, &info); jerr != nil || info.Dir == "" {
		return fmt.Errorf("go mod download %s@%s: %v %s %s", kubernetesModule, KubernetesVersion, err, info.Error, out)
	}
	// "go mod edit -json" parses any go.mod file, here the module cache's.
	out, err = goOutput(ctx, dir, "mod", "edit", "-json", filepath.Join(info.Dir, "go.mod"))
	if err != nil {
		return fmt.Errorf("read %s's go.mod: %w", kubernetesModule, err)
	}
	var upstream struct {
		Go      string
		GoDebug []struct{ Key, Value string }
		Replace []struct {
			Old, New struct{ Path, Version string }
		}
	}
	if err := json.Unmarshal(out, &upstream); err != nil {
		return fmt.Errorf("read %s's go.mod: %w", kubernetesModule, err)
	}
	var b strings.Builder
	fmt.Fprintf(&b, "module kubeapiserverbuild\n\ngo %s\n\n", upstream.Go)
	for _, d := range upstream.GoDebug {
		fmt.Fprintf(&b, "godebug %s=%s\n", d.Key, d.Value)
	}
	fmt.Fprintf(&b, "\nrequire %s %s\n\nreplace (\n", kubernetesModule, KubernetesVersion)
	staging := 0
	for _, r := range upstream.Replace {
		if strings.HasPrefix(r.New.Path, "./staging/src/") {
			fmt.Fprintf(&b, "\t%s => %s %s\n", r.Old.Path, r.Old.Path, stagingVersion)
			staging++
		}
	}
	b.WriteString(")\n")
	if staging == 0 {
		return fmt.Errorf("%s@%s's go.mod replaces no module by a staging directory: the wrapper module's recipe no longer fits", kubernetesModule, KubernetesVersion)
	}
	if err := os.WriteFile(filepath.Join(dir, "go.mod"), []byte(b.String()), 0o644); err != nil {
		return err
	}
	main, err := os.ReadFile(filepath.Join(info.Dir, kubeAPIServerMain))
	if err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(dir, "main.go"), main, 0o644)
}

// kubeVersionLDFlags sets the version variables that upstream's
// hack/lib/version.sh sets, in both packages it sets them in; without them
// kube-apiserver reports v0.0.0-master.
func kubeVersionLDFlags() string {
	major, rest, _ := strings.Cut(strings.TrimPrefix(KubernetesVersion, "v"), ".")
	minor, _, _ := strings.Cut(rest, ".")
	var flags []string
	for _, pkg := range []string{"k8s.io/component-base/version", "k8s.io/client-go/pkg/version"} {
		flags = append(flags,
			"-X "+pkg+".gitVersion="+KubernetesVersion,
			"-X "+pkg+".gitMajor="+major,
			"-X "+pkg+".gitMinor="+minor,
			"-X "+pkg+".gitTreeState=clean")
	}
	return strings.Join(flags, " ")
}

// KubeOptions says how to start a KubeAPIServer.
type KubeOptions struct {
	Bin  string // kube-apiserver (BuildKubeAPIServer)
	Etcd string // the etcd binary (Debian's etcd-server, found with RequireTool)
	Dir  string // receives the certificates, etcd's data, the kubeconfig; must exist
}

// KubeAPIServer is kube-apiserver started by StartKubeAPIServer, listening
// with TLS on a loopback port, with its etcd. Its administrator is a client
// certificate in the group system:masters, which every authorizer lets do
// anything; anonymous requests get what RBAC's bootstrap roles grant them
// (/version, /readyz and the like).
type KubeAPIServer struct {
	*Process          // kube-apiserver
	Etcd     *Process // its storage
	EtcdURL  string   // http://127.0.0.1:PORT, etcd's client URL
	URL      string   // https://127.0.0.1:PORT

	CAFile         string // signs the serving and the administrator's certificate
	ClientCertFile string // the administrator's certificate (CN e2e-admin, O system:masters)
	ClientKeyFile  string
	// Kubeconfig is a kubeconfig file for the administrator, certificates
	// inlined, for programs that take one.
	Kubeconfig string
	// Client presents the administrator's certificate and trusts the CA. It
	// is safe for concurrent use; it has no overall timeout: give requests a
	// context.
	Client *http.Client
	// ReadyAfter is the time from starting kube-apiserver to its first ok
	// at /readyz.
	ReadyAfter time.Duration

	tls *tls.Config
}

// TLSConfig returns a new client configuration like Client's: it trusts
// the CA and presents the administrator's certificate.
func (k *KubeAPIServer) TLSConfig() *tls.Config { return k.tls.Clone() }

// Do sends body (nil for none) with contentType ("" for none) to path as the administrator,
// asking for JSON, and returns the answer's status and body.
func (k *KubeAPIServer) Do(ctx context.Context, method, path, contentType string, body []byte) (int, []byte, error) {
	req, err := http.NewRequestWithContext(ctx, method, k.URL+path, bytes.NewReader(body))
	if err != nil {
		return 0, nil, err
	}
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	req.Header.Set("Accept", "application/json")
	resp, err := k.Client.Do(req)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	return resp.StatusCode, data, err
}

// Stop stops kube-apiserver and then etcd, and returns the errors of both
// (see Process.Stop); it does nothing for what was not started, and nothing
// on a nil *KubeAPIServer. Call it before Processes.StopAll: stopped at the
// same time as etcd, kube-apiserver spends 10 s failing to delete its
// identity lease before it exits, close to Stop's 15 s grace on a busy
// machine; with etcd still up it exits in about a second.
func (k *KubeAPIServer) Stop() error {
	if k == nil {
		return nil
	}
	var errs []error
	for _, p := range []*Process{k.Process, k.Etcd} {
		if p == nil {
			continue
		}
		if err := p.Stop(); err != nil {
			errs = append(errs, fmt.Errorf("stop %s: %w", p.Name, err))
		}
	}
	return errors.Join(errs...)
}

// StartKubeAPIServer starts etcd and kube-apiserver on free loopback ports
// with certificates of a new CA, and waits until etcd answers /health and
// kube-apiserver answers ok at /readyz. Authorization is RBAC (and the
// administrator's group system:masters passes before it); the Service range
// is 10.96.0.0/12, as kubeadm's default. Nothing else of a cluster runs: no
// controller manager, scheduler or kubelet, so objects are stored and served
// but nothing acts on them. If it started a process but a wait failed, it
// returns the KubeAPIServer with the error, for its logs. Stop it with
// KubeAPIServer.Stop before ps.StopAll (which stops everything at once).
func StartKubeAPIServer(ctx context.Context, ps *Processes, opts KubeOptions) (*KubeAPIServer, error) {
	k := &KubeAPIServer{}
	if err := k.writeCerts(opts.Dir); err != nil {
		return nil, err
	}
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.TLSClientConfig = k.TLSConfig()
	k.Client = &http.Client{Transport: tr}

	etcdClient, err := FreeAddr()
	if err != nil {
		return nil, err
	}
	etcdPeer, err := FreeAddr()
	if err != nil {
		return nil, err
	}
	k.EtcdURL = "http://" + etcdClient
	peerURL := "http://" + etcdPeer
	if k.Etcd, err = ps.Start("etcd", opts.Etcd, []string{
		"--name=e2e",
		"--data-dir=" + filepath.Join(opts.Dir, "etcd-data"),
		"--listen-client-urls=" + k.EtcdURL,
		"--advertise-client-urls=" + k.EtcdURL,
		"--listen-peer-urls=" + peerURL,
		"--initial-advertise-peer-urls=" + peerURL,
		"--initial-cluster=e2e=" + peerURL,
		"--initial-cluster-state=new",
		"--logger=zap",
	}, nil); err != nil {
		return nil, err
	}
	if err := k.Etcd.WaitHTTP(ctx, http.DefaultClient, k.EtcdURL+"/health", http.StatusOK); err != nil {
		return k, err
	}

	addr, err := FreeAddr()
	if err != nil {
		return k, err
	}
	_, port, _ := net.SplitHostPort(addr)
	k.URL = "https://" + addr
	if err := k.writeKubeconfig(filepath.Join(opts.Dir, "kubeconfig")); err != nil {
		return k, err
	}
	started := time.Now()
	if k.Process, err = ps.Start("kube-apiserver", opts.Bin, []string{
		"--bind-address=127.0.0.1",
		"--secure-port=" + port,
		// The address the API server puts in the default/kubernetes Service's
		// endpoints; without it, it looks for the host's default route.
		"--advertise-address=127.0.0.1",
		// Endpoints may not hold loopback addresses: the reconciler would
		// log a validation error every few seconds.
		"--endpoint-reconciler-type=none",
		"--etcd-servers=" + k.EtcdURL,
		"--cert-dir=" + opts.Dir, // unused with the files below, but its default is under /var/run
		"--tls-cert-file=" + filepath.Join(opts.Dir, "serving.crt"),
		"--tls-private-key-file=" + filepath.Join(opts.Dir, "serving.key"),
		"--client-ca-file=" + k.CAFile,
		"--authorization-mode=RBAC",
		"--service-account-issuer=https://kubernetes.default.svc.cluster.local",
		"--service-account-key-file=" + filepath.Join(opts.Dir, "sa.pub"),
		"--service-account-signing-key-file=" + filepath.Join(opts.Dir, "sa.key"),
		"--service-cluster-ip-range=10.96.0.0/12",
	}, nil); err != nil {
		return k, err
	}
	if err := k.waitReady(ctx); err != nil {
		return k, err
	}
	k.ReadyAfter = time.Since(started)
	return k, nil
}

// waitReady polls /readyz as the administrator (anonymous requests are
// refused until RBAC's bootstrap roles exist) until it answers 200 "ok". It
// gives up after kubeStartTimeout, when ctx ends or when kube-apiserver
// exits; the error then has the checks that were not yet ready and the
// tail of the log.
func (k *KubeAPIServer) waitReady(ctx context.Context) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	go func() {
		select {
		case <-k.Done():
			cancel()
		case <-ctx.Done():
		}
	}()
	err := WaitFor(ctx, kubeStartTimeout, func() error {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, k.URL+"/readyz?verbose", nil)
		if err != nil {
			return err
		}
		resp, err := k.Client.Do(req)
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		body, err := io.ReadAll(resp.Body)
		if err != nil {
			return err
		}
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("GET /readyz: got %s, want 200 OK:\n%s", resp.Status, notReady(body))
		}
		return nil
	})
	if err == nil {
		return nil
	}
	if ee := k.ExitErr(); ee != nil || k.Unexpected() {
		err = fmt.Errorf("%s exited (%v) before it was ready: %w", k.Name, ee, err)
	}
	return fmt.Errorf("%w\n--- %s log ---\n%s", err, k.Name, k.LogTail(8<<10))
}

// notReady keeps the failing lines of a verbose /readyz answer ("[-]...").
func notReady(body []byte) string {
	var failing []string
	for line := range strings.Lines(string(body)) {
		if strings.HasPrefix(line, "[-]") {
			failing = append(failing, strings.TrimSpace(line))
		}
	}
	if len(failing) == 0 {
		return strings.TrimSpace(string(body))
	}
	return strings.Join(failing, "\n")
}

// writeCerts makes a CA and, signed by it, kube-apiserver's serving
// certificate (127.0.0.1, ::1, localhost and the in-cluster names) and the
// administrator's client certificate; and the key pair that signs service
// account tokens. It writes them as PEM files in dir.
func (k *KubeAPIServer) writeCerts(dir string) error {
	ca, caDER, caKey, err := newCA("registry-auth e2e Kubernetes CA")
	if err != nil {
		return err
	}
	k.CAFile = filepath.Join(dir, "ca.crt")
	if err := writePEM(k.CAFile, "CERTIFICATE", caDER, 0o644); err != nil {
		return err
	}

	serverKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return err
	}
	names := []string{"localhost", "kubernetes", "kubernetes.default", "kubernetes.default.svc", "kubernetes.default.svc.cluster.local"}
	serverDER, err := leaf(2, "kube-apiserver", x509.ExtKeyUsageServerAuth, names, serverKey, ca, caKey)
	if err != nil {
		return err
	}
	if err := writeKeyPair(filepath.Join(dir, "serving"), serverDER, serverKey); err != nil {
		return err
	}

	// leaf sets no organization, and the API server takes a client
	// certificate's groups from it: the administrator needs a template of
	// its own.
	clientKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return err
	}
	now := time.Now()
	clientDER, err := x509.CreateCertificate(rand.Reader, &x509.Certificate{
		SerialNumber: big.NewInt(3),
		Subject:      pkix.Name{CommonName: "e2e-admin", Organization: []string{"system:masters"}},
		NotBefore:    now.Add(-time.Hour),
		NotAfter:     now.Add(24 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}, ca, &clientKey.PublicKey, caKey)
	if err != nil {
		return err
	}
	k.ClientCertFile, k.ClientKeyFile = filepath.Join(dir, "admin.crt"), filepath.Join(dir, "admin.key")
	if err := writeKeyPair(filepath.Join(dir, "admin"), clientDER, clientKey); err != nil {
		return err
	}
	client, err := tls.LoadX509KeyPair(k.ClientCertFile, k.ClientKeyFile)
	if err != nil {
		return err
	}
	pool := x509.NewCertPool()
	pool.AddCert(ca)
	k.tls = &tls.Config{RootCAs: pool, Certificates: []tls.Certificate{client}, MinVersion: tls.VersionTLS12}

	// Service account tokens are signed with ES256 by sa.key and checked
	// with sa.pub.
	saKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return err
	}
	saKeyDER, err := x509.MarshalPKCS8PrivateKey(saKey)
	if err != nil {
		return err
	}
	saPubDER, err := x509.MarshalPKIXPublicKey(&saKey.PublicKey)
	if err != nil {
		return err
	}
	if err := writePEM(filepath.Join(dir, "sa.key"), "PRIVATE KEY", saKeyDER, 0o600); err != nil {
		return err
	}
	return writePEM(filepath.Join(dir, "sa.pub"), "PUBLIC KEY", saPubDER, 0o644)
}

// writeKeyPair writes the certificate der to base.crt and key to base.key.
func writeKeyPair(base string, der []byte, key *ecdsa.PrivateKey) error {
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return err
	}
	if err := writePEM(base+".crt", "CERTIFICATE", der, 0o644); err != nil {
		return err
	}
	return writePEM(base+".key", "PRIVATE KEY", keyDER, 0o600)
}

func writePEM(path, kind string, der []byte, mode os.FileMode) error {
	if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: kind, Bytes: der}), mode); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	return nil
}

// writeKubeconfig writes a kubeconfig for the administrator at URL, with
// the CA and the client certificate inlined, so the file stands alone.
func (k *KubeAPIServer) writeKubeconfig(path string) error {
	var data [3]string
	for i, f := range []string{k.CAFile, k.ClientCertFile, k.ClientKeyFile} {
		b, err := os.ReadFile(f)
		if err != nil {
			return err
		}
		data[i] = base64.StdEncoding.EncodeToString(b)
	}
	config := fmt.Sprintf(`apiVersion: v1
kind: Config
clusters:
- name: e2e
  cluster:
    server: %s
    certificate-authority-data: %s
users:
- name: e2e-admin
  user:
    client-certificate-data: %s
    client-key-data: %s
contexts:
- name: e2e
  context:
    cluster: e2e
    user: e2e-admin
current-context: e2e
`, k.URL, data[0], data[1], data[2])
	k.Kubeconfig = path
	return os.WriteFile(path, []byte(config), 0o600)
}
