package main

import (
	"fmt"
	"github.com/registry-auth/registry-auth/internal/registry"
	"strconv"
	"strings"
)

// identity is who asks: an authenticated user with the groups they belong to, or anonymous (a
// request without any Authorization header; wrong credentials never get this far). The
// policy sees only this and the request, never where users and groups are kept.
type identity struct {
	anonymous bool
	user      string   // the canonical name; empty when anonymous
	groups    []string // the groupKey of each of the user's groups
}

// subjects is who a rule or the catalog applies to.
type subjects struct {
	users         []string // exact, case-sensitive names
	groups        []int    // indexes into accessPolicy.groupNames
	authenticated bool
	anonymous     bool
}

// rule is one compiled rule of the policy: for the callers its subjects match, on the
// repositories its patterns match, it grants exactly grants.
type rule struct {
	position int    // 1-based, in file order
	line     int    // in the policy file; 0 for the built-in policy
	text     string // the rule as written, for explain and the log
	who      subjects
	repos    []repoPattern
	grants   registry.Actions
	first    byteSet // every byte a repository the rule matches can start with
	prefix   string  // a literal every repository the rule matches starts with
}

// accessPolicy is a compiled policy: rules tried in order, the first whose subjects and
// repositories both match deciding, and who may list the catalog. It is immutable and safe
// for concurrent use; matching allocates nothing.
type accessPolicy struct {
	file       string // the policy file, or "" for the built-in rule of --push-group
	rules      []rule
	catalog    subjects
	groupNames []string       // every group a subject names, lower case
	groupIndex map[string]int // groupKey -> index in groupNames
}

// groupBits marks the policy's groups id belongs to, so that each rule's group test is a
// few comparisons of small integers, whatever the number of rules.
type groupBits []uint64

func (p *accessPolicy) groupBits(id identity) groupBits {
	if len(p.groupNames) == 0 || len(id.groups) == 0 {
		return nil
	}
	bits := make(groupBits, (len(p.groupNames)+63)/64)
	for _, g := range id.groups {
		if i, ok := p.groupIndex[g]; ok {
			bits[i/64] |= 1 << (i % 64)
		}
	}
	return bits
}

func (b groupBits) has(i int) bool { return i/64 < len(b) && b[i/64]&(1<<(i%64)) != 0 }

func (s *subjects) match(id identity, bits groupBits) bool {
	if id.anonymous {
		return s.anonymous
	}
	if s.authenticated {
		return true
	}
	for _, u := range s.users {
		if u == id.user {
			return true
		}
	}
	for _, g := range s.groups {
		if bits.has(g) {
			return true
		}
	}
	return false
}

// matchRepo reports whether one of r's patterns matches repo for id. A pattern with ${user}
// never matches an anonymous caller, nor a user whose name is not a repository path
// component (userIsComponent), so the rule is skipped for them.
func (r *rule) matchRepo(id identity, repo string, userIsComponent bool) bool {
	for i := range r.repos {
		p := &r.repos[i]
		if p.hasUser && (id.anonymous || !userIsComponent) {
			continue
		}
		if p.match(repo, id.user) {
			return true
		}
	}
	return false
}

// ruling is how one access of a request was decided.
type ruling struct {
	access  registry.Access
	granted registry.Actions
	rule    *rule // the rule that decided; nil when none matched
}

// verdict is the policy's answer for one request.
type verdict struct {
	allowed bool
	reason  string // snake_case, for logs and metrics
	rulings [2]ruling
	n       int // rulings in use
}

// decide says whether id may do what req asks: every action it needs granted on every
// repository it touches. The base route /v2/ is open to every valid user and to no anonymous
// caller (docker sends credentials only after a challenge there); the catalog to the
// catalog's subjects.
func (p *accessPolicy) decide(id identity, req registry.Request) verdict {
	var v verdict
	bits := p.groupBits(id)
	switch req.Route {
	case registry.RouteBase:
		if id.anonymous {
			v.reason = "anonymous_base"
			return v
		}
		v.allowed, v.reason = true, "valid_user"
		return v
	case registry.RouteCatalog:
		if p.catalog.match(id, bits) {
			v.allowed, v.reason = true, "catalog_granted"
		} else {
			v.reason = "catalog_not_granted"
		}
		return v
	}
	accesses, n := req.Accesses()
	if n == 0 {
		v.reason = "nothing_to_grant" // a route that names no repository: never allowed
		return v
	}
	userIsComponent := registry.IsNameComponent(id.user)
	v.allowed, v.reason = true, "granted"
	for i, a := range accesses[:n] {
		r := &v.rulings[i]
		r.access = a
		r.granted, r.rule = p.grant(id, bits, a.Repository, userIsComponent)
		if a.Needs&^r.granted != 0 && v.allowed {
			v.allowed = false
			switch {
			case i > 0:
				v.reason = "mount_source_not_readable"
			case r.rule == nil:
				v.reason = "no_rule_matched"
			default:
				v.reason = "not_granted"
			}
		}
	}
	v.n = n
	return v
}

// grant returns the actions the first matching rule grants id on repo, and that rule.
func (p *accessPolicy) grant(id identity, bits groupBits, repo string, userIsComponent bool) (registry.Actions, *rule) {
	for i := range p.rules {
		r := &p.rules[i]
		// repo is never empty: names have at least one character.
		// Cheapest test first: one byte, the caller's subjects, a common prefix, the patterns.
		if r.first.contains(repo[0]) && r.who.match(id, bits) && strings.HasPrefix(repo, r.prefix) && r.matchRepo(id, repo, userIsComponent) {
			return r.grants, r
		}
	}
	return 0, nil
}

// where names a rule for people: "policy.yaml:12 (rule 3)", or "built-in rule 1".
func (p *accessPolicy) where(r *rule) string {
	var b strings.Builder
	p.writeWhere(&b, r)
	return b.String()
}

func (p *accessPolicy) writeWhere(b *strings.Builder, r *rule) {
	switch {
	case r == nil:
		b.WriteString("no rule matched")
	case p.file == "":
		b.WriteString("built-in rule ")
		b.WriteString(strconv.Itoa(r.position))
		b.WriteString(" (--push-group)")
	default:
		b.WriteString(p.file)
		b.WriteString(":")
		b.WriteString(strconv.Itoa(r.line))
		b.WriteString(" (rule ")
		b.WriteString(strconv.Itoa(r.position))
		b.WriteString(")")
	}
}

// explainRulings is one line per access: what was needed, what was granted, by which rule.
// It runs for every decision's log line, hence no fmt.
func (p *accessPolicy) explainRulings(v verdict) string {
	if v.n == 0 {
		return "" // base and catalog: no repository
	}
	var b strings.Builder
	b.Grow(96)
	for i, r := range v.rulings[:v.n] {
		if i > 0 {
			b.WriteString("; ")
		}
		b.WriteString(r.access.Repository)
		b.WriteString(" needs ")
		b.WriteString(r.access.Needs.String())
		b.WriteString(", granted ")
		b.WriteString(r.granted.String())
		b.WriteString(" by ")
		p.writeWhere(&b, r.rule)
	}
	return b.String()
}

// builtinPolicy is the Apache recipe's rule, the policy when no --policy file is given: the
// push group may pull, push and delete everywhere, every valid user may pull and list the
// catalog.
func builtinPolicy(pushGroup string) *accessPolicy {
	group := groupKey(pushGroup) // a directory group may be named by its DN
	return &accessPolicy{
		rules: []rule{
			{position: 1, text: fmt.Sprintf("{subjects: [group:%s], repositories: [\"**\"], actions: [pull, push, delete]}", pushGroup),
				who: subjects{groups: []int{0}}, repos: []repoPattern{anyRepository()}, grants: registry.Pull | registry.Push | registry.Delete, first: fullByteSet},
			{position: 2, text: `{subjects: [authenticated], repositories: ["**"], actions: [pull]}`,
				who: subjects{authenticated: true}, repos: []repoPattern{anyRepository()}, grants: registry.Pull, first: fullByteSet},
		},
		catalog:    subjects{authenticated: true},
		groupNames: []string{group},
		groupIndex: map[string]int{group: 0},
	}
}

func anyRepository() repoPattern {
	p, _ := compilePattern("**")
	return p
}
