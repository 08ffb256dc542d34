package main

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"encoding/binary"
	"fmt"
	"io"
	"net/http"
	"sync"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/partial"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// Images the harness puts into the registry before any setup runs.
const (
	manifestRepo = "bench/app"    // small image: the manifest workloads
	manifestTag  = "latest"       //
	pullRepo     = "bench/layers" // the 20-layer image of the pull workload
	pullTag      = "20"           //
	pushRepo     = "bench/big"    // the repository the big layer is pushed to
	pullLayers   = 20             //
	pullLayerLen = 1 << 20        // bytes of random content per layer
	pullJobs     = 3              // parallel blob downloads, as dockerd's max-concurrent-downloads default
)

// manifestPath is the request of the manifest workloads.
var manifestPath = fmt.Sprintf("/v2/%s/manifests/%s", manifestRepo, manifestTag)

// seedRegistry pushes the images the workloads read straight to the
// registry (plain HTTP on loopback, no proxy, no auth).
func seedRegistry(ctx context.Context, registryAddr string) error {
	if err := loopbackOnly("http://" + registryAddr); err != nil {
		return err
	}
	small, err := random.Image(1024, 1)
	if err != nil {
		return err
	}
	big, err := random.Image(pullLayerLen, pullLayers)
	if err != nil {
		return err
	}
	opts := []remote.Option{remote.WithContext(ctx), remote.WithTransport(newTransport(nil, 4))}
	for _, img := range []struct {
		ref string
		img v1.Image
	}{
		{fmt.Sprintf("%s/%s:%s", registryAddr, manifestRepo, manifestTag), small},
		{fmt.Sprintf("%s/%s:%s", registryAddr, pullRepo, pullTag), big},
	} {
		ref, err := name.ParseReference(img.ref, name.Insecure)
		if err != nil {
			return err
		}
		if err := remote.Write(ref, img.img, opts...); err != nil {
			return fmt.Errorf("seed %s: %w", img.ref, err)
		}
	}
	return nil
}

// httpsOnly makes go-containerregistry speak HTTPS to the proxies:
// name.Registry.Scheme() picks plain HTTP for every loopback address, which
// the proxies' TLS ports would refuse.
type httpsOnly struct{ next http.RoundTripper }

func (t httpsOnly) RoundTrip(r *http.Request) (*http.Response, error) {
	if r.URL.Scheme == "http" {
		r = r.Clone(r.Context())
		r.URL.Scheme = "https"
	}
	return t.next.RoundTrip(r)
}

// registryClient talks to the registry through a proxy, as a registry client
// would: a fresh transport per operation (new connections and a new
// challenge, as a new "docker pull" has).
type registryClient struct {
	proxyAddr string // 127.0.0.1:PORT of the TLS proxy
	roots     *x509.CertPool
}

func (c registryClient) options(ctx context.Context, cred credential) []remote.Option {
	return []remote.Option{
		remote.WithContext(ctx),
		remote.WithAuth(&authn.Basic{Username: cred.User, Password: cred.Password}),
		remote.WithTransport(httpsOnly{newTransport(c.roots, pullJobs+1)}),
		// Count a failure as one: a retried request would hide it.
		remote.WithRetryBackoff(remote.Backoff{Steps: 1}),
	}
}

// pull fetches the 20-layer image's manifest, config and every layer
// (pullJobs at a time), checks each blob's digest, and returns the wall time.
func (c registryClient) pull(ctx context.Context, cred credential) (time.Duration, error) {
	start := time.Now()
	ref, err := name.ParseReference(fmt.Sprintf("%s/%s:%s", c.proxyAddr, pullRepo, pullTag))
	if err != nil {
		return 0, err
	}
	img, err := remote.Image(ref, c.options(ctx, cred)...)
	if err != nil {
		return 0, err
	}
	if _, err := img.ConfigFile(); err != nil {
		return 0, err
	}
	layers, err := img.Layers()
	if err != nil {
		return 0, err
	}
	if len(layers) != pullLayers {
		return 0, fmt.Errorf("pulled image has %d layers, want %d", len(layers), pullLayers)
	}
	work := make(chan v1.Layer)
	errs := make(chan error, len(layers))
	var wg sync.WaitGroup
	for range pullJobs {
		wg.Go(func() {
			for l := range work {
				errs <- readLayer(l)
			}
		})
	}
	for _, l := range layers {
		work <- l
	}
	close(work)
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			return 0, err
		}
	}
	return time.Since(start), nil
}

// readLayer downloads one layer; go-containerregistry's reader fails at EOF
// when the content does not match the digest.
func readLayer(l v1.Layer) error {
	rc, err := l.Compressed()
	if err != nil {
		return err
	}
	defer rc.Close()
	_, err = io.Copy(io.Discard, rc)
	return err
}

// pushLayer uploads a layer of size bytes (unique to seed, so the registry
// never already has it) as the given user, and returns the wall time of the
// upload (HEAD, POST, one PATCH with the whole blob, PUT), not counting the
// digest computed beforehand.
func (c registryClient) pushLayer(ctx context.Context, cred credential, size int64, seed uint64) (time.Duration, v1.Hash, error) {
	layer, err := newBigLayer(size, seed)
	if err != nil {
		return 0, v1.Hash{}, err
	}
	repo, err := name.NewRepository(fmt.Sprintf("%s/%s", c.proxyAddr, pushRepo))
	if err != nil {
		return 0, v1.Hash{}, err
	}
	start := time.Now()
	if err := remote.WriteLayer(repo, layer, c.options(ctx, cred)...); err != nil {
		return 0, v1.Hash{}, err
	}
	d, _ := layer.Digest()
	return time.Since(start), d, nil
}

// bigLayer is a blob of size bytes made of one random MiB repeated, each
// copy stamped with the seed and its index, so every byte sequence is
// unique without generating a GiB of randomness. Its digest is computed
// once up front, so the upload streams it with a known length, like docker
// does.
type bigLayer struct {
	block  []byte
	size   int64
	seed   uint64
	digest v1.Hash
}

const bigBlock = 1 << 20

func newBigLayer(size int64, seed uint64) (v1.Layer, error) {
	l := &bigLayer{block: make([]byte, bigBlock), size: size, seed: seed}
	if _, err := rand.Read(l.block); err != nil {
		return nil, err
	}
	h := sha256.New()
	if _, err := io.Copy(h, l.reader()); err != nil {
		return nil, err
	}
	l.digest = v1.Hash{Algorithm: "sha256", Hex: fmt.Sprintf("%x", h.Sum(nil))}
	return partial.CompressedToLayer(l)
}

func (l *bigLayer) reader() io.ReadCloser {
	return &bigReader{l: l}
}

func (l *bigLayer) Digest() (v1.Hash, error)            { return l.digest, nil }
func (l *bigLayer) Compressed() (io.ReadCloser, error)  { return l.reader(), nil }
func (l *bigLayer) Size() (int64, error)                { return l.size, nil }
func (l *bigLayer) MediaType() (types.MediaType, error) { return types.OCILayer, nil }

// bigReader streams a bigLayer's content.
type bigReader struct {
	l   *bigLayer
	off int64
	buf [bigBlock]byte
	n   int // valid bytes in buf from bufStart
	pos int // read position in buf
}

func (r *bigReader) Read(p []byte) (int, error) {
	if r.off >= r.l.size {
		return 0, io.EOF
	}
	if r.pos == r.n {
		// Next block: the random MiB stamped with seed and block index.
		idx := uint64(r.off / bigBlock)
		copy(r.buf[:], r.l.block)
		binary.LittleEndian.PutUint64(r.buf[0:], r.l.seed)
		binary.LittleEndian.PutUint64(r.buf[8:], idx)
		r.n = int(min(int64(bigBlock), r.l.size-r.off))
		r.pos = 0
	}
	n := copy(p, r.buf[r.pos:r.n])
	r.pos += n
	r.off += int64(n)
	return n, nil
}

func (r *bigReader) Close() error { return nil }
