// Package registrytest holds the request tables that the registry package's tests and the
// service's own tests (which send them through /auth) share.
package registrytest

import "strings"

// Digest is a well-formed sha256 digest.
var Digest = "sha256:" + strings.Repeat("0123456789abcdef", 4)

// Case is one X-Forwarded-Uri with what it tries.
type Case struct{ Name, URI string }

// Hostile is HostileURIs and HostileQueries together.
func Hostile() []Case { return append(append([]Case{}, HostileURIs...), HostileQueries...) }

// HostileURIs are X-Forwarded-Uri values that must never parse as a registry route, whatever
// the method: each one tries to make us and the registry see different paths, or to reach
// something that is not the registry API.
var HostileURIs = []Case{
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
	// One byte past the registry package's maxPathLength (2048), which its tests check.
	{"path of 2049 bytes", "/v2/app/blobs/uploads/" + strings.Repeat("u", 2048+1-len("/v2/app/blobs/uploads/"))},
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

// HostileQueries are upload starts whose cross-repository mount names no valid source.
var HostileQueries = []Case{
	{"mount from dot-dot", "/v2/app/blobs/uploads/?mount=" + Digest + "&from=../secret"},
	{"mount from upper case", "/v2/app/blobs/uploads/?mount=" + Digest + "&from=Secret"},
	{"mount from empty", "/v2/app/blobs/uploads/?mount=" + Digest + "&from="},
	{"mount from twice", "/v2/app/blobs/uploads/?mount=" + Digest + "&from=a&from=b"},
	{"mount twice", "/v2/app/blobs/uploads/?mount=" + Digest + "&mount=" + Digest + "&from=a"},
	{"mount from 256 characters", "/v2/app/blobs/uploads/?mount=" + Digest + "&from=" + strings.Repeat("a", 256)},
	{"mount from bad escape", "/v2/app/blobs/uploads/?mount=" + Digest + "&from=%zz"},
	{"mount from with NUL", "/v2/app/blobs/uploads/?mount=" + Digest + "&from=a%00"},
	{"semicolon separator", "/v2/app/blobs/uploads/?mount=" + Digest + ";from=other"},
	{"mount from with slash dot-dot", "/v2/app/blobs/uploads/?from=team/../secret"},
}
