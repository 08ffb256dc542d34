package main

import (
	"errors"
	"net/url"
	"strings"
	"testing"
)

// testDigest is a well-formed sha256 digest.
var testDigest = "sha256:" + strings.Repeat("0123456789abcdef", 4)

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
		kind      routeKind
		repo, ref string
		methods   string // the methods docs/registry-protocol.md lists for the route
	}{
		{"/v2/", routeBase, "", "", "GET HEAD"},
		{"/v2", routeBase, "", "", "GET HEAD"},
		{"/v2/team/app/tags/list", routeTags, "team/app", "", "GET"},
		{"/v2/team/app/tags/list?n=10&last=v1", routeTags, "team/app", "", "GET"},
		{"/v2/team/app/manifests/v1.2-rc_3", routeManifest, "team/app", "v1.2-rc_3", "GET HEAD PUT DELETE"},
		{"/v2/team/app/manifests/" + testDigest, routeManifest, "team/app", testDigest, "GET HEAD PUT DELETE"},
		{"/v2/app/blobs/" + testDigest, routeBlob, "app", testDigest, "GET HEAD DELETE"},
		{"/v2/app/blobs/uploads/", routeUploadStart, "app", "", "POST"},
		{"/v2/app/blobs/uploads/?digest=" + testDigest, routeUploadStart, "app", "", "POST"},
		{"/v2/app/blobs/uploads/8f3a-11ef_b.c=", routeUpload, "app", "8f3a-11ef_b.c=", "GET HEAD PATCH PUT DELETE"},
		{"/v2/app/blobs/uploads/8f3a?digest=" + testDigest, routeUpload, "app", "8f3a", "GET HEAD PATCH PUT DELETE"},
		{"/v2/app/blobs/uploads/" + longUploadID, routeUpload, "app", longUploadID, "GET HEAD PATCH PUT DELETE"},
		{"/v2/_catalog", routeCatalog, "", "", "GET"},
		{"/v2/_catalog?n=100", routeCatalog, "", "", "GET"},
		{"/v2/app/referrers/" + testDigest, routeReferrers, "app", testDigest, "GET"},
		// Malformed digests the registry routes (go-digest's grammar) and answers with 400
		// DIGEST_INVALID: registry-auth decides them as the route, so the registry can say so.
		{"/v2/app/blobs/sha256:abc", routeBlob, "app", "sha256:abc", "GET HEAD DELETE"},
		{"/v2/team/app/manifests/sha256:baddigeststring", routeManifest, "team/app", "sha256:baddigeststring", "GET HEAD PUT DELETE"},
		// Names may hold the words of the routes; distribution's match order decides.
		{"/v2/manifests/manifests/latest", routeManifest, "manifests", "latest", "GET HEAD PUT DELETE"},
		{"/v2/a/blobs/uploads/blobs/uploads/", routeUploadStart, "a/blobs/uploads", "", "POST"},
		{"/v2/a/tags/list/tags/list", routeTags, "a/tags/list", "", "GET"},
		{"/v2/a/manifests/x/manifests/latest", routeManifest, "a/manifests/x", "latest", "GET HEAD PUT DELETE"},
		// Percent-encoded letters are the letters, as the registry decodes them.
		{"/v2/%61pp/manifests/%6Catest", routeManifest, "app", "latest", "GET HEAD PUT DELETE"},
	}
	// What each request needs, from distribution's registry/handlers/app.go: reads pull,
	// writes pull and push, deletes delete, but cancelling an upload is push.
	wantNeeds := func(kind routeKind, method string) actionSet {
		switch {
		case kind == routeBase || kind == routeCatalog:
			return 0
		case method == "GET" || method == "HEAD":
			return actionPull
		case method == "DELETE" && kind == routeUpload:
			return actionPush
		case method == "DELETE":
			return actionDelete
		}
		return actionPull | actionPush
	}
	for _, rt := range routes {
		for _, method := range allMethods {
			req, err := parseRegistryRequest(method, rt.uri)
			allowed := method != "" && !strings.ContainsAny(method, " ") && strings.Contains(" "+rt.methods+" ", " "+method+" ")
			if !allowed {
				if err == nil {
					t.Errorf("%q %s: got %s on %s, want an error", method, rt.uri, req.needs, req.route)
				}
				continue
			}
			if err != nil {
				t.Errorf("%s %s: got error %v, want route %s", method, rt.uri, err, rt.kind)
				continue
			}
			if want := wantNeeds(rt.kind, method); req.route != rt.kind || req.repository != rt.repo || req.reference != rt.ref || req.needs != want {
				t.Errorf("%s %s: got route %s repo %q ref %q needs %s, want %s %q %q %s",
					method, rt.uri, req.route, req.repository, req.reference, req.needs, rt.kind, rt.repo, rt.ref, want)
			}
		}
	}
}

// hostileURIs are X-Forwarded-Uri values that must never parse as a registry route, whatever
// the method: each one tries to make us and the registry see different paths, or to reach
// something that is not the registry API.
var hostileURIs = []struct{ name, uri string }{
	{"dot-dot out of /v2", "/v2/../metrics"},
	{"dot-dot back into /v2", "/v2/../v2/app/manifests/latest"},
	{"dot-dot between names", "/v2/app/../other/manifests/latest"},
	{"dot-dot after a route", "/v2/app/manifests/latest/../../../_catalog"},
	{"dot segment", "/v2/app/./manifests/latest"},
	// An upload id may hold dots, so only the dot-segment check refuses these.
	{"dot-dot as the upload id", "/v2/app/blobs/uploads/.."},
	{"dot as the upload id", "/v2/app/blobs/uploads/."},
	{"encoded dot-dot as the upload id", "/v2/app/blobs/uploads/%2E%2e"},
	{"encoded dot-dot", "/v2/app/%2e%2e/other/manifests/latest"},
	{"encoded dot-dot upper case", "/v2/app/%2E%2E/other/manifests/latest"},
	{"half encoded dot-dot", "/v2/app/.%2e/other/manifests/latest"},
	{"encoded dot", "/v2/%2e/app/manifests/latest"},
	{"double slash in name", "/v2/team//app/manifests/latest"},
	{"double slash after v2", "/v2//app/manifests/latest"},
	{"double slash before v2", "//v2/app/manifests/latest"},
	{"double slash before route word", "/v2/app//manifests/latest"},
	{"encoded slash", "/v2/team%2Fapp/manifests/latest"},
	{"encoded slash lower case", "/v2/team%2fapp/manifests/latest"},
	{"double-encoded slash", "/v2/team%252Fapp/manifests/latest"},
	{"double-encoded dot-dot", "/v2/app/%252e%252e/other/manifests/latest"},
	{"backslash", `/v2/team\app/manifests/latest`},
	{"backslash dot-dot", `/v2/app\..\other/manifests/latest`},
	{"encoded backslash", "/v2/team%5Capp/manifests/latest"},
	{"encoded NUL in name", "/v2/app%00/manifests/latest"},
	{"encoded NUL after tag", "/v2/app/manifests/latest%00"},
	{"raw NUL", "/v2/app/manifests/latest\x00"},
	{"raw space", "/v2/app/manifests/lat est"},
	{"encoded space", "/v2/app/manifests/lat%20est"},
	{"raw tab", "/v2/app/manifests/lat\test"},
	{"CR LF", "/v2/app/manifests/latest\r\nX-Forwarded-Method: GET"},
	{"truncated escape", "/v2/app/manifests/latest%"},
	{"invalid escape", "/v2/app/manifests/lat%zzest"},
	{"encoded question mark", "/v2/app/manifests/latest%3Fx"},
	{"encoded hash", "/v2/app/manifests/latest%23x"},
	{"fragment", "/v2/app/manifests/latest#x"},
	{"path parameter", "/v2/app/manifests/latest;x=1"},
	{"non-ASCII name", "/v2/äpp/manifests/latest"},
	{"encoded non-ASCII name", "/v2/%C3%A4pp/manifests/latest"},
	{"fullwidth solidus", "/v2/team%EF%BC%8Fapp/manifests/latest"},
	{"non-UTF-8 byte", "/v2/app\xff/manifests/latest"},
	{"upper-case name", "/v2/App/manifests/latest"},
	{"registry host in name", "/v2/localhost:5000/app/manifests/latest"},
	{"name starting with a separator", "/v2/-app/manifests/latest"},
	{"empty reference", "/v2/app/manifests/"},
	{"trailing slash after reference", "/v2/app/manifests/latest/"},
	{"tag of 129 characters", "/v2/app/manifests/" + strings.Repeat("a", 129)},
	{"digest with an upper-case algorithm", "/v2/app/blobs/SHA256:" + strings.Repeat("ab", 32)},
	{"digest with a dot in it", "/v2/app/blobs/sha256:ab.cd"},
	{"name of 256 characters", "/v2/" + strings.Repeat("a", 256) + "/manifests/latest"},
	{"name of 256 characters with slashes", "/v2/" + strings.Repeat("abc/", 63) + "abcd/tags/list"},
	{"name of 64 KiB", "/v2/" + strings.Repeat("a/", 32<<10) + "a/manifests/latest"},
	{"path of 2049 bytes", "/v2/app/blobs/uploads/" + strings.Repeat("u", maxPathLength+1-len("/v2/app/blobs/uploads/"))},
	{"upload start without slash", "/v2/app/blobs/uploads"},
	{"catalog with slash", "/v2/_catalog/"},
	{"catalog as a name", "/v2/_catalog/manifests/latest"},
	{"v2 upper case", "/V2/app/manifests/latest"},
	{"v20", "/v20/app/manifests/latest"},
	{"v2 prefix", "/v2foo/"},
	{"v1 API", "/v1/repositories/app/images"},
	{"root", "/"},
	{"empty", ""},
	{"relative", "v2/app/manifests/latest"},
	{"absolute URI", "http://registry/v2/app/manifests/latest"},
	{"asterisk", "*"},
	{"query only", "?/v2/app/manifests/latest"},
	{"this service's metrics", "/metrics"},
	{"this service's auth", "/auth"},
}

// hostileQueries are upload starts whose cross-repository mount names no valid source.
var hostileQueries = []struct{ name, uri string }{
	{"mount from dot-dot", "/v2/app/blobs/uploads/?mount=" + testDigest + "&from=../secret"},
	{"mount from upper case", "/v2/app/blobs/uploads/?mount=" + testDigest + "&from=Secret"},
	{"mount from empty", "/v2/app/blobs/uploads/?mount=" + testDigest + "&from="},
	{"mount from twice", "/v2/app/blobs/uploads/?mount=" + testDigest + "&from=a&from=b"},
	{"mount twice", "/v2/app/blobs/uploads/?mount=" + testDigest + "&mount=" + testDigest + "&from=a"},
	{"mount from 256 characters", "/v2/app/blobs/uploads/?mount=" + testDigest + "&from=" + strings.Repeat("a", 256)},
	{"mount from bad escape", "/v2/app/blobs/uploads/?mount=" + testDigest + "&from=%zz"},
	{"mount from with NUL", "/v2/app/blobs/uploads/?mount=" + testDigest + "&from=a%00"},
	{"semicolon separator", "/v2/app/blobs/uploads/?mount=" + testDigest + ";from=other"},
	{"mount from with slash dot-dot", "/v2/app/blobs/uploads/?from=team/../secret"},
}

// TestHostileURIsNeverParse: none of hostileURIs is a route, for any method, so /auth can
// only deny it.
func TestHostileURIsNeverParse(t *testing.T) {
	t.Parallel()
	for _, tt := range append(hostileURIs, hostileQueries...) {
		for _, method := range allMethods {
			req, err := parseRegistryRequest(method, tt.uri)
			if err == nil {
				t.Errorf("%s: %q %q parsed as %s %s on %q, want an error", tt.name, method, tt.uri, req.needs, req.route, req.repository)
				continue
			}
			if !errors.Is(err, errUnknownRoute) && !errors.Is(err, errUnsupportedMethod) && !errors.Is(err, errRepeatedMountParameter) {
				t.Errorf("%s: got error %v, want unknown_route, unsupported_method or repeated_mount_parameter", tt.name, err)
			}
		}
		if _, err := parseRegistryRequest("POST", tt.uri); !errors.Is(err, errUnknownRoute) && !errors.Is(err, errRepeatedMountParameter) {
			// POST is the one method an upload start allows, so this is the path's own fault.
			t.Errorf("%s: POST got %v, want unknown_route or repeated_mount_parameter", tt.name, err)
		}
	}
}

// TestMountSource: a valid cross-repository mount names its source; a plain upload none.
func TestMountSource(t *testing.T) {
	t.Parallel()
	for uri, want := range map[string]string{
		"/v2/app/blobs/uploads/":                                            "",
		"/v2/app/blobs/uploads/?digest=" + testDigest:                       "",
		"/v2/app/blobs/uploads/?mount=" + testDigest + "&from=team/base":    "team/base",
		"/v2/app/blobs/uploads/?mount=" + testDigest + "&from=team%2Fbase":  "team/base", // a query is decoded, as the registry does
		"/v2/app/blobs/uploads/?from=team/base&mount=" + testDigest + "&x=": "team/base",
	} {
		req, err := parseRegistryRequest("POST", uri)
		if err != nil || req.mountFrom != want || req.needs != actionPull|actionPush {
			t.Errorf("POST %s: got from %q needs %s error %v, want from %q pull,push", uri, req.mountFrom, req.needs, err, want)
		}
		list, n := req.accesses()
		wantN := 1
		if want != "" {
			wantN = 2
		}
		if n != wantN || list[0] != (access{"app", actionPull | actionPush}) || (n == 2 && list[1] != access{want, actionPull}) {
			t.Errorf("POST %s: got accesses %v, want app pull,push and, for a mount, %q pull", uri, list[:n], want)
		}
	}
}

// FuzzParseRegistryRequest checks what must hold for any method and URI: no panic; an
// error is one of the known reasons; a parsed request needs what its method does (a path
// never turns a write into a read), its route allows the method, its repository follows the name grammar,
// and its decoded path parses to the same request again.
func FuzzParseRegistryRequest(f *testing.F) {
	for _, m := range []string{"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "get", ""} {
		f.Add(m, "/v2/team/app/manifests/latest")
		f.Add(m, "/v2/app/blobs/uploads/?mount="+testDigest+"&from=team/base")
	}
	for _, tt := range append(hostileURIs, hostileQueries...) {
		f.Add("PUT", tt.uri)
	}
	f.Fuzz(func(t *testing.T, method, uri string) {
		req, err := parseRegistryRequest(method, uri)
		if err != nil {
			if !errors.Is(err, errUnknownRoute) && !errors.Is(err, errUnsupportedMethod) && !errors.Is(err, errRepeatedMountParameter) {
				t.Fatalf("%q %q: unexpected error %v", method, uri, err)
			}
			return
		}
		// A path never makes a write need less than a write: a method that changes something
		// needs push or delete; a read needs pull, or nothing on /v2/ and the catalog.
		reads := method == "GET" || method == "HEAD"
		noRepository := req.route == routeBase || req.route == routeCatalog
		switch {
		case !isRegistryMethod(method):
			t.Fatalf("%q %q: parsed an unknown method", method, uri)
		case reads && !(req.needs == actionPull || noRepository && req.needs == 0):
			t.Fatalf("%q %q: a read needs %s", method, uri, req.needs)
		case !reads && req.needs&(actionPush|actionDelete) == 0:
			t.Fatalf("%q %q: a write needs only %s", method, uri, req.needs)
		}
		if req.repository != "" && (len(req.repository) > maxNameLength || !nameRE.MatchString(req.repository)) {
			t.Fatalf("%q %q: got repository %q outside the name grammar", method, uri, req.repository)
		}
		if req.mountFrom != "" && !nameRE.MatchString(req.mountFrom) {
			t.Fatalf("%q %q: got mount source %q outside the name grammar", method, uri, req.mountFrom)
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
		again, err := parseRegistryRequest(method, (&url.URL{Path: path}).EscapedPath()+"?"+query)
		if err != nil || again != req {
			t.Fatalf("%q %q: decoded path %q parses to %+v, %v; want %+v", method, uri, path, again, err, req)
		}
	})
}

// TestLongQueryRefused: the query is parsed before authentication, so its length is bounded.
func TestLongQueryRefused(t *testing.T) {
	t.Parallel()
	uri := "/v2/app/blobs/uploads/?mount=sha256:" + strings.Repeat("a", 64) + "&from=app" + strings.Repeat("&x=1", 2000)
	if _, err := parseRegistryRequest("POST", uri); err != errUnknownRoute {
		t.Errorf("got %v for a %d-byte URI, want errUnknownRoute", err, len(uri))
	}
	if _, err := parseRegistryRequest("POST", uri[:200]); err != nil {
		t.Errorf("got %v for the same URI cut to 200 bytes, want it parsed", err)
	}
}
