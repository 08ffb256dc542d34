package registry

import (
	"regexp"
	"strings"
	"testing"
)

// The grammar as distribution writes it, the oracle for reference.go: the reference
// package's regexp.go (github.com/distribution/reference) for names, tags and digests, and
// registry/api/v2/descriptors.go (github.com/distribution/distribution) for the routes and
// upload ids (docs/registry-protocol.md, "Registry routes and actions").
const (
	nameComponentPattern = `[a-z0-9]+(?:(?:[._]|__|[-]+)[a-z0-9]+)*`
	namePattern          = nameComponentPattern + `(?:/` + nameComponentPattern + `)*`
	tagPattern           = `[\w][\w.-]{0,127}`
	digestPattern        = `[A-Za-z][A-Za-z0-9]*(?:[-_+.][A-Za-z][A-Za-z0-9]*)*:[0-9a-fA-F]{32,}`
	uploadIDPattern      = `[a-zA-Z0-9-_.=]+`
	// The manifest and blob routes' digest: go-digest's DigestRegexp (digest.go).
	routeDigestPattern = `[a-z0-9]+(?:[.+_-][a-z0-9]+)*:[a-zA-Z0-9=_-]+`
)

func anchored(pattern string) *regexp.Regexp { return regexp.MustCompile(`^(?:` + pattern + `)$`) }

var (
	nameRE          = anchored(namePattern)
	nameComponentRE = anchored(nameComponentPattern)
	tagRE           = anchored(tagPattern)
	digestRE        = anchored(digestPattern)
	uploadIDRE      = anchored(uploadIDPattern)
	routeDigestRE   = anchored(routeDigestPattern)
)

// routeRegexps are distribution's route patterns in its order, as routeTable must match them.
var routeRegexps = []struct {
	kind    Route
	pattern *regexp.Regexp
}{
	{RouteBase, regexp.MustCompile(`^/v2/?$`)},
	{RouteTags, regexp.MustCompile(`^/v2/(` + namePattern + `)/tags/list$`)},
	{RouteManifest, regexp.MustCompile(`^/v2/(` + namePattern + `)/manifests/(` + tagPattern + `|` + routeDigestPattern + `)$`)},
	{RouteBlob, regexp.MustCompile(`^/v2/(` + namePattern + `)/blobs/(` + routeDigestPattern + `)$`)},
	{RouteUploadStart, regexp.MustCompile(`^/v2/(` + namePattern + `)/blobs/uploads/$`)},
	{RouteUpload, regexp.MustCompile(`^/v2/(` + namePattern + `)/blobs/uploads/(` + uploadIDPattern + `)$`)},
	{RouteCatalog, regexp.MustCompile(`^/v2/_catalog$`)},
	{RouteReferrers, regexp.MustCompile(`^/v2/(` + namePattern + `)/referrers/(` + digestPattern + `)$`)},
}

// routeByRegexp is the first route whose pattern matches path, with its name and reference.
func routeByRegexp(path string) (kind Route, name, ref string) {
	for _, r := range routeRegexps {
		if m := r.pattern.FindStringSubmatch(path); m != nil {
			m = append(m, "", "")
			return r.kind, m[1], m[2]
		}
	}
	return "", "", ""
}

// routeByTable is the same answer from routeTable.
func routeByTable(path string) (kind Route, name, ref string) {
	for _, r := range routeTable {
		if name, ref, ok := r.match(path); ok {
			return r.kind, name, ref
		}
	}
	return "", "", ""
}

// checkGrammar fails t where a function of reference.go and distribution's pattern disagree on s.
func checkGrammar(t *testing.T, s string) {
	t.Helper()
	for _, g := range []struct {
		name string
		got  bool
		re   *regexp.Regexp
	}{
		{"isName", isName(s), nameRE},
		{"IsNameComponent", IsNameComponent(s), nameComponentRE},
		{"isTag", isTag(s), tagRE},
		{"isDigest", isDigest(s), digestRE},
		{"isUploadID", isUploadID(s), uploadIDRE},
		{"isRouteDigest", isRouteDigest(s), routeDigestRE},
	} {
		if want := g.re.MatchString(s); g.got != want {
			t.Errorf("%s(%q): got %v, want %v (distribution's pattern)", g.name, s, g.got, want)
		}
	}
	if got, want := isReference(s), tagRE.MatchString(s) || routeDigestRE.MatchString(s); got != want {
		t.Errorf("isReference(%q): got %v, want %v", s, got, want)
	}
}

// checkRoute fails t where routeTable and distribution's route patterns disagree on path.
func checkRoute(t *testing.T, path string) {
	t.Helper()
	gotKind, gotName, gotRef := routeByTable(path)
	wantKind, wantName, wantRef := routeByRegexp(path)
	if gotKind != wantKind || gotName != wantName || gotRef != wantRef {
		t.Errorf("%q: got route %q name %q reference %q, want %q %q %q (distribution's patterns)", path, gotKind, gotName, gotRef, wantKind, wantName, wantRef)
	}
}

// grammarCases are strings at the edges of the grammar, each for some function of reference.go.
var grammarCases = []string{
	"", "a", "A", "0", "_", "-", ".", "a.b", "a..b", "a_b", "a__b", "a___b", "a-b", "a---b",
	"a-", "-a", "a.", ".a", "a_", "_a", "a._b", "a-_b", "a_-b", "a.-b", "a-.b", "ab9", "Ab",
	"a/b", "a//b", "/a", "a/", "a/b/c-d/e__f", "a/B", "a/b:5000", "localhost:5000/a",
	"latest", "v1.2.3", "_tag", ".tag", "-tag", "t" + strings.Repeat("a", 127), "t" + strings.Repeat("a", 128),
	"sha256:" + strings.Repeat("a", 64), "sha256:" + strings.Repeat("a", 31), "sha256:" + strings.Repeat("A", 32),
	"sha256:" + strings.Repeat("g", 32), "sha256+b64:" + strings.Repeat("0", 32), "sha-256:" + strings.Repeat("0", 32),
	"sha256-:" + strings.Repeat("0", 32), "-sha:" + strings.Repeat("0", 32), "s2:" + strings.Repeat("0", 32),
	"2s:" + strings.Repeat("0", 32), "a-2:" + strings.Repeat("0", 32), "a--b:" + strings.Repeat("0", 32),
	":" + strings.Repeat("0", 32), "sha256:", "sha256:" + strings.Repeat("0", 32) + ":0",
	"0b9b4c8e-2f1a-4c56-9d3e-7f0a1b2c3d4e", "abc=", "a+b", "a:b", "é", "a\x00",
	"sha256:baddigeststring", "sha256:a=_-Z", "SHA256:" + strings.Repeat("0", 32), "sha256:a.b", "sha256:a/b", "a..b:c",
	"a.:c", ".a:c", "a+b_c-d.e:f", "a:b:c", "a:",
}

// TestGrammarMatchesDistribution: reference.go accepts exactly what distribution's patterns do.
func TestGrammarMatchesDistribution(t *testing.T) {
	t.Parallel()
	for _, s := range grammarCases {
		checkGrammar(t, s)
	}
}

// TestRoutesMatchDistribution: routeTable takes every path to the route, name and reference
// that distribution's patterns do, for names and references at the edges of the grammar and
// for paths whose names hold the routes' own words.
func TestRoutesMatchDistribution(t *testing.T) {
	t.Parallel()
	digest := "sha256:" + strings.Repeat("ab", 32)
	var paths []string
	for _, name := range []string{"app", "team/app", "a/manifests/b", "a/blobs/uploads", "blobs", "tags/list", "a/referrers", "_catalog", "A", "a//b", "a/"} {
		for _, tail := range []string{"/tags/list", "/manifests/latest", "/manifests/" + digest, "/manifests/-x", "/manifests/sha256:baddigeststring", "/blobs/sha256:baddigeststring", "/blobs/" + digest,
			"/blobs/latest", "/blobs/uploads/", "/blobs/uploads/" + digest, "/blobs/uploads/u-1=", "/blobs/uploads/a/b",
			"/referrers/" + digest, "/referrers/latest", "/tags/list/", "/manifests/", "/blobs/uploads"} {
			paths = append(paths, "/v2/"+name+tail)
		}
	}
	paths = append(paths, "/v2", "/v2/", "/v2//", "/v2/_catalog", "/v2/_catalog/", "/v3/app/tags/list", "v2/app/tags/list", "")
	for _, path := range paths {
		checkRoute(t, path)
	}
}

// FuzzGrammar compares reference.go with distribution's patterns on any string, alone and as
// a path.
func FuzzGrammar(f *testing.F) {
	for _, s := range grammarCases {
		f.Add(s)
	}
	f.Add("/v2/team/app/manifests/latest")
	f.Add("/v2/a/blobs/uploads/blobs/sha256:" + strings.Repeat("0", 32))
	f.Fuzz(func(t *testing.T, s string) {
		checkGrammar(t, s)
		checkRoute(t, s)
		checkRoute(t, "/v2/"+s)
	})
}
