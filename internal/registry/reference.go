package registry

import "strings"

// The grammar of repository names, tags, digests and upload ids, as distribution's reference
// package and its route patterns define them (docs/registry-protocol.md, "Registry routes and
// actions"), written out by hand. Matching distribution's regular expressions took several
// microseconds a request, and tens on an upload's path, where three routes are tried: the
// largest part of a cached decision. reference_test.go holds those expressions and checks
// these functions against them, on tables and under the fuzzer.

// MaxNameLength is the longest repository name distribution accepts.
const MaxNameLength = 255

// isName reports whether s is a repository name: name components joined by single slashes,
// `[a-z0-9]+(?:(?:[._]|__|[-]+)[a-z0-9]+)*(?:/…)*`. Our grammar is distribution's without its
// optional registry-host component (upper case, ports): such names are refused. The length
// is not checked here.
func isName(s string) bool {
	for component := range strings.SplitSeq(s, "/") {
		if !IsNameComponent(component) {
			return false
		}
	}
	return true
}

// IsNameComponent reports whether s is one component of a repository name: lower-case letters
// and digits, separated by one period, one or two underscores or any number of hyphens.
func IsNameComponent(s string) bool {
	if s == "" || !isLowerAlnum(s[0]) || !isLowerAlnum(s[len(s)-1]) {
		return false
	}
	for i := 1; i < len(s); i++ {
		if isLowerAlnum(s[i]) {
			continue
		}
		// A separator; the last byte is alphanumeric, so none runs past the end.
		switch s[i] {
		case '.':
		case '_':
			if s[i+1] == '_' {
				i++
			}
		case '-':
			for s[i+1] == '-' {
				i++
			}
		default:
			return false
		}
		if !isLowerAlnum(s[i+1]) {
			return false // two separators in a row
		}
	}
	return true
}

// isTag reports whether s is a tag: `[\w][\w.-]{0,127}`.
func isTag(s string) bool {
	if s == "" || len(s) > 128 || !isWord(s[0]) {
		return false
	}
	for i := 1; i < len(s); i++ {
		if c := s[i]; !isWord(c) && c != '.' && c != '-' {
			return false
		}
	}
	return true
}

// isDigest reports whether s is a digest: an algorithm, `[A-Za-z][A-Za-z0-9]*` components
// joined by one of `-_+.`, a colon and at least 32 hexadecimal digits.
func isDigest(s string) bool {
	algorithm, encoded, found := strings.Cut(s, ":")
	if !found || len(encoded) < 32 {
		return false
	}
	for i := 0; i < len(encoded); i++ {
		if !isHex(encoded[i]) {
			return false
		}
	}
	startOfComponent := true
	for i := 0; i < len(algorithm); i++ {
		c := algorithm[i]
		switch {
		case isLetter(c):
		case c >= '0' && c <= '9' && !startOfComponent:
		case strings.IndexByte("-_+.", c) >= 0 && !startOfComponent:
			startOfComponent = true
			continue
		default:
			return false
		}
		startOfComponent = false
	}
	return !startOfComponent // not empty, and no separator at its end
}

// isRouteDigest reports whether s is a digest as the manifest and blob routes match it:
// go-digest's looser DigestRegexp, `[a-z0-9]+(?:[.+_-][a-z0-9]+)*:[a-zA-Z0-9=_-]+`. A
// malformed digest such as sha256:baddigeststring reaches the registry's handler, which
// answers 400 DIGEST_INVALID; registry-auth must send it there too, not refuse the route.
func isRouteDigest(s string) bool {
	algorithm, encoded, found := strings.Cut(s, ":")
	if !found || encoded == "" {
		return false
	}
	for i := 0; i < len(encoded); i++ {
		if c := encoded[i]; !isLetter(c) && !(c >= '0' && c <= '9') && c != '=' && c != '_' && c != '-' {
			return false
		}
	}
	startOfComponent := true
	for i := 0; i < len(algorithm); i++ {
		switch c := algorithm[i]; {
		case isLowerAlnum(c):
			startOfComponent = false
		case strings.IndexByte(".+_-", c) >= 0 && !startOfComponent:
			startOfComponent = true
		default:
			return false
		}
	}
	return !startOfComponent // not empty, and no separator at its end
}

// isReference reports whether s names a manifest as the manifest route matches it: a tag or
// a digest of the route's looser grammar.
func isReference(s string) bool { return isTag(s) || isRouteDigest(s) }

// isUploadID reports whether s is an upload id as distribution's routes take it:
// `[a-zA-Z0-9-_.=]+`.
func isUploadID(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; !isLetter(c) && !(c >= '0' && c <= '9') && strings.IndexByte("-_.=", c) < 0 {
			return false
		}
	}
	return true
}

func isLowerAlnum(c byte) bool { return c >= 'a' && c <= 'z' || c >= '0' && c <= '9' }
func isLetter(c byte) bool     { return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' }
func isWord(c byte) bool       { return isLetter(c) || c >= '0' && c <= '9' || c == '_' }
func isHex(c byte) bool        { return c >= '0' && c <= '9' || c >= 'a' && c <= 'f' || c >= 'A' && c <= 'F' }
