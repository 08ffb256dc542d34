package e2e

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/remote/transport"
	"github.com/google/go-containerregistry/pkg/v1/types"

	"github.com/registry-auth/registry-auth/e2e/harness"
)

// startStack starts the stack with the pusher and the reader as users.
func startStack(t *testing.T, authArgs ...string) *harness.Stack {
	t.Helper()
	return harness.StartStack(t, harness.StackOptions{
		HTPasswd: htpasswdFor(t, pusher, reader),
		Groups:   groupsFor(pusher),
		AuthArgs: authArgs,
	})
}

// randomOCIImage returns a random OCI image with the given number of layers of
// size bytes each. OCI media types let skopeo keep the digest when it copies
// the image to and from an OCI layout.
func randomOCIImage(t testing.TB, layers int, size int64) v1.Image {
	t.Helper()
	img, err := random.Image(size, int64(layers))
	if err != nil {
		t.Fatal(err)
	}
	// random.Image makes Docker media types; rebuild it as an OCI image.
	oci := mutate.MediaType(mutate.ConfigMediaType(empty.Image, types.OCIConfigJSON), types.OCIManifestSchema1)
	ls, err := img.Layers()
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range ls {
		if oci, err = mutate.Append(oci, mutate.Addendum{Layer: l, MediaType: types.OCILayer}); err != nil {
			t.Fatal(err)
		}
	}
	return oci
}

// ggcrOptions returns go-containerregistry options for the stack: its CA,
// the account's credentials (anonymous when a is nil), and ctx.
func ggcrOptions(ctx context.Context, s *harness.Stack, a *account, extra ...remote.Option) []remote.Option {
	auth := authn.Anonymous
	if a != nil {
		auth = &authn.Basic{Username: a.name, Password: a.password}
	}
	return append([]remote.Option{remote.WithAuth(auth), remote.WithTransport(s.Transport()), remote.WithContext(ctx)}, extra...)
}

// imageRef parses a reference on the given registry host.
func imageRef(t testing.TB, host, repoTag string) name.Reference {
	t.Helper()
	r, err := name.ParseReference(host + "/" + repoTag)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// wantRegistryError checks that err is a registry error with the given
// status and code (e.g. 403 DENIED) and that the message shows the code.
func wantRegistryError(t testing.TB, err error, status int, code transport.ErrorCode) {
	t.Helper()
	if err == nil {
		t.Fatalf("got no error, want %d %s", status, code)
	}
	var terr *transport.Error
	if !errors.As(err, &terr) {
		t.Fatalf("got error %v (%T), want a registry error %d %s", err, err, status, code)
	}
	if terr.StatusCode != status {
		t.Fatalf("got %v (status %d), want %d %s", err, terr.StatusCode, status, code)
	}
	if terr.Request != nil && terr.Request.Method == http.MethodHead {
		// A HEAD answer has no body, so the client can show only the status.
		if !strings.Contains(err.Error(), http.StatusText(status)) {
			t.Fatalf("error %q does not show %q", err, http.StatusText(status))
		}
		return
	}
	if len(terr.Errors) == 0 || terr.Errors[0].Code != code || !strings.Contains(err.Error(), string(code)) {
		t.Fatalf("got %v (diagnostics %+v), want %d %s", err, terr.Errors, status, code)
	}
}

// registryUnreached runs f and fails the test if the registry served any
// request meanwhile: nothing got past Traefik without a 2xx from
// registry-auth.
func registryUnreached(t testing.TB, s *harness.Stack, f func()) {
	t.Helper()
	registryCountUnchanged(t, s, "requests", harness.RequestCounts.Total, f)
}

// registryUnreachedIf runs f, through registryUnreached when refused says the
// request must not reach the registry, and as it is otherwise.
func registryUnreachedIf(t testing.TB, s *harness.Stack, refused bool, f func()) {
	t.Helper()
	if refused {
		registryUnreached(t, s, f)
		return
	}
	f()
}

// registryUnchanged runs f and fails the test if the registry served any
// POST, PUT, PATCH or DELETE meanwhile (reads by a user allowed to read may
// pass).
func registryUnchanged(t testing.TB, s *harness.Stack, f func()) {
	t.Helper()
	registryCountUnchanged(t, s, "write requests", harness.RequestCounts.Writes, f)
}

func registryCountUnchanged(t testing.TB, s *harness.Stack, what string, count func(harness.RequestCounts) int, f func()) {
	t.Helper()
	before, err := s.RegistryRequests()
	if err != nil {
		t.Fatal(err)
	}
	f()
	after, err := s.RegistryRequests()
	if err != nil {
		t.Fatal(err)
	}
	if n := count(after) - count(before); n != 0 {
		t.Errorf("the registry served %d %s, want none (before %v, after %v)", n, what, before, after)
	}
}

// doRequest sends a request through Traefik as a (nil: anonymous) with the
// extra headers and returns the status, the headers and up to 4 KiB of body.
func doRequest(t testing.TB, client *http.Client, method, url string, a *account, header http.Header, body io.Reader) (int, http.Header, string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, method, url, body)
	if err != nil {
		t.Fatal(err)
	}
	for k, vs := range header {
		req.Header[k] = vs
	}
	if a != nil {
		req.SetBasicAuth(a.name, a.password)
	}
	resp, err := client.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 4<<10))
	return resp.StatusCode, resp.Header, string(b)
}

// describe names an account in messages ("anonymous" for nil).
func describe(a *account) string {
	if a == nil {
		return "anonymous"
	}
	return fmt.Sprintf("user %s", a.name)
}

func stringsReader(s string) io.Reader { return strings.NewReader(s) }

// containsCode reports whether a registry error body carries the code.
func containsCode(body, code string) bool {
	return strings.Contains(body, `"code":"`+code+`"`)
}

// emptyIndex is an empty OCI image index, to start an OCI layout.
func emptyIndex() v1.ImageIndex { return empty.Index }

// imageRefErr parses a reference on the given registry host, for goroutines
// that cannot call t.Fatal.
func imageRefErr(host, repoTag string) (name.Reference, error) {
	return name.ParseReference(host + "/" + repoTag)
}

// authMetricLines fetches registry-auth's /metrics at baseURL (its client needs
// Traefik's client certificate) as lines of the exposition format.
func authMetricLines(client *http.Client, baseURL string) ([]string, error) {
	resp, err := client.Get(baseURL + "/metrics")
	if err != nil {
		return nil, fmt.Errorf("registry-auth metrics: %w", err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, fmt.Errorf("registry-auth metrics: %w", err)
	}
	return strings.Split(string(body), "\n"), nil
}

// metricSample is the value of sample (a name with its labels) in lines, and
// whether lines hold it.
func metricSample(lines []string, sample string) (float64, bool, error) {
	for _, line := range lines {
		if rest, ok := strings.CutPrefix(line, sample+" "); ok {
			v, err := strconv.ParseFloat(rest, 64)
			return v, err == nil, err
		}
	}
	return 0, false, nil
}

// must fails the test at once if err is not nil.
func must(t testing.TB, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}
