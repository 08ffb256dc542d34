// Package policy is who may do what where: the policy file (its YAML, patterns and line-numbered
// problems), the built-in rule of --push-group, the decision for an identity and a registry
// request, the text that explains it, and GroupKey, the one rule by which every part of
// registry-auth compares group names. It sees identities and requests, never where users
// and groups are kept.
package policy

import (
	"fmt"
	"github.com/registry-auth/registry-auth/internal/registry"
	"strconv"
	"strings"
)

// Identity is who asks: an authenticated user with the groups they belong to, or anonymous (a
// request without any Authorization header; wrong credentials never get this far). The
// policy sees only this and the request, never where users and groups are kept.
type Identity struct {
	Anonymous bool
	User      string   // the canonical name; empty when anonymous
	Groups    []string // the GroupKey of each of the user's groups
	// Scopes, when not nil, narrow what the rules grant (a robot token's).
	Scopes *Scopes
}

// subjects is who a rule or the catalog applies to.
type subjects struct {
	users         []string // exact, case-sensitive names
	groups        []int    // indexes into Policy.groupNames
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

// Policy is a compiled policy: rules tried in order, the first whose subjects and
// repositories both match deciding, and who may list the catalog. It is immutable and safe
// for concurrent use; matching allocates nothing.
type Policy struct {
	file       string // the policy file, or "" for the built-in rule of --push-group
	rules      []rule
	catalog    subjects
	groupNames []string       // every group a subject names, lower case
	groupIndex map[string]int // GroupKey -> index in groupNames
}

// groupBits marks the policy's groups id belongs to, so that each rule's group test is a
// few comparisons of small integers, whatever the number of rules.
type groupBits []uint64

func (p *Policy) groupBits(id Identity) groupBits {
	if len(p.groupNames) == 0 || len(id.Groups) == 0 {
		return nil
	}
	bits := make(groupBits, (len(p.groupNames)+63)/64)
	for _, g := range id.Groups {
		if i, ok := p.groupIndex[g]; ok {
			bits[i/64] |= 1 << (i % 64)
		}
	}
	return bits
}

func (b groupBits) has(i int) bool { return i/64 < len(b) && b[i/64]&(1<<(i%64)) != 0 }

func (s *subjects) match(id Identity, bits groupBits) bool {
	if id.Anonymous {
		return s.anonymous
	}
	if s.authenticated {
		return true
	}
	for _, u := range s.users {
		if u == id.User {
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
func (r *rule) matchRepo(id Identity, repo string, userIsComponent bool) bool {
	for i := range r.repos {
		p := &r.repos[i]
		if p.hasUser && (id.Anonymous || !userIsComponent) {
			continue
		}
		if p.match(repo, id.User) {
			return true
		}
	}
	return false
}

// Ruling is how one access of a request was decided.
type Ruling struct {
	Access  registry.Access
	Granted registry.Actions // what the rule grants and, for a scoped identity, the scopes allow
	rule    *rule            // the rule that decided; nil when none matched
	// scoped: the identity has scopes; ruleGrants is what the rule alone grants.
	scoped     bool
	ruleGrants registry.Actions
}

// Narrowed reports whether the identity's scopes took away some of what the rule grants,
// and what the rule alone grants.
func (r Ruling) Narrowed() (ruleGrants registry.Actions, narrowed bool) {
	return r.ruleGrants, r.scoped && r.ruleGrants != r.Granted
}

// Text is the deciding rule as written, "" when no rule matched.
func (r Ruling) Text() string {
	if r.rule == nil {
		return ""
	}
	return r.rule.text
}

// Verdict is the policy's answer for one request.
type Verdict struct {
	Allowed bool
	Reason  string // snake_case, for logs and metrics
	rulings [2]Ruling
	n       int // rulings in use
}

// Rulings are the verdict's rulings, one per repository the request touches (none for the
// base route and the catalog).
func (v *Verdict) Rulings() []Ruling { return v.rulings[:v.n] }

// Decide says whether id may do what req asks: every action it needs granted on every
// repository it touches. The base route /v2/ is open to every valid user and to no anonymous
// caller (docker sends credentials only after a challenge there); the catalog to the
// catalog's subjects. An identity with Scopes gets no more than they allow.
func (p *Policy) Decide(id Identity, req registry.Request) Verdict {
	var v Verdict
	bits := p.groupBits(id)
	switch req.Route {
	case registry.RouteBase:
		if id.Anonymous {
			v.Reason = "anonymous_base"
			return v
		}
		v.Allowed, v.Reason = true, "valid_user"
		return v
	case registry.RouteCatalog:
		switch {
		case !p.catalog.match(id, bits):
			v.Reason = "catalog_not_granted"
		case id.Scopes != nil && !id.Scopes.catalog:
			v.Reason = "catalog_outside_scope"
		default:
			v.Allowed, v.Reason = true, "catalog_granted"
		}
		return v
	}
	accesses, n := req.Accesses()
	if n == 0 {
		v.Reason = "nothing_to_grant" // a route that names no repository: never allowed
		return v
	}
	userIsComponent := registry.IsNameComponent(id.User)
	v.Allowed, v.Reason = true, "granted"
	for i, a := range accesses[:n] {
		r := &v.rulings[i]
		r.Access = a
		r.Granted, r.rule = p.grant(id, bits, a.Repository, userIsComponent)
		r.ruleGrants = r.Granted
		if id.Scopes != nil {
			r.scoped = true
			r.Granted &= id.Scopes.allows(a.Repository)
		}
		if a.Needs&^r.Granted != 0 && v.Allowed {
			v.Allowed = false
			switch {
			case i > 0:
				v.Reason = "mount_source_not_readable"
			case r.rule == nil:
				v.Reason = "no_rule_matched"
			case a.Needs&^r.ruleGrants == 0:
				v.Reason = "outside_token_scope"
			default:
				v.Reason = "not_granted"
			}
		}
	}
	v.n = n
	return v
}

// grant returns the actions the first matching rule grants id on repo, and that rule.
func (p *Policy) grant(id Identity, bits groupBits, repo string, userIsComponent bool) (registry.Actions, *rule) {
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

// Where names the rule of a ruling for people: "policy.yaml:12 (rule 3)", "built-in rule 1",
// or "no rule matched".
func (p *Policy) Where(r Ruling) string {
	var b strings.Builder
	p.writeWhere(&b, r.rule)
	return b.String()
}

// File is the policy file the policy was read from, "" for the built-in rule of --push-group.
func (p *Policy) File() string { return p.file }

// Len is the number of rules.
func (p *Policy) Len() int { return len(p.rules) }

func (p *Policy) writeWhere(b *strings.Builder, r *rule) {
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

// Explain is one line per access: what was needed, what was granted, by which rule.
// It runs for every decision's log line, hence no fmt.
func (p *Policy) Explain(v Verdict) string {
	if v.n == 0 {
		return "" // base and catalog: no repository
	}
	var b strings.Builder
	b.Grow(96)
	for i, r := range v.rulings[:v.n] {
		if i > 0 {
			b.WriteString("; ")
		}
		b.WriteString(r.Access.Repository)
		b.WriteString(" needs ")
		b.WriteString(r.Access.Needs.String())
		b.WriteString(", granted ")
		b.WriteString(r.Granted.String())
		b.WriteString(" by ")
		p.writeWhere(&b, r.rule)
		if rg, narrowed := r.Narrowed(); narrowed {
			b.WriteString(", narrowed from ")
			b.WriteString(rg.String())
			b.WriteString(" by the token's scopes")
		}
	}
	return b.String()
}

// Builtin is the Apache recipe's rule, the policy when no --policy file is given: the
// push group may pull, push and delete everywhere, every valid user may pull and list the
// catalog.
func Builtin(pushGroup string) *Policy {
	group := GroupKey(pushGroup) // a directory group may be named by its DN
	return &Policy{
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

// Named is the users and groups (each as GroupKey) that a rule names, on its line; the
// catalog's are on line 0.
type Named struct {
	Line   int
	Users  []string
	Groups []string
}

// Names lists what each rule names, in file order, then what the catalog names: for the
// loader's warnings about subjects no file knows.
func (p *Policy) Names() []Named {
	named := func(line int, s subjects) Named {
		n := Named{Line: line, Users: s.users}
		for _, g := range s.groups {
			n.Groups = append(n.Groups, p.groupNames[g])
		}
		return n
	}
	var all []Named
	for i := range p.rules {
		all = append(all, named(p.rules[i].line, p.rules[i].who))
	}
	return append(all, named(0, p.catalog))
}
