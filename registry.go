package main

import (
	"errors"
	"mime"
	"net/url"
	"strings"
)

// actionSet is a set of the actions distribution knows on a repository, as bits.
type actionSet uint8

const (
	actionPull actionSet = 1 << iota
	actionPush
	actionDelete
)

// actionNames are the actions' names, in the policy file and in logs.
var actionNames = []struct {
	action actionSet
	name   string
}{{actionPull, "pull"}, {actionPush, "push"}, {actionDelete, "delete"}}

// String lists the actions as "pull,push"; the empty set is "none".
func (s actionSet) String() string {
	if int(s) < len(actionSetNames) {
		return actionSetNames[s]
	}
	return actionSetName(s)
}

// actionSetNames are String's answers for every set of the three actions, made once so that
// naming a set in a decision's log line costs nothing.
var actionSetNames = func() (names [actionDelete << 1]string) {
	for s := range names {
		names[s] = actionSetName(actionSet(s))
	}
	return names
}()

func actionSetName(s actionSet) string {
	var names []string
	for _, a := range actionNames {
		if s&a.action != 0 {
			names = append(names, a.name)
		}
	}
	if len(names) == 0 {
		return "none"
	}
	return strings.Join(names, ",")
}

// routeKind names a route of the registry API (docs/registry-protocol.md, "Registry routes
// and actions").
type routeKind string

const (
	routeBase        routeKind = "base"
	routeCatalog     routeKind = "catalog"
	routeTags        routeKind = "tags"
	routeManifest    routeKind = "manifest"
	routeBlob        routeKind = "blob"
	routeUploadStart routeKind = "upload_start"
	routeUpload      routeKind = "upload"
	routeReferrers   routeKind = "referrers"
)

// registryRequest is what the original request asks of the registry.
type registryRequest struct {
	method     string
	route      routeKind
	repository string // empty for base and catalog
	reference  string // tag, digest or upload id, where the route has one
	// needs is what the request does to repository: distribution's own mapping of route and
	// method (registry/handlers/app.go; docs/registry-protocol.md, "Registry routes and
	// actions"). Empty for base and catalog, which the policy decides apart.
	needs     actionSet
	mountFrom string // source repository of a cross-repository mount, which needs pull there
}

// access is one repository a request touches and what it does there.
type access struct {
	repository string
	needs      actionSet
}

// accesses lists every repository req touches with what it needs there: its own, and the
// source of a cross-repository mount. The array keeps the hot path free of allocations.
func (req registryRequest) accesses() (list [2]access, n int) {
	if req.repository == "" {
		return list, 0
	}
	list[0] = access{req.repository, req.needs}
	if req.mountFrom == "" {
		return list, 1
	}
	list[1] = access{req.mountFrom, actionPull}
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
	kind    routeKind
	match   func(path string) (name, reference string, ok bool)
	methods string
}{
	{routeBase, exactly("/v2", "/v2/"), "GET HEAD"},
	{routeTags, nameThen("/tags/list", nil), "GET"},
	{routeManifest, nameThen("/manifests/", isReference), "GET HEAD PUT DELETE"},
	{routeBlob, nameThen("/blobs/", isRouteDigest), "GET HEAD DELETE"},
	{routeUploadStart, nameThen("/blobs/uploads/", nil), "POST"},
	{routeUpload, nameThen("/blobs/uploads/", isUploadID), "GET HEAD PATCH PUT DELETE"},
	{routeCatalog, exactly("/v2/_catalog"), "GET"},
	{routeReferrers, nameThen("/referrers/", isDigest), "GET"},
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

// errUnknownRoute and errUnsupportedMethod are the reasons a request is never allowed.
var (
	errUnknownRoute      = errors.New("unknown_route")
	errUnsupportedMethod = errors.New("unsupported_method")
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
func routeNeeds(route routeKind, method string) actionSet {
	switch {
	case route == routeBase || route == routeCatalog:
		return 0
	case method == "GET" || method == "HEAD":
		return actionPull
	case method == "DELETE" && route == routeUpload:
		return actionPush
	case method == "DELETE":
		return actionDelete
	}
	return actionPull | actionPush // POST, PUT, PATCH
}

// parseRegistryRequest maps the original method and request URI (as Traefik forwards them in
// X-Forwarded-Method and X-Forwarded-Uri, still percent-encoded) to a registryRequest. A URI
// that does not name a registry route exactly is an error, never a broader permission.
func parseRegistryRequest(method, uri string) (registryRequest, error) {
	req := registryRequest{method: method}
	if !isRegistryMethod(method) {
		return req, errUnsupportedMethod
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
		if len(name) > maxNameLength {
			return req, errUnknownRoute // no registry name is this long
		}
		if !serves(r.methods, method) {
			return req, errUnsupportedMethod
		}
		req.route = r.kind
		req.needs = routeNeeds(r.kind, method)
		req.repository, req.reference = name, ref
		if r.kind == routeUploadStart {
			if req.mountFrom, err = mountSource(uri); err != nil {
				return req, err
			}
		}
		return req, nil
	}
	return req, errUnknownRoute
}

// decodeRequestPath returns the decoded path of uri, refusing what could make us and the registry
// see different paths: encoded slashes or backslashes, dot segments, empty segments, control
// characters.
func decodeRequestPath(uri string) (string, error) {
	rawPath, _, _ := strings.Cut(uri, "?")
	// The whole URI too: the query is parsed (mountSource) before the user is authenticated.
	if len(rawPath) > maxPathLength || len(uri) > 2*maxPathLength {
		return "", errUnknownRoute
	}
	lower := strings.ToLower(rawPath)
	if strings.Contains(lower, "%2f") || strings.Contains(lower, "%5c") || strings.Contains(rawPath, `\`) {
		return "", errUnknownRoute
	}
	path, err := url.PathUnescape(rawPath)
	if err != nil || !strings.HasPrefix(path, "/") {
		return "", errUnknownRoute
	}
	if strings.IndexFunc(path, func(r rune) bool { return r < 0x21 || r >= 0x7f }) >= 0 {
		return "", errUnknownRoute
	}
	if strings.Contains(path, "//") {
		return "", errUnknownRoute // an empty segment
	}
	for s := range strings.SplitSeq(path[1:], "/") {
		if s == "." || s == ".." {
			return "", errUnknownRoute
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
		return "", errUnknownRoute
	}
	from := q["from"]
	switch {
	case len(from) > 1 || len(q["mount"]) > 1:
		return "", errRepeatedMountParameter
	case len(from) == 0:
		return "", nil
	case len(from[0]) > maxNameLength || !isName(from[0]):
		return "", errUnknownRoute
	}
	return from[0], nil
}

// errRepeatedMountParameter and errFormBody refuse upload starts whose mount source we could
// misread.
var (
	errRepeatedMountParameter = errors.New("repeated_mount_parameter")
	errFormBody               = errors.New("form_body_on_upload_start")
)

// checkUploadStartBody refuses an upload start whose body the registry would read as a form:
// distribution reads `mount` and `from` with r.FormValue, so a form-encoded body overrides
// the query that we checked, and forwardAuth never shows us the body
// (docs/registry-protocol.md, "Registry routes and actions"). No client sends a form there.
// contentTypes are the request's Content-Type headers; none is fine (clients send none).
func checkUploadStartBody(contentTypes []string) error {
	switch len(contentTypes) {
	case 0:
		return nil
	case 1:
	default:
		return errFormBody // which one would Go's ParseForm read? Refuse rather than guess.
	}
	ct := strings.ToLower(contentTypes[0])
	if mediaType, _, err := mime.ParseMediaType(ct); err == nil {
		ct = mediaType
	}
	// Substrings, not equality: an unparsable value the registry might still read as a form
	// is refused too.
	if strings.Contains(ct, "form-urlencoded") || strings.Contains(ct, "multipart/") {
		return errFormBody
	}
	return nil
}
