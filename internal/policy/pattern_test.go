package policy

import (
	"github.com/registry-auth/registry-auth/internal/registry"
	"strings"
	"testing"
)

// TestPatternMatch: the matching rules of the policy file's repository patterns.
func TestPatternMatch(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		pattern, repo, user string
		want                bool
	}{
		{"app", "app", "", true},
		{"app", "app2", "", false},     // a literal is the whole name
		{"app", "team/app", "", false}, // and anchored at the start
		{"team/*", "team/app", "", true},
		{"team/*", "team/app/x", "", false}, // * stays in one component
		{"team/*", "team", "", false},
		{"team/**", "team/app", "", true},
		{"team/**", "team/app/x/y", "", true}, // ** crosses components
		{"team/**", "team", "", false},        // but team/** needs something after team/
		{"team/**", "teamx/app", "", false},
		{"**", "anything/at/all", "", true},
		{"*", "app", "", true},
		{"*", "team/app", "", false},
		{"*/app", "team/app", "", true},
		{"*/app", "a/b/app", "", false},
		{"**/app", "a/b/app", "", true},
		{"**/app", "app", "", false},
		{"team/*-tools", "team/ci-tools", "", true},
		{"team/*-tools", "team/ci/x-tools", "", false},
		{"a*b*c", "aXbYc", "", true},
		{"a*b*c", "aXbY/c", "", false},
		{"a**b*c", "aX/YbZc", "", true},
		{"a**b*c", "aXbZ/c", "", false},
		{"${user}/**", "alice/app", "alice", true},
		{"${user}/**", "alice/app", "bob", false},
		{"${user}/**", "alice2/app", "alice", false},
		{"${user}", "alice", "alice", true},
		{"home/${user}-*", "home/alice-dev", "alice", true},
		{"home/${user}-*", "home/alice-dev/x", "alice", false},
		{"**/${user}/*", "x/y/alice/app", "alice", true},
		{"**/${user}/*", "x/y/bob/app", "alice", false},
	} {
		p, err := compilePattern(tt.pattern)
		if err != nil {
			t.Fatalf("compilePattern(%q): %v", tt.pattern, err)
		}
		if got := p.match(tt.repo, tt.user); got != tt.want {
			t.Errorf("%q matches %q for user %q: got %v, want %v", tt.pattern, tt.repo, tt.user, got, tt.want)
		}
	}
}

// TestPatternErrors: anything but name characters, the wildcards and ${user} is refused at
// load, with a message that says what is allowed.
func TestPatternErrors(t *testing.T) {
	t.Parallel()
	for _, pattern := range []string{"", "Team/**", "team/[ab]", "team/a?", "***", "team/***", "${account}/**", "$user", "team app", "team/\\*", "é"} {
		if _, err := compilePattern(pattern); err == nil {
			t.Errorf("compilePattern(%q): got no error", pattern)
		} else if !strings.Contains(err.Error(), "pattern") {
			t.Errorf("compilePattern(%q): error %q does not say it is about a pattern", pattern, err)
		}
	}
}

// TestPatternCostIsLinear: a pattern built to make a backtracking glob explode still answers
// on the longest name (a run of minutes with naive backtracking).
func TestPatternCostIsLinear(t *testing.T) {
	t.Parallel()
	p, err := compilePattern("a**a**a**a**a**a**a**a**b")
	if err != nil {
		t.Fatal(err)
	}
	name := strings.Repeat("a", registry.MaxNameLength)
	if p.match(name, "") {
		t.Errorf("%q matched %d a's without a b", p.text, registry.MaxNameLength)
	}
}

// TestPatternCovers: the syntactic test behind check's "shadowed rule" warning.
func TestPatternCovers(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		q, p string
		want bool
	}{
		{"**", "team/app", true},
		{"team/**", "team/app", true},
		{"team/**", "team/*/x", true},
		{"team/**", "team", false},
		{"team/**", "teams/app", false},
		{"team/*", "team/app", true},
		{"team/*", "team/a*", true},
		{"team/*", "team/app/x", false},
		{"team/*", "team/**", false},
		{"app", "app", true},
		{"app", "app2", false},
		{"${user}/**", "${user}/**", true},
		{"${user}/**", "alice/x", false},
		{"*", "app", false}, // true, but beyond the cheap test: no warning rather than a wrong one
	} {
		q, _ := compilePattern(tt.q)
		p, _ := compilePattern(tt.p)
		if got := q.covers(&p); got != tt.want {
			t.Errorf("%q covers %q: got %v, want %v", tt.q, tt.p, got, tt.want)
		}
	}
}
