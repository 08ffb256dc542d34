// Package registry is the distribution registry's HTTP API as registry-auth must see it: its
// routes and the methods each serves, the grammar of names, tags, digests and upload ids,
// the actions a request needs on which repositories (a cross-repository mount's source
// included), and the upload starts whose body could override the query. It is pure: strings
// in, values out, the standard library only. docs/registry-protocol.md gives the upstream
// sources of every rule.
package registry

import (
	"errors"
	"mime"
	"net/url"
	"strings"
)

// Route names a route of the registry API (docs/registry-protocol.md, "Registry routes
// and actions").
type Route string

// The routes, named as the decision log and the policy name them.
const (
	RouteBase        Route = "base"
	RouteCatalog     Route = "catalog"
	RouteTags        Route = "tags"
	RouteManifest    Route = "manifest"
	RouteBlob        Route = "blob"
	RouteUploadStart Route = "upload_start"
	RouteUpload      Route = "upload"
	RouteReferrers   Route = "referrers"
)

// Request is what the original request asks of the registry.
type Request struct {
	Method     string // as forwarded; the handler replaces it with a copy fit for logs
	Route      Route
	Repository string // empty for base and catalog
	Reference  string // tag, digest or upload id, where the route has one
	// Needs is what the request does to Repository: distribution's own mapping of route and
	// method (registry/handlers/app.go; docs/registry-protocol.md, "Registry routes and
	// actions"). Empty for base and catalog, which the policy decides apart.
	Needs     Actions
	MountFrom string // source repository of a cross-repository mount, which needs pull there
}

// Access is one repository a request touches and what it does there.
type Access struct {
	Repository string
	Needs      Actions
}

// Accesses lists every repository req touches with what it needs there: its own, and the
// source of a cross-repository mount. The array keeps the hot path free of allocations.
func (req Request) Accesses() (list [2]Access, n int) {
	if req.Repository == "" {
		return list, 0
	}
	list[0] = Access{req.Repository, req.Needs}
	if req.MountFrom == "" {
		return list, 1
	}
	list[1] = Access{req.MountFrom, Pull}
	return list, 2
}

// maxPathLength bounds the path matched against the routes; the longest real one is about 420
// bytes (a 255-byte name and a sha512 digest). Nobody gets to make us scan a 64 KiB path before
// authentication.
const maxPathLength = 2048

// routeTable lists the registry's routes in the order distribution matches them, with the
// methods each one serves (docs/registry-protocol.md, "Registry routes and actions";
// distribution answers 405 to the others, but its base route takes any method). A path
// matching none is refused. Every route but base and catalog is /v2/, a name (isName), a
// literal and, for most, a reference after the last slash; as the name starts right after
// /v2/, a name with a registry host is refused, never mapped to a different route.
var routeTable = []struct {
	kind    Route
	match   func(path string) (name, reference string, ok bool)
	methods string
}{
	{RouteBase, exactly("/v2", "/v2/"), "GET HEAD"},
	{RouteTags, nameThen("/tags/list", nil), "GET"},
	{RouteManifest, nameThen("/manifests/", isReference), "GET HEAD PUT DELETE"},
	{RouteBlob, nameThen("/blobs/", isRouteDigest), "GET HEAD DELETE"},
	{RouteUploadStart, nameThen("/blobs/uploads/", nil), "POST"},
	{RouteUpload, nameThen("/blobs/uploads/", isUploadID), "GET HEAD PATCH PUT DELETE"},
	{RouteCatalog, exactly("/v2/_catalog"), "GET"},
	{RouteReferrers, nameThen("/referrers/", isDigest), "GET"},
}

// exactly matches the paths given and no other.
func exactly(paths ...string) func(string) (string, string, bool) {
	return func(path string) (string, string, bool) {
		for _, p := range paths {
			if path == p {
				return "", "", true
			}
		}
		return "", "", false
	}
}

// nameThen matches /v2/NAME followed by literal and, when isRef is not nil, a reference that
// isRef accepts. A reference holds no slash, so it is what follows the last one.
func nameThen(literal string, isRef func(string) bool) func(string) (string, string, bool) {
	return func(path string) (string, string, bool) {
		rest, ok := strings.CutPrefix(path, "/v2/")
		if !ok {
			return "", "", false
		}
		ref := ""
		if isRef != nil {
			i := strings.LastIndexByte(rest, '/')
			if i < 0 || !isRef(rest[i+1:]) {
				return "", "", false
			}
			rest, ref = rest[:i+1], rest[i+1:]
		}
		name, ok := strings.CutSuffix(rest, literal)
		if !ok || !isName(name) {
			return "", "", false
		}
		return name, ref, true
	}
}

// ErrUnknownRoute and ErrUnsupportedMethod are the reasons a request is never allowed.
var (
	ErrUnknownRoute      = errors.New("unknown_route")
	ErrUnsupportedMethod = errors.New("unsupported_method")
)

// isRegistryMethod reports whether distribution serves method on some route. Methods are
// case-sensitive, as in HTTP: "get" is not GET.
func isRegistryMethod(method string) bool {
	switch method {
	case "GET", "HEAD", "POST", "PUT", "PATCH", "DELETE":
		return true
	}
	return false
}

// routeNeeds is distribution's mapping of a route's methods to actions: reading is pull;
// writing a manifest or a blob upload is pull and push; deleting a manifest or blob is
// delete, cancelling one's own upload is push.
func routeNeeds(route Route, method string) Actions {
	switch {
	case route == RouteBase || route == RouteCatalog:
		return 0
	case method == "GET" || method == "HEAD":
		return Pull
	case method == "DELETE" && route == RouteUpload:
		return Push
	case method == "DELETE":
		return Delete
	}
	return Pull | Push // POST, PUT, PATCH
}

// ParseRequest maps the original method and request URI (as Traefik forwards them in
// X-Forwarded-Method and X-Forwarded-Uri, still percent-encoded) to a Request. A URI
// that does not name a registry route exactly is an error, never a broader permission.
func ParseRequest(method, uri string) (Request, error) {
	req := Request{Method: method}
	if !isRegistryMethod(method) {
		return req, ErrUnsupportedMethod
	}
	path, err := decodeRequestPath(uri)
	if err != nil {
		return req, err
	}
	for _, r := range routeTable {
		name, ref, ok := r.match(path)
		if !ok {
			continue
		}
		if len(name) > MaxNameLength {
			return req, ErrUnknownRoute // no registry name is this long
		}
		if !serves(r.methods, method) {
			return req, ErrUnsupportedMethod
		}
		req.Route = r.kind
		req.Needs = routeNeeds(r.kind, method)
		req.Repository, req.Reference = name, ref
		if r.kind == RouteUploadStart {
			if req.MountFrom, err = mountSource(uri); err != nil {
				return req, err
			}
		}
		return req, nil
	}
	return req, ErrUnknownRoute
}

// decodeRequestPath returns the decoded path of uri, refusing what could make us and the registry
// see different paths: encoded slashes or backslashes, dot segments, empty segments, control
// characters.
func decodeRequestPath(uri string) (string, error) {
	rawPath, _, _ := strings.Cut(uri, "?")
	// The whole URI too: the query is parsed (mountSource) before the user is authenticated.
	if len(rawPath) > maxPathLength || len(uri) > 2*maxPathLength {
		return "", ErrUnknownRoute
	}
	lower := strings.ToLower(rawPath)
	if strings.Contains(lower, "%2f") || strings.Contains(lower, "%5c") || strings.Contains(rawPath, `\`) {
		return "", ErrUnknownRoute
	}
	path, err := url.PathUnescape(rawPath)
	if err != nil || !strings.HasPrefix(path, "/") {
		return "", ErrUnknownRoute
	}
	if strings.IndexFunc(path, func(r rune) bool { return r < 0x21 || r >= 0x7f }) >= 0 {
		return "", ErrUnknownRoute
	}
	if strings.Contains(path, "//") {
		return "", ErrUnknownRoute // an empty segment
	}
	for s := range strings.SplitSeq(path[1:], "/") {
		if s == "." || s == ".." {
			return "", ErrUnknownRoute
		}
	}
	return path, nil
}

// serves reports whether method is one of the space-separated methods.
func serves(methods, method string) bool {
	for m := range strings.FieldsSeq(methods) {
		if m == method {
			return true
		}
	}
	return false
}

// mountSource returns the `from` repository of a cross-repository mount, checked against the
// name grammar, or "" when the upload is not a mount. A repeated `mount` or `from` is refused:
// which copy the registry would act on is not ours to guess.
func mountSource(uri string) (string, error) {
	_, rawQuery, _ := strings.Cut(uri, "?")
	q, err := url.ParseQuery(rawQuery)
	if err != nil {
		return "", ErrUnknownRoute
	}
	from := q["from"]
	switch {
	case len(from) > 1 || len(q["mount"]) > 1:
		return "", ErrRepeatedMountParameter
	case len(from) == 0:
		return "", nil
	case len(from[0]) > MaxNameLength || !isName(from[0]):
		return "", ErrUnknownRoute
	}
	return from[0], nil
}

// ErrRepeatedMountParameter and ErrFormBody refuse upload starts whose mount source we could
// misread.
var (
	ErrRepeatedMountParameter = errors.New("repeated_mount_parameter")
	ErrFormBody               = errors.New("form_body_on_upload_start")
)

// CheckUploadStartBody refuses an upload start whose body the registry would read as a form:
// distribution reads `mount` and `from` with r.FormValue, so a form-encoded body overrides
// the query that we checked, and forwardAuth never shows us the body
// (docs/registry-protocol.md, "Registry routes and actions"). No client sends a form there.
// contentTypes are the request's Content-Type headers; none is fine (clients send none).
func CheckUploadStartBody(contentTypes []string) error {
	switch len(contentTypes) {
	case 0:
		return nil
	case 1:
	default:
		return ErrFormBody // which one would Go's ParseForm read? Refuse rather than guess.
	}
	ct := strings.ToLower(contentTypes[0])
	if mediaType, _, err := mime.ParseMediaType(ct); err == nil {
		ct = mediaType
	}
	// Substrings, not equality: an unparsable value the registry might still read as a form
	// is refused too.
	if strings.Contains(ct, "form-urlencoded") || strings.Contains(ct, "multipart/") {
		return ErrFormBody
	}
	return nil
}
