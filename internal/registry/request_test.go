package registry

import (
	"errors"
	"github.com/registry-auth/registry-auth/internal/registry/registrytest"
	"net/url"
	"strings"
	"testing"
)

// longUploadID makes the longest upload path allowed, 2048 bytes.
var longUploadID = strings.Repeat("u", maxPathLength-len("/v2/app/blobs/uploads/"))

// allMethods are the methods every route is tried with: the registry's, others HTTP
// defines, WebDAV, case variants and junk a client could put in X-Forwarded-Method.
var allMethods = []string{
	"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE",
	"OPTIONS", "TRACE", "CONNECT", "PROPFIND", "MKCOL", "COPY", "MOVE",
	"get", "Get", "put", "delete", "GET ", " GET", "GET\x00", "GET,PUT", "", "G\xc3\x89T",
}

// TestRouteMethodMatrix: every route of docs/registry-protocol.md ("Registry routes and
// actions") with every method. The table is written from that page, not from routeTable, so
// that the two are checked against each
// other.
func TestRouteMethodMatrix(t *testing.T) {
	t.Parallel()
	routes := []struct {
		uri       string
		kind      Route
		repo, ref string
		methods   string // the methods docs/registry-protocol.md lists for the route
	}{
		{"/v2/", RouteBase, "", "", "GET HEAD"},
		{"/v2", RouteBase, "", "", "GET HEAD"},
		{"/v2/team/app/tags/list", RouteTags, "team/app", "", "GET"},
		{"/v2/team/app/tags/list?n=10&last=v1", RouteTags, "team/app", "", "GET"},
		{"/v2/team/app/manifests/v1.2-rc_3", RouteManifest, "team/app", "v1.2-rc_3", "GET HEAD PUT DELETE"},
		{"/v2/team/app/manifests/" + registrytest.Digest, RouteManifest, "team/app", registrytest.Digest, "GET HEAD PUT DELETE"},
		{"/v2/app/blobs/" + registrytest.Digest, RouteBlob, "app", registrytest.Digest, "GET HEAD DELETE"},
		{"/v2/app/blobs/uploads/", RouteUploadStart, "app", "", "POST"},
		{"/v2/app/blobs/uploads/?digest=" + registrytest.Digest, RouteUploadStart, "app", "", "POST"},
		{"/v2/app/blobs/uploads/8f3a-11ef_b.c=", RouteUpload, "app", "8f3a-11ef_b.c=", "GET HEAD PATCH PUT DELETE"},
		{"/v2/app/blobs/uploads/8f3a?digest=" + registrytest.Digest, RouteUpload, "app", "8f3a", "GET HEAD PATCH PUT DELETE"},
		{"/v2/app/blobs/uploads/" + longUploadID, RouteUpload, "app", longUploadID, "GET HEAD PATCH PUT DELETE"},
		{"/v2/_catalog", RouteCatalog, "", "", "GET"},
		{"/v2/_catalog?n=100", RouteCatalog, "", "", "GET"},
		{"/v2/app/referrers/" + registrytest.Digest, RouteReferrers, "app", registrytest.Digest, "GET"},
		// Malformed digests the registry routes (go-digest's grammar) and answers with 400
		// DIGEST_INVALID: registry-auth decides them as the route, so the registry can say so.
		{"/v2/app/blobs/sha256:abc", RouteBlob, "app", "sha256:abc", "GET HEAD DELETE"},
		{"/v2/team/app/manifests/sha256:baddigeststring", RouteManifest, "team/app", "sha256:baddigeststring", "GET HEAD PUT DELETE"},
		// Names may hold the words of the routes; distribution's match order decides.
		{"/v2/manifests/manifests/latest", RouteManifest, "manifests", "latest", "GET HEAD PUT DELETE"},
		{"/v2/a/blobs/uploads/blobs/uploads/", RouteUploadStart, "a/blobs/uploads", "", "POST"},
		{"/v2/a/tags/list/tags/list", RouteTags, "a/tags/list", "", "GET"},
		{"/v2/a/manifests/x/manifests/latest", RouteManifest, "a/manifests/x", "latest", "GET HEAD PUT DELETE"},
		// Percent-encoded letters are the letters, as the registry decodes them.
		{"/v2/%61pp/manifests/%6Catest", RouteManifest, "app", "latest", "GET HEAD PUT DELETE"},
	}
	// What each request needs, from distribution's registry/handlers/app.go: reads pull,
	// writes pull and push, deletes delete, but cancelling an upload is push.
	wantNeeds := func(kind Route, method string) Actions {
		switch {
		case kind == RouteBase || kind == RouteCatalog:
			return 0
		case method == "GET" || method == "HEAD":
			return Pull
		case method == "DELETE" && kind == RouteUpload:
			return Push
		case method == "DELETE":
			return Delete
		}
		return Pull | Push
	}
	for _, rt := range routes {
		for _, method := range allMethods {
			req, err := ParseRequest(method, rt.uri)
			allowed := method != "" && !strings.ContainsAny(method, " ") && strings.Contains(" "+rt.methods+" ", " "+method+" ")
			if !allowed {
				if err == nil {
					t.Errorf("%q %s: got %s on %s, want an error", method, rt.uri, req.Needs, req.Route)
				}
				continue
			}
			if err != nil {
				t.Errorf("%s %s: got error %v, want route %s", method, rt.uri, err, rt.kind)
				continue
			}
			if want := wantNeeds(rt.kind, method); req.Route != rt.kind || req.Repository != rt.repo || req.Reference != rt.ref || req.Needs != want {
				t.Errorf("%s %s: got route %s repo %q ref %q needs %s, want %s %q %q %s",
					method, rt.uri, req.Route, req.Repository, req.Reference, req.Needs, rt.kind, rt.repo, rt.ref, want)
			}
		}
	}
}

// TestHostileURIsNeverParse: none of hostileURIs is a route, for any method, so /auth can
// only deny it.
func TestHostileURIsNeverParse(t *testing.T) {
	t.Parallel()
	for _, tt := range registrytest.Hostile() {
		for _, method := range allMethods {
			req, err := ParseRequest(method, tt.URI)
			if err == nil {
				t.Errorf("%s: %q %q parsed as %s %s on %q, want an error", tt.Name, method, tt.URI, req.Needs, req.Route, req.Repository)
				continue
			}
			if !errors.Is(err, ErrUnknownRoute) && !errors.Is(err, ErrUnsupportedMethod) && !errors.Is(err, ErrRepeatedMountParameter) {
				t.Errorf("%s: got error %v, want unknown_route, unsupported_method or repeated_mount_parameter", tt.Name, err)
			}
		}
		if _, err := ParseRequest("POST", tt.URI); !errors.Is(err, ErrUnknownRoute) && !errors.Is(err, ErrRepeatedMountParameter) {
			// POST is the one method an upload start allows, so this is the path's own fault.
			t.Errorf("%s: POST got %v, want unknown_route or repeated_mount_parameter", tt.Name, err)
		}
	}
}

// TestMountSource: a valid cross-repository mount names its source; a plain upload none.
func TestMountSource(t *testing.T) {
	t.Parallel()
	for uri, want := range map[string]string{
		"/v2/app/blobs/uploads/":                                                     "",
		"/v2/app/blobs/uploads/?digest=" + registrytest.Digest:                       "",
		"/v2/app/blobs/uploads/?mount=" + registrytest.Digest + "&from=team/base":    "team/base",
		"/v2/app/blobs/uploads/?mount=" + registrytest.Digest + "&from=team%2Fbase":  "team/base", // a query is decoded, as the registry does
		"/v2/app/blobs/uploads/?from=team/base&mount=" + registrytest.Digest + "&x=": "team/base",
	} {
		req, err := ParseRequest("POST", uri)
		if err != nil || req.MountFrom != want || req.Needs != Pull|Push {
			t.Errorf("POST %s: got from %q needs %s error %v, want from %q pull,push", uri, req.MountFrom, req.Needs, err, want)
		}
		list, n := req.Accesses()
		wantN := 1
		if want != "" {
			wantN = 2
		}
		if n != wantN || list[0] != (Access{"app", Pull | Push}) || (n == 2 && list[1] != Access{want, Pull}) {
			t.Errorf("POST %s: got Accesses %v, want app pull,push and, for a mount, %q pull", uri, list[:n], want)
		}
	}
}

// FuzzParseRequest checks what must hold for any method and URI: no panic; an
// error is one of the known reasons; a parsed request needs what its method does (a path
// never turns a write into a read), its route allows the method, its repository follows the name grammar,
// and its decoded path parses to the same request again.
func FuzzParseRequest(f *testing.F) {
	for _, m := range []string{"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "get", ""} {
		f.Add(m, "/v2/team/app/manifests/latest")
		f.Add(m, "/v2/app/blobs/uploads/?mount="+registrytest.Digest+"&from=team/base")
	}
	for _, tt := range registrytest.Hostile() {
		f.Add("PUT", tt.URI)
	}
	f.Fuzz(func(t *testing.T, method, uri string) {
		req, err := ParseRequest(method, uri)
		if err != nil {
			if !errors.Is(err, ErrUnknownRoute) && !errors.Is(err, ErrUnsupportedMethod) && !errors.Is(err, ErrRepeatedMountParameter) {
				t.Fatalf("%q %q: unexpected error %v", method, uri, err)
			}
			return
		}
		// A path never makes a write need less than a write: a method that changes something
		// needs push or delete; a read needs pull, or nothing on /v2/ and the catalog.
		reads := method == "GET" || method == "HEAD"
		noRepository := req.Route == RouteBase || req.Route == RouteCatalog
		switch {
		case !isRegistryMethod(method):
			t.Fatalf("%q %q: parsed an unknown method", method, uri)
		case reads && !(req.Needs == Pull || noRepository && req.Needs == 0):
			t.Fatalf("%q %q: a read needs %s", method, uri, req.Needs)
		case !reads && req.Needs&(Push|Delete) == 0:
			t.Fatalf("%q %q: a write needs only %s", method, uri, req.Needs)
		}
		if req.Repository != "" && (len(req.Repository) > MaxNameLength || !nameRE.MatchString(req.Repository)) {
			t.Fatalf("%q %q: got repository %q outside the name grammar", method, uri, req.Repository)
		}
		if req.MountFrom != "" && !nameRE.MatchString(req.MountFrom) {
			t.Fatalf("%q %q: got mount source %q outside the name grammar", method, uri, req.MountFrom)
		}
		path, err := decodeRequestPath(uri)
		if err != nil {
			t.Fatalf("%q %q: parsed, but its path does not decode: %v", method, uri, err)
		}
		for _, seg := range strings.Split(path, "/")[1:] {
			if seg == "." || seg == ".." {
				t.Fatalf("%q %q: decoded path %q has a dot segment", method, uri, path)
			}
		}
		_, query, _ := strings.Cut(uri, "?")
		again, err := ParseRequest(method, (&url.URL{Path: path}).EscapedPath()+"?"+query)
		if err != nil || again != req {
			t.Fatalf("%q %q: decoded path %q parses to %+v, %v; want %+v", method, uri, path, again, err, req)
		}
	})
}

// TestLongQueryRefused: the query is parsed before authentication, so its length is bounded.
func TestLongQueryRefused(t *testing.T) {
	t.Parallel()
	uri := "/v2/app/blobs/uploads/?mount=sha256:" + strings.Repeat("a", 64) + "&from=app" + strings.Repeat("&x=1", 2000)
	if _, err := ParseRequest("POST", uri); err != ErrUnknownRoute {
		t.Errorf("got %v for a %d-byte URI, want ErrUnknownRoute", err, len(uri))
	}
	if _, err := ParseRequest("POST", uri[:200]); err != nil {
		t.Errorf("got %v for the same URI cut to 200 bytes, want it parsed", err)
	}
}

// TestHostileTableAtTheLimit: the shared table's over-long path is one byte past the limit.
func TestHostileTableAtTheLimit(t *testing.T) {
	t.Parallel()
	for _, tt := range registrytest.HostileURIs {
		if tt.Name == "path of 2049 bytes" && len(tt.URI) != maxPathLength+1 {
			t.Errorf("%s: got %d bytes, want maxPathLength+1 = %d", tt.Name, len(tt.URI), maxPathLength+1)
		}
	}
}

// BenchmarkParseRequest is the price of mapping a forwarded method and URI to a route,
// a repository and an action, for the paths a pull and a push send most.
func BenchmarkParseRequest(b *testing.B) {
	for _, tt := range []struct{ name, method, uri string }{
		{"manifest", "GET", "/v2/team/app/manifests/latest"},
		{"blob", "GET", "/v2/team/app/blobs/" + registrytest.Digest},
		{"upload", "PATCH", "/v2/library/some-long-name/sub/blobs/uploads/0b9b4c8e-2f1a-4c56-9d3e-7f0a1b2c3d4e?_state=abcdefghijkl"},
	} {
		b.Run(tt.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if _, err := ParseRequest(tt.method, tt.uri); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
