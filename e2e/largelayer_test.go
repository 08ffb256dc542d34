package e2e

import (
	"compress/gzip"
	"context"
	"io"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/stream"

	"github.com/registry-auth/registry-auth/e2e/harness"
)

const (
	// largeLayerSize is the uncompressed size of the big layer: 1 GiB.
	largeLayerSize = 1 << 30
	// flatRSS is how much the auth service's resident memory may grow over
	// its baseline while the big layer passes: it never sees a body, so
	// anything near the layer's size (or even a buffer of a few MiB per
	// request) shows up far above this.
	flatRSS = 4 << 20
)

// largePushDuration is how long each big push is paced to last: longer
// than Traefik's default entry point readTimeout (60 s), which would cut the
// upload if the stack's traefik.yml did not set readTimeout: 0.
const (
	largePushDuration         = 70 * time.Second
	traefikReadTimeoutDefault = 60 * time.Second
)

// TestLargeLayer pushes a 1 GiB layer through Traefik with
// go-containerregistry and with skopeo at the same time (step 6 of issue
// 4). Each upload is paced to last longer than Traefik's default read
// timeout, so it succeeds only thanks to the readTimeout setting of
// traefik/traefik.yml; meanwhile the auth service's resident memory must
// stay flat, since a forwardAuth server never sees a request body.
func TestLargeLayer(t *testing.T) {
	if testing.Short() {
		t.Skip("pushes 1 GiB twice over more than a minute; skipped with -short")
	}
	s := startStack(t)
	ctx, cancel := context.WithTimeout(context.Background(), 8*time.Minute)
	defer cancel()

	// skopeo's source: a 1 GiB layer pushed straight to the registry (plain
	// HTTP on loopback; this is the test's setup, not the chain under test).
	srcLayer, srcImage := largeImage(2, nil)
	direct, err := name.ParseReference(s.RegistryAddr+"/e2e/big-source:v1", name.Insecure)
	if err != nil {
		t.Fatal(err)
	}
	if err := remote.Write(direct, srcImage, remote.WithContext(ctx)); err != nil {
		t.Fatalf("seed the registry with a 1 GiB layer: %v", err)
	}
	srcDigest, _ := srcLayer.Digest()
	srcSize, _ := srcLayer.Size()

	// Warm up: the auth service has served pushes and pulls before the baseline.
	warm := imageRef(t, s.Addr, "e2e/warm:v1")
	if err := remote.Write(warm, randomOCIImage(t, 2, 1<<10), ggcrOptions(ctx, s, &pusher)...); err != nil {
		t.Fatal(err)
	}
	if _, err := remote.Image(warm, ggcrOptions(ctx, s, &reader)...); err != nil {
		t.Fatal(err)
	}
	rss := startRSSSampler(t, s.Auth())
	defer rss.stop()

	t.Run("push", func(t *testing.T) {
		t.Run("go-containerregistry", func(t *testing.T) {
			t.Parallel()
			// A streaming layer: the bytes are generated as they are sent;
			// the test never holds the layer in memory.
			layer, img := largeImage(1, newPacer(largeLayerSize, largePushDuration))
			start := time.Now()
			if err := remote.Write(imageRef(t, s.Addr, "e2e/big-ggcr:v1"), img, ggcrOptions(ctx, s, &pusher)...); err != nil {
				t.Fatalf("push of a 1 GiB layer: %v", err)
			}
			elapsed := time.Since(start)
			digest, err := layer.Digest()
			if err != nil {
				t.Fatal(err)
			}
			size, _ := layer.Size()
			logPush(t, "go-containerregistry", size, elapsed)
			checkBlob(t, s, "e2e/big-ggcr", digest, size)
		})
		t.Run("skopeo", func(t *testing.T) {
			t.Parallel()
			// skopeo copies the seeded layer from the registry, through a
			// proxy that paces its download, to another repository
			// through Traefik; the blob is not linked there, so all of it
			// is uploaded, as fast as the download delivers it.
			src := startPacingProxy(t, s.RegistryAddr, largePushDuration)
			k := newSkopeo(t, s)
			start := time.Now()
			out, err := k.run(ctx, "copy", "--src-tls-verify=false", "--dest-cert-dir", k.certs, "--dest-creds", creds(pusher),
				"docker://"+src+"/e2e/big-source:v1", "docker://"+s.Addr+"/e2e/big-skopeo:v1")
			if err != nil {
				t.Fatalf("skopeo copy of a 1 GiB layer: %v\n%s", err, out)
			}
			logPush(t, "skopeo", srcSize, time.Since(start))
			checkBlob(t, s, "e2e/big-skopeo", srcDigest, srcSize)
		})
	})

	base, peak, n := rss.stop()
	t.Logf("registry-auth resident memory: baseline %.1f MiB, peak %.1f MiB over %d samples (limit: baseline + %d MiB)",
		float64(base)/(1<<20), float64(peak)/(1<<20), n, flatRSS>>20)
	if peak-base > flatRSS {
		t.Errorf("registry-auth resident memory grew from %d to %d bytes during the 1 GiB pushes, want at most %d more", base, peak, flatRSS)
	}
}

// largeImage returns an image of one streaming 1 GiB layer generated from
// seed, its bytes delivered at the pacer's rate (nil: as fast as possible).
// Stored (not compressed) gzip keeps the generator, not deflate, the cost.
func largeImage(seed uint64, p *pacer) (*stream.Layer, v1.Image) {
	var r io.Reader = io.LimitReader(newGenerator(seed), largeLayerSize)
	if p != nil {
		r = p.reader(r)
	}
	layer := stream.NewLayer(io.NopCloser(r), stream.WithCompressionLevel(gzip.NoCompression))
	img, err := mutate.AppendLayers(empty.Image, layer)
	if err != nil {
		panic(err) // AppendLayers fails only on a broken base image
	}
	return layer, img
}

// logPush reports a push's rate and fails the test if it was quicker than
// Traefik's default read timeout: then it proved nothing about the setting.
func logPush(t testing.TB, client string, size int64, elapsed time.Duration) {
	t.Helper()
	t.Logf("%s pushed %d bytes in %v (%.1f MiB/s)", client, size, elapsed.Round(time.Millisecond), float64(size)/(1<<20)/elapsed.Seconds())
	if elapsed <= traefikReadTimeoutDefault {
		t.Errorf("%s: the upload took %v, not longer than Traefik's default readTimeout %v: the pacing failed", client, elapsed, traefikReadTimeoutDefault)
	}
}

// checkBlob asks, as the read-only user through Traefik, for the blob's
// size and digest as the registry stored it.
func checkBlob(t testing.TB, s *harness.Stack, repo string, digest v1.Hash, size int64) {
	t.Helper()
	status, h, _ := doRequest(t, s.HTTPClient(), http.MethodHead, s.URL()+"/v2/"+repo+"/blobs/"+digest.String(), &reader, nil, nil)
	if status != http.StatusOK || h.Get("Docker-Content-Digest") != digest.String() || h.Get("Content-Length") != strconv.FormatInt(size, 10) {
		t.Fatalf("HEAD blob %s in %s: got %d, digest %q, length %q; want 200, %s, %d",
			digest, repo, status, h.Get("Docker-Content-Digest"), h.Get("Content-Length"), digest, size)
	}
}

// pacer spreads the delivery of a number of bytes evenly over a duration,
// in steps of a tenth of a second, so that a transfer lasts as long as the
// test needs.
type pacer struct {
	perTick int
	tick    time.Duration
}

func newPacer(total int64, over time.Duration) *pacer {
	const tick = 100 * time.Millisecond
	return &pacer{perTick: int(total / int64(over/tick)), tick: tick}
}

// reader returns r paced. The ticker starts with the first Read.
func (p *pacer) reader(r io.Reader) io.Reader { return &pacedReader{r: r, p: p} }

type pacedReader struct {
	r      io.Reader
	p      *pacer
	ticker *time.Ticker
	budget int
}

func (pr *pacedReader) Read(b []byte) (int, error) {
	if pr.ticker == nil {
		pr.ticker = time.NewTicker(pr.p.tick)
		pr.budget = pr.p.perTick
	}
	if pr.budget == 0 {
		<-pr.ticker.C // pacing, not synchronisation: wait for the next step's allowance
		pr.budget = pr.p.perTick
	}
	n, err := pr.r.Read(b[:min(len(b), pr.budget)])
	pr.budget -= n
	if err != nil {
		pr.ticker.Stop()
	}
	return n, err
}

// startPacingProxy starts a plain-HTTP reverse proxy on loopback in front of
// the registry at addr that paces blob downloads bigger than 1 MiB to last
// about over, and returns its address.
func startPacingProxy(t testing.TB, addr string, over time.Duration) string {
	t.Helper()
	target := &url.URL{Scheme: "http", Host: addr}
	proxy := &httputil.ReverseProxy{
		Rewrite: func(r *httputil.ProxyRequest) { r.SetURL(target); r.Out.Host = r.In.Host },
		ModifyResponse: func(resp *http.Response) error {
			if resp.Request.Method == http.MethodGet && resp.ContentLength > 1<<20 {
				resp.Body = struct {
					io.Reader
					io.Closer
				}{newPacer(resp.ContentLength, over).reader(resp.Body), resp.Body}
			}
			return nil
		},
	}
	srv := httptest.NewServer(proxy)
	t.Cleanup(srv.Close)
	return srv.Listener.Addr().String()
}

// newGenerator returns an endless, seeded, incompressible byte stream.
func newGenerator(seed uint64) io.Reader {
	var key [32]byte
	key[0] = byte(seed)
	return rand.NewChaCha8(key)
}

// rssSampler records a process's resident memory every 50 ms.
type rssSampler struct {
	base    int64
	mu      sync.Mutex
	peak    int64
	samples int
	done    chan struct{}
	once    sync.Once
	wg      sync.WaitGroup
}

// startRSSSampler takes the baseline at once and then samples in the
// background until stop.
func startRSSSampler(t testing.TB, p *harness.Process) *rssSampler {
	t.Helper()
	m, err := p.Memory()
	if err != nil {
		t.Fatal(err)
	}
	base := m.RSS
	r := &rssSampler{base: base, peak: base, samples: 1, done: make(chan struct{})}
	r.wg.Add(1)
	go func() {
		defer r.wg.Done()
		tick := time.NewTicker(50 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-r.done:
				return
			case <-tick.C:
			}
			m, err := p.Memory()
			if err != nil {
				continue // the process is gone; the test reports that elsewhere
			}
			r.mu.Lock()
			r.peak = max(r.peak, m.RSS)
			r.samples++
			r.mu.Unlock()
		}
	}()
	return r
}

// stop ends sampling and returns the baseline, the peak and the number of
// samples. It may be called more than once.
func (r *rssSampler) stop() (base, peak int64, samples int) {
	r.once.Do(func() { close(r.done) })
	r.wg.Wait()
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.base, r.peak, r.samples
}
