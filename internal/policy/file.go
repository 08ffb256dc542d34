package policy

import (
	"bytes"
	"errors"
	"fmt"
	"github.com/registry-auth/registry-auth/internal/registry"
	"io"
	"slices"
	"strings"

	"go.yaml.in/yaml/v3"
)

// policyDocument is the policy file as written (README.md, "Access policy"). Pointers tell a
// missing key from an empty list: `actions: []` is an explicit deny, no `actions` a mistake.
type policyDocument struct {
	Rules   *[]ruleDocument `yaml:"rules"`
	Catalog []string        `yaml:"catalog"`
}

type ruleDocument struct {
	Subjects     []string  `yaml:"subjects"`
	Repositories []string  `yaml:"repositories"`
	Actions      *[]string `yaml:"actions"`
}

// Warning is a problem of a policy file that does not stop it from loading, on its line.
type Warning struct {
	Line    int
	Message string
}

// Parse parses and compiles a policy file. Its error lists every problem that stops the
// file from loading, each with its line; the problems it returns besides are warnings that
// need no other file (push without pull, shadowed rules). It is pure: name only labels
// messages.
func Parse(data []byte, name string) (*Policy, []Warning, error) {
	var doc policyDocument
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true) // an unknown key is an error, not a rule silently ignored
	if err := dec.Decode(&doc); err != nil {
		if errors.Is(err, io.EOF) {
			return nil, nil, fmt.Errorf("%s: the file is empty: a policy lists its rules under \"rules:\" (write \"rules: []\" to grant nothing)", name)
		}
		return nil, nil, fmt.Errorf("%s: %s", name, yamlMessages.Replace(strings.TrimPrefix(err.Error(), "yaml: ")))
	}
	if doc.Rules == nil {
		return nil, nil, fmt.Errorf("%s: no \"rules:\" key: a policy lists its rules there (write \"rules: []\" to grant nothing)", name)
	}
	var root yaml.Node
	if err := yaml.Unmarshal(data, &root); err != nil { // decoded above, so it cannot fail
		return nil, nil, fmt.Errorf("%s: %w", name, err)
	}
	lines := policyLines(&root)

	p := &Policy{file: name, groupIndex: map[string]int{}}
	var errs []error
	fail := func(line int, format string, args ...any) {
		errs = append(errs, fmt.Errorf("%s:%d: %s", name, line, fmt.Sprintf(format, args...)))
	}
	for i, rd := range *doc.Rules {
		rl := lines.rule(i)
		r := rule{position: i + 1, line: rl.line}
		switch {
		case len(rd.Subjects) == 0:
			fail(rl.line, "rule %d has no subjects: name who it is for (user:NAME, group:NAME, authenticated, anonymous)", i+1)
		case len(rd.Repositories) == 0:
			fail(rl.line, "rule %d has no repositories: name them (\"**\" for every repository)", i+1)
		case rd.Actions == nil:
			fail(rl.line, "rule %d has no actions: list them (pull, push, delete), or write \"actions: []\" to deny", i+1)
		}
		for j, s := range rd.Subjects {
			if err := p.addSubject(&r.who, s); err != nil {
				fail(rl.at("subjects", j), "%v", err)
			}
		}
		for j, text := range rd.Repositories {
			pat, err := compilePattern(text)
			if err != nil {
				fail(rl.at("repositories", j), "%v", err)
				continue
			}
			if len(r.repos) == 0 {
				r.prefix = pat.prefix
			}
			r.prefix = commonPrefix(r.prefix, pat.prefix)
			r.repos = append(r.repos, pat)
			pat.firstBytes(&r.first)
		}
		if rd.Actions != nil {
			for j, a := range *rd.Actions {
				act, ok := registry.ParseAction(a)
				if !ok {
					fail(rl.at("actions", j), "unknown action %q: the actions are pull, push and delete", a)
				}
				r.grants |= act
			}
		}
		r.text = ruleText(rd)
		p.rules = append(p.rules, r)
	}
	for j, s := range doc.Catalog {
		if err := p.addSubject(&p.catalog, s); err != nil {
			fail(lines.catalogAt(j), "catalog: %v", err)
		}
	}
	if len(errs) > 0 {
		return nil, nil, errors.Join(errs...)
	}
	return p, p.selfWarnings(), nil
}

// yamlMessages puts yaml.v3's Go type names in the file's terms.
var yamlMessages = strings.NewReplacer(
	"in type policy.policyDocument", "at the top of the policy (the keys are rules and catalog)",
	"in type policy.ruleDocument", "in a rule (the keys are subjects, repositories and actions)",
	"into policy.policyDocument", "into the policy (a mapping with rules and catalog)",
	"into policy.ruleDocument", "into a rule (a mapping with subjects, repositories and actions)",
)

// addSubject parses one subject into s, interning group names in the policy's table.
func (p *Policy) addSubject(s *subjects, text string) error {
	kind, name, hasName := strings.Cut(text, ":")
	switch {
	case text == "authenticated":
		s.authenticated = true
	case text == "anonymous":
		s.anonymous = true
	case hasName && kind == "user" && name != "":
		s.users = append(s.users, name)
	case hasName && kind == "group" && name != "":
		g := GroupKey(name) // without regard to case, as in Apache; a DN in one spelling
		i, ok := p.groupIndex[g]
		if !ok {
			i = len(p.groupNames)
			p.groupNames = append(p.groupNames, g)
			p.groupIndex[g] = i
		}
		s.groups = append(s.groups, i)
	default:
		return fmt.Errorf("unknown subject %q: write user:NAME, group:NAME, authenticated or anonymous", text)
	}
	return nil
}

func commonPrefix(a, b string) string {
	n := 0
	for n < len(a) && n < len(b) && a[n] == b[n] {
		n++
	}
	return a[:n]
}

// ruleText writes a rule back in the file's flow style, for explain and logs.
func ruleText(rd ruleDocument) string {
	quote := func(items []string) string {
		q := make([]string, len(items))
		for i, s := range items {
			q[i] = fmt.Sprintf("%q", s)
		}
		return strings.Join(q, ", ")
	}
	var actions []string
	if rd.Actions != nil {
		actions = *rd.Actions
	}
	return fmt.Sprintf("{subjects: [%s], repositories: [%s], actions: [%s]}",
		strings.Join(rd.Subjects, ", "), quote(rd.Repositories), strings.Join(actions, ", "))
}

// selfWarnings are the problems the policy shows on its own: rules that grant push without
// pull (clients need both), and rules an earlier rule shadows (same subjects, and a pattern
// covering each of its patterns, so they can never decide anything).
func (p *Policy) selfWarnings() []Warning {
	var ps []Warning
	warn := func(line int, format string, args ...any) {
		ps = append(ps, Warning{line, fmt.Sprintf(format, args...)})
	}
	for i := range p.rules {
		r := &p.rules[i]
		if r.grants&registry.Push != 0 && r.grants&registry.Pull == 0 {
			warn(r.line, "rule %d grants push without pull: clients pull what they push (blob checks, manifests), so pushes will fail", r.position)
		}
		for j := range p.rules[:i] {
			if earlier := &p.rules[j]; sameSubjects(earlier.who, r.who) && coversAll(earlier.repos, r.repos) {
				warn(r.line, "rule %d can never match: rule %d (line %d) has the same subjects and covers all of its repositories", r.position, earlier.position, earlier.line)
				break
			}
		}
	}
	return ps
}

func sameSubjects(a, b subjects) bool {
	canon := func(s subjects) string {
		users := slices.Clone(s.users)
		slices.Sort(users)
		groups := slices.Clone(s.groups)
		slices.Sort(groups)
		return fmt.Sprint(s.authenticated, s.anonymous, slices.Compact(users), slices.Compact(groups))
	}
	return canon(a) == canon(b)
}

func coversAll(earlier, later []repoPattern) bool {
	for i := range later {
		if !slices.ContainsFunc(earlier, func(q repoPattern) bool { return q.covers(&later[i]) }) {
			return false
		}
	}
	return true
}

// policyLines finds where things are in the file, for messages: yaml.v3 reports lines only
// for its own syntax and type errors.
type policyLineMap struct {
	rules   []ruleLines
	catalog []int
	top     int
}

type ruleLines struct {
	line  int
	items map[string][]int // key -> line of each list item
}

func policyLines(root *yaml.Node) policyLineMap {
	var m policyLineMap
	if root.Kind != yaml.DocumentNode || len(root.Content) == 0 {
		return m
	}
	top := root.Content[0]
	m.top = top.Line
	for k := 0; k+1 < len(top.Content); k += 2 {
		key, value := top.Content[k], top.Content[k+1]
		switch key.Value {
		case "rules":
			for _, item := range value.Content {
				rl := ruleLines{line: item.Line, items: map[string][]int{}}
				for f := 0; f+1 < len(item.Content); f += 2 {
					for _, v := range item.Content[f+1].Content {
						rl.items[item.Content[f].Value] = append(rl.items[item.Content[f].Value], v.Line)
					}
				}
				m.rules = append(m.rules, rl)
			}
		case "catalog":
			for _, v := range value.Content {
				m.catalog = append(m.catalog, v.Line)
			}
		}
	}
	return m
}

func (m policyLineMap) rule(i int) ruleLines {
	if i < len(m.rules) {
		return m.rules[i]
	}
	return ruleLines{line: m.top}
}

func (r ruleLines) at(key string, j int) int {
	if ls := r.items[key]; j < len(ls) {
		return ls[j]
	}
	return r.line
}

func (m policyLineMap) catalogAt(j int) int {
	if j < len(m.catalog) {
		return m.catalog[j]
	}
	return m.top
}
