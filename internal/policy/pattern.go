package policy

import (
	"fmt"
	"github.com/registry-auth/registry-auth/internal/registry"
	"strings"
)

// repoPattern is a compiled repository pattern of the policy file: `*` matches any run of
// characters except `/`, `**` any run including `/`, and `${user}` the authenticated user's
// name; every other character stands for itself. Patterns are compiled once, at load, and
// matching allocates nothing.
type repoPattern struct {
	text    string
	tokens  []patternToken
	hasUser bool
	prefix  string // the literal the pattern starts with, "" if none: checked first
}

type tokenKind uint8

const (
	tokenLiteral tokenKind = iota
	tokenStar              // *
	tokenAny               // **
	tokenUser              // ${user}
)

type patternToken struct {
	kind    tokenKind
	literal string // for tokenLiteral
}

// userPlaceholder is how a pattern names the authenticated user.
const userPlaceholder = "${user}"

// patternChars are the characters a pattern may hold besides its wildcards and ${user}:
// those of repository names (distribution's name grammar), so a pattern that could never
// match a name is an error at load, not a rule that silently grants nothing.
const patternChars = "abcdefghijklmnopqrstuvwxyz0123456789._-/"

// compilePattern parses a repository pattern.
func compilePattern(text string) (repoPattern, error) {
	p := repoPattern{text: text}
	if text == "" {
		return p, fmt.Errorf("empty repository pattern: write \"**\" for every repository")
	}
	for rest := text; rest != ""; {
		switch {
		case strings.HasPrefix(rest, "***"):
			return p, fmt.Errorf("repository pattern %q: \"***\" means nothing; use * (within one path component) or ** (across components)", text)
		case strings.HasPrefix(rest, "**"):
			p.tokens = append(p.tokens, patternToken{kind: tokenAny})
			rest = rest[2:]
		case rest[0] == '*':
			p.tokens = append(p.tokens, patternToken{kind: tokenStar})
			rest = rest[1:]
		case strings.HasPrefix(rest, userPlaceholder):
			p.tokens = append(p.tokens, patternToken{kind: tokenUser})
			p.hasUser = true
			rest = rest[len(userPlaceholder):]
		case strings.IndexByte(patternChars, rest[0]) >= 0:
			n := 0
			for n < len(rest) && strings.IndexByte(patternChars, rest[n]) >= 0 {
				n++
			}
			p.tokens = append(p.tokens, patternToken{kind: tokenLiteral, literal: rest[:n]})
			rest = rest[n:]
		case rest[0] == '$':
			return p, fmt.Errorf("repository pattern %q: the only placeholder is ${user}", text)
		default:
			return p, fmt.Errorf("repository pattern %q: %q is not allowed; patterns hold lower-case letters, digits, . _ - /, the wildcards * and **, and ${user}", text, rest[:1])
		}
	}
	if p.tokens[0].kind == tokenLiteral {
		p.prefix = p.tokens[0].literal
	}
	return p, nil
}

// firstBytes adds to set every byte a name p matches can start with (all of them when p
// starts with a wildcard or ${user}).
func (p *repoPattern) firstBytes(set *byteSet) {
	if p.prefix == "" {
		*set = fullByteSet
		return
	}
	set.add(p.prefix[0])
}

// byteSet is a set of bytes.
type byteSet [4]uint64

var fullByteSet = byteSet{^uint64(0), ^uint64(0), ^uint64(0), ^uint64(0)}

func (s *byteSet) add(b byte)           { s[b/64] |= 1 << (b % 64) }
func (s *byteSet) contains(b byte) bool { return s[b/64]&(1<<(b%64)) != 0 }

// match reports whether repo matches p for user (ignored unless p has ${user}; callers never
// match such a pattern for an anonymous caller or a name that is not a path component).
func (p *repoPattern) match(repo, user string) bool {
	if !strings.HasPrefix(repo, p.prefix) {
		return false // the common miss, without looking at the tokens
	}
	tokens := p.tokens
	// Literal ends first: most patterns that do not match fail here, in a few nanoseconds.
	for len(tokens) > 0 {
		lit, ok := tokenText(tokens[0], user)
		if !ok {
			break
		}
		if !strings.HasPrefix(repo, lit) {
			return false
		}
		repo, tokens = repo[len(lit):], tokens[1:]
	}
	for len(tokens) > 0 {
		lit, ok := tokenText(tokens[len(tokens)-1], user)
		if !ok {
			break
		}
		if !strings.HasSuffix(repo, lit) {
			return false
		}
		repo, tokens = repo[:len(repo)-len(lit)], tokens[:len(tokens)-1]
	}
	switch {
	case len(tokens) == 0:
		return repo == ""
	case len(tokens) == 1 && tokens[0].kind == tokenAny:
		return true
	case len(tokens) == 1 && tokens[0].kind == tokenStar:
		return strings.IndexByte(repo, '/') < 0
	}
	return matchTokens(tokens, repo, user)
}

// tokenText is the text a literal or ${user} token stands for.
func tokenText(t patternToken, user string) (string, bool) {
	switch t.kind {
	case tokenLiteral:
		return t.literal, true
	case tokenUser:
		return user, true
	}
	return "", false
}

// maxMatchedName bounds the names matchTokens handles; longer ones are never registry names.
const maxMatchedName = registry.MaxNameLength

// matchTokens matches the general case by dynamic programming over positions, from the end:
// after token j, next[i] says whether tokens[j+1:] match s[i:]. It costs len(tokens) ×
// len(s) steps whatever the pattern, never the exponential backtracking of a naive glob.
func matchTokens(tokens []patternToken, s, user string) bool {
	if len(s) > maxMatchedName {
		return false
	}
	var a, b [maxMatchedName + 1]bool
	next, cur := a[:len(s)+1], b[:len(s)+1]
	next[len(s)] = true // no tokens match the empty rest
	for j := len(tokens) - 1; j >= 0; j-- {
		t := tokens[j]
		for i := len(s); i >= 0; i-- {
			switch t.kind {
			case tokenStar:
				cur[i] = next[i] || (i < len(s) && s[i] != '/' && cur[i+1])
			case tokenAny:
				cur[i] = next[i] || (i < len(s) && cur[i+1])
			default:
				lit, _ := tokenText(t, user)
				cur[i] = strings.HasPrefix(s[i:], lit) && next[i+len(lit)]
			}
		}
		next, cur = cur, next
	}
	return next[0]
}

// covers reports whether every repository p matches is also matched by q, as far as a cheap
// syntactic test can tell (false when unsure): it finds rules an earlier rule shadows.
func (q *repoPattern) covers(p *repoPattern) bool {
	switch {
	case q.text == p.text, q.text == "**":
		return true
	case q.hasUser || p.hasUser:
		return false
	}
	// q is LITERAL/** or LITERAL/*: p must start with LITERAL/ and, for *, stay in one component.
	if len(q.tokens) == 2 && q.tokens[0].kind == tokenLiteral && strings.HasSuffix(q.tokens[0].literal, "/") &&
		len(p.tokens) > 0 && p.tokens[0].kind == tokenLiteral {
		prefix := q.tokens[0].literal
		rest, ok := strings.CutPrefix(p.text, prefix)
		switch {
		case !ok || rest == "":
			return false
		case q.tokens[1].kind == tokenAny:
			return true
		case q.tokens[1].kind == tokenStar:
			return !strings.Contains(rest, "/") && !strings.Contains(rest, "**")
		}
	}
	return false
}
