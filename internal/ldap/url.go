package ldap

import (
	"fmt"
	"net/url"
	"strings"

	goldap "github.com/go-ldap/ldap/v3"
)

// parsedURL is an AuthLDAPURL taken apart.
type parsedURL struct {
	scheme    string   // ldap or ldaps
	hosts     []string // host:port, tried in order
	baseDN    string
	attribute string
	scope     int // goldap.ScopeSingleLevel or goldap.ScopeWholeSubtree
	filter    string
}

// parseURL parses Apache's AuthLDAPURL syntax: several hosts separated by spaces, only
// the first attribute counting, scope base taken as sub, a filter without parentheses
// given them (docs/registry-protocol.md, "LDAP as Apache uses it").
func parseURL(s string) (parsedURL, error) {
	u := parsedURL{attribute: "uid", scope: goldap.ScopeWholeSubtree, filter: "(objectClass=*)"}
	scheme, rest, ok := strings.Cut(s, "://")
	if !ok || (scheme != "ldap" && scheme != "ldaps") {
		return u, fmt.Errorf("%q: want ldap://host/basedn?attribute?scope?filter or ldaps://...", s)
	}
	u.scheme = scheme
	hostPart, query, _ := strings.Cut(rest, "/")
	port := "389"
	if scheme == "ldaps" {
		port = "636"
	}
	for _, h := range strings.Fields(hostPart) {
		if !strings.Contains(strings.TrimPrefix(h, "["), ":") || strings.HasSuffix(h, "]") {
			h += ":" + port
		}
		u.hosts = append(u.hosts, h)
	}
	if len(u.hosts) == 0 {
		return u, fmt.Errorf("%q names no host: write ldap://ldap.example.com/dc=example,dc=com?uid", s)
	}
	parts := strings.SplitN(query, "?", 4)
	get := func(i int) (string, error) {
		if i >= len(parts) {
			return "", nil
		}
		return url.PathUnescape(parts[i])
	}
	var err error
	if u.baseDN, err = get(0); err != nil {
		return u, fmt.Errorf("base DN of %q: %v", s, err)
	}
	if _, err := goldap.ParseDN(u.baseDN); err != nil {
		return u, fmt.Errorf("base DN %q: %v", u.baseDN, err)
	}
	if attr, _ := get(1); attr != "" {
		u.attribute, _, _ = strings.Cut(attr, ",") // Apache uses the first attribute
	}
	switch scope, _ := get(2); scope {
	case "", "sub", "base": // Apache takes base for sub
	case "one":
		u.scope = goldap.ScopeSingleLevel
	default:
		return u, fmt.Errorf("scope %q of %q: want one or sub", scope, s)
	}
	filter, err := get(3)
	if err != nil {
		return u, fmt.Errorf("filter of %q: %v", s, err)
	}
	if filter != "" {
		if !strings.HasPrefix(filter, "(") {
			filter = "(" + filter + ")"
		}
		u.filter = filter
	}
	if _, err := goldap.CompileFilter(u.filter); err != nil {
		return u, fmt.Errorf("filter %q: %v", u.filter, err)
	}
	if _, err := goldap.CompileFilter(u.userFilter("x")); err != nil {
		return u, fmt.Errorf("filter %q: %v", u.filter, err)
	}
	return u, nil
}

// userFilter is the search for the user name: (&FILTER(ATTRIBUTE=NAME)), NAME escaped.
func (u parsedURL) userFilter(name string) string {
	return "(&" + u.filter + "(" + u.attribute + "=" + goldap.EscapeFilter(name) + "))"
}

// groupFilterFor puts the escaped user DN and name into a group filter.
func groupFilterFor(filter, dn, user string) string {
	return strings.NewReplacer("{dn}", goldap.EscapeFilter(dn), "{user}", goldap.EscapeFilter(user)).Replace(filter)
}
