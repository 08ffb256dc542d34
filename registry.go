package main

import (
	"errors"
	"mime"
	"net/url"
	"regexp"
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

// Grammar from distribution's reference package, anchored by the route patterns below.
const (
	nameComponent = `[a-z0-9]+(?:(?:[._]|__|[-]+)[a-z0-9]+)*`
	namePattern   = nameComponent + `(?:/` + nameComponent + `)*`
	tagPattern    = `[\w][\w.-]{0,127}`
	digestPattern = `[A-Za-z][A-Za-z0-9]*(?:[-_+.][A-Za-z][A-Za-z0-9]*)*:[0-9a-fA-F]{32,}`
	uuidPattern   = `[a-zA-Z0-9-_.=]+`
	maxNameLength = 255
	// maxPathLength bounds the path matched against the routes; the longest real one is
	// about 420 bytes (a 255-byte name and a sha512 digest). Matching a 64 KiB path costs
	// milliseconds, which nobody should get for free before authentication.
	maxPathLength = 2048
)

// routeTable lists the registry's routes in the order distribution matches them, with the
// methods each one serves (docs/registry-protocol.md, "Registry routes and actions";
// distribution answers 405 to the others, but its base route takes any method). A
// path matching none is refused. Our name grammar is distribution's without its optional
// registry-host component (upper case, ports): such names are refused, never mapped to a
// different route, because every pattern anchors the name right after /v2/.
var routeTable = []struct {
	kind    routeKind
	marker  string // a literal in every path the pattern matches: a cheap test that skips the regexp
	pattern *regexp.Regexp
	methods string
}{
	{routeBase, "/v2", regexp.MustCompile(`^/v2/?$`), "GET HEAD"},
	{routeTags, "/tags/list", regexp.MustCompile(`^/v2/(` + namePattern + `)/tags/list$`), "GET"},
	{routeManifest, "/manifests/", regexp.MustCompile(`^/v2/(` + namePattern + `)/manifests/(` + tagPattern + `|` + digestPattern + `)$`), "GET HEAD PUT DELETE"},
	{routeBlob, "/blobs/", regexp.MustCompile(`^/v2/(` + namePattern + `)/blobs/(` + digestPattern + `)$`), "GET HEAD DELETE"},
	{routeUploadStart, "/blobs/uploads/", regexp.MustCompile(`^/v2/(` + namePattern + `)/blobs/uploads/$`), "POST"},
	{routeUpload, "/blobs/uploads/", regexp.MustCompile(`^/v2/(` + namePattern + `)/blobs/uploads/(` + uuidPattern + `)$`), "GET HEAD PATCH PUT DELETE"},
	{routeCatalog, "/_catalog", regexp.MustCompile(`^/v2/_catalog$`), "GET"},
	{routeReferrers, "/referrers/", regexp.MustCompile(`^/v2/(` + namePattern + `)/referrers/(` + digestPattern + `)$`), "GET"},
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
		if !strings.Contains(path, r.marker) {
			continue
		}
		m := r.pattern.FindStringSubmatch(path)
		if m == nil {
			continue
		}
		if len(m) > 1 && len(m[1]) > maxNameLength {
			return req, errUnknownRoute // no registry name is this long
		}
		if !strings.Contains(" "+r.methods+" ", " "+method+" ") {
			return req, errUnsupportedMethod
		}
		req.route = r.kind
		req.needs = routeNeeds(r.kind, method)
		if len(m) > 1 {
			req.repository = m[1]
		}
		if len(m) > 2 {
			req.reference = m[2]
		}
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
	segments := strings.Split(path[1:], "/")
	for i, s := range segments {
		if s == "." || s == ".." || (s == "" && i != len(segments)-1) {
			return "", errUnknownRoute
		}
	}
	return path, nil
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
	case len(from[0]) > maxNameLength || !fullName.MatchString(from[0]):
		return "", errUnknownRoute
	}
	return from[0], nil
}

var fullName = mustAnchored(namePattern)

// mustAnchored compiles a pattern of the name grammar to match whole strings only.
func mustAnchored(pattern string) *regexp.Regexp { return regexp.MustCompile(`^(?:` + pattern + `)$`) }

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
