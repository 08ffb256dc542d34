package policy

import (
	"fmt"
	"strings"

	"github.com/registry-auth/registry-auth/internal/registry"
)

// Scopes narrow what the rules grant an identity, never widen it: on a repository the
// identity gets the actions the deciding rule grants that its scopes also allow, and it may
// list the catalog only if a rule of the catalog names it and a scope says "catalog". A
// robot token carries its scopes (README.md, "Robot tokens"). Scopes are immutable and safe
// for concurrent use; matching allocates nothing.
type Scopes struct {
	list    []scope
	catalog bool
	text    string // as written, space-separated, for explain and the log
}

// scope allows actions on the repositories its pattern matches.
type scope struct {
	actions registry.Actions
	pattern repoPattern
}

// ScopeSyntax says how a scope is written, for errors and --help.
const ScopeSyntax = `ACTIONS:PATTERN (such as pull:team/* or pull,push:team/**), or catalog`

// ParseScopes compiles scopes written as ACTIONS:PATTERN, where ACTIONS is pull, push and
// delete joined by commas and PATTERN a repository pattern as in the policy file but for
// ${user}, or the word catalog. It refuses an empty list: a token that may do nothing is a
// mistake.
func ParseScopes(texts []string) (*Scopes, error) {
	if len(texts) == 0 {
		return nil, fmt.Errorf("no scope: give at least one, %s", ScopeSyntax)
	}
	s := &Scopes{text: strings.Join(texts, " ")}
	for _, text := range texts {
		if text == "catalog" {
			s.catalog = true
			continue
		}
		names, pattern, ok := strings.Cut(text, ":")
		if !ok {
			return nil, fmt.Errorf("scope %q: write %s", text, ScopeSyntax)
		}
		var sc scope
		for _, name := range strings.Split(names, ",") {
			a, ok := registry.ParseAction(name)
			if !ok {
				return nil, fmt.Errorf("scope %q: unknown action %q: the actions are pull, push and delete, joined by commas", text, name)
			}
			sc.actions |= a
		}
		p, err := compilePattern(pattern)
		if err != nil {
			return nil, fmt.Errorf("scope %q: %v", text, err)
		}
		if p.hasUser {
			// A token has no user of its own whose name could stand in a repository.
			return nil, fmt.Errorf("scope %q: ${user} has no meaning in a scope: name the repositories", text)
		}
		sc.pattern = p
		s.list = append(s.list, sc)
	}
	return s, nil
}

// allows is the actions the scopes allow on repo.
func (s *Scopes) allows(repo string) registry.Actions {
	var a registry.Actions
	for i := range s.list {
		if sc := &s.list[i]; a&sc.actions != sc.actions && sc.pattern.match(repo, "") {
			a |= sc.actions
		}
	}
	return a
}

// String is the scopes as written, separated by spaces.
func (s *Scopes) String() string { return s.text }
