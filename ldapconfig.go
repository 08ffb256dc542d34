package main

import (
	"errors"
	"fmt"
	"net/url"
	"strings"
	"time"

	"github.com/go-ldap/ldap/v3"
)

// ldapConfig is the directory's settings; README.md, "LDAP and Active Directory", maps them
// to Apache's directives. LDAP is off when url is empty.
type ldapConfig struct {
	url              string
	bindDN           string
	bindPasswordFile string
	startTLS         bool
	caFile           string
	timeout          time.Duration
	groupBase        string
	groupFilter      string
	groupNameAttr    string
	groupDepth       int
	parsed           ldapURL // url parsed by validate
}

// defaultGroupFilter finds groupOfNames, groupOfUniqueNames and posixGroup groups.
const defaultGroupFilter = "(|(member={dn})(uniqueMember={dn})(memberUid={user}))"

// define adds the directory's flags to fs, for serve and check.
func (c *ldapConfig) define(fs *envFlagSet) {
	fs.stringVar(&c.url, "ldap-url", "", "LDAP directory as in Apache's AuthLDAPURL, ldap[s]://host[:port][ host2...]/basedn?attribute?scope?filter (attribute uid, scope sub, filter (objectClass=*) by default); users the htpasswd file lacks are looked up there; empty: no directory")
	fs.stringVar(&c.bindDN, "ldap-bind-dn", "", "DN the service binds as to search the directory (AuthLDAPBindDN); empty: anonymous searches")
	fs.stringVar(&c.bindPasswordFile, "ldap-bind-password-file", "", "file holding the password of --ldap-bind-dn (AuthLDAPBindPassword), re-read when it changes")
	fs.boolVar(&c.startTLS, "ldap-starttls", false, "upgrade ldap:// connections with StartTLS before binding (needed whenever the directory is not on the same host, unless ldaps://)")
	fs.stringVar(&c.caFile, "ldap-ca", "", "PEM file of the CAs that sign the directory's certificate (the image has no system roots)")
	fs.durationVar(&c.timeout, "ldap-timeout", 5*time.Second, "limit for each dial, search and bind against the directory")
	fs.stringVar(&c.groupBase, "ldap-group-base", "", "DN under which the directory's groups are searched; empty: directory groups are not used")
	fs.stringVar(&c.groupFilter, "ldap-group-filter", defaultGroupFilter, "filter finding a user's groups; {dn} is the user's DN, {user} the name, both escaped")
	fs.stringVar(&c.groupNameAttr, "ldap-group-name-attribute", "cn", "attribute naming a directory group for the policy and --push-group")
	fs.intVar(&c.groupDepth, "ldap-group-depth", 10, "levels of nested groups followed (AuthLDAPMaxSubGroupDepth); 0: only direct membership")
}

// validate checks the settings and parses the URL into c.parsed.
func (c *ldapConfig) validate() error {
	if c.url == "" {
		if c.bindDN != "" || c.bindPasswordFile != "" || c.startTLS || c.caFile != "" || c.groupBase != "" {
			return errors.New("--ldap-bind-dn, --ldap-bind-password-file, --ldap-starttls, --ldap-ca and --ldap-group-base need --ldap-url: set it, or remove them")
		}
		return nil
	}
	var errs []error
	u, err := parseLDAPURL(c.url)
	if err != nil {
		errs = append(errs, fmt.Errorf("--ldap-url: %w", err))
	}
	c.parsed = u
	if c.startTLS && u.scheme == "ldaps" {
		errs = append(errs, errors.New("--ldap-starttls with an ldaps:// URL: the connection is already TLS; remove one of them"))
	}
	if (c.bindDN == "") != (c.bindPasswordFile == "") {
		errs = append(errs, errors.New("--ldap-bind-dn and --ldap-bind-password-file go together: give both, or neither for anonymous searches"))
	}
	if c.bindDN != "" {
		if _, err := ldap.ParseDN(c.bindDN); err != nil {
			errs = append(errs, fmt.Errorf("--ldap-bind-dn %q is not a DN such as cn=registry,ou=services,dc=example,dc=com: %v", c.bindDN, err))
		}
	}
	if c.timeout <= 0 {
		errs = append(errs, fmt.Errorf("--ldap-timeout %v: want a positive duration such as 5s", c.timeout))
	}
	if c.groupBase != "" {
		if _, err := ldap.ParseDN(c.groupBase); err != nil {
			errs = append(errs, fmt.Errorf("--ldap-group-base %q is not a DN such as ou=groups,dc=example,dc=com: %v", c.groupBase, err))
		}
	}
	if _, err := ldap.CompileFilter(groupFilterFor(c.groupFilter, "cn=x", "x")); err != nil {
		errs = append(errs, fmt.Errorf("--ldap-group-filter %q is not an LDAP filter such as %s: %v", c.groupFilter, defaultGroupFilter, err))
	}
	if c.groupNameAttr == "" {
		errs = append(errs, errors.New("--ldap-group-name-attribute is empty: give the attribute naming a group, such as cn"))
	}
	if c.groupDepth < 0 {
		errs = append(errs, fmt.Errorf("--ldap-group-depth %d: want 0 or more", c.groupDepth))
	}
	return errors.Join(errs...)
}

// supplies says what the directory adds to the files, for sources: users (with --ldap-url)
// and groups (with --ldap-group-base too).
func (c *ldapConfig) supplies() (users, groups bool) {
	return c.url != "", c.url != "" && c.groupBase != ""
}

// ldapURL is an AuthLDAPURL taken apart.
type ldapURL struct {
	scheme    string   // ldap or ldaps
	hosts     []string // host:port, tried in order
	baseDN    string
	attribute string
	scope     int // ldap.ScopeSingleLevel or ldap.ScopeWholeSubtree
	filter    string
}

// parseLDAPURL parses Apache's AuthLDAPURL syntax: several hosts separated by spaces, only
// the first attribute counting, scope base taken as sub, a filter without parentheses
// given them (docs/registry-protocol.md, "LDAP as Apache uses it").
func parseLDAPURL(s string) (ldapURL, error) {
	u := ldapURL{attribute: "uid", scope: ldap.ScopeWholeSubtree, filter: "(objectClass=*)"}
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
	if _, err := ldap.ParseDN(u.baseDN); err != nil {
		return u, fmt.Errorf("base DN %q: %v", u.baseDN, err)
	}
	if attr, _ := get(1); attr != "" {
		u.attribute, _, _ = strings.Cut(attr, ",") // Apache uses the first attribute
	}
	switch scope, _ := get(2); scope {
	case "", "sub", "base": // Apache takes base for sub
	case "one":
		u.scope = ldap.ScopeSingleLevel
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
	if _, err := ldap.CompileFilter(u.filter); err != nil {
		return u, fmt.Errorf("filter %q: %v", u.filter, err)
	}
	if _, err := ldap.CompileFilter(u.userFilter("x")); err != nil {
		return u, fmt.Errorf("filter %q: %v", u.filter, err)
	}
	return u, nil
}

// userFilter is the search for the user name: (&FILTER(ATTRIBUTE=NAME)), NAME escaped.
func (u ldapURL) userFilter(name string) string {
	return "(&" + u.filter + "(" + u.attribute + "=" + ldap.EscapeFilter(name) + "))"
}

// groupFilterFor puts the escaped user DN and name into a group filter.
func groupFilterFor(filter, dn, user string) string {
	return strings.NewReplacer("{dn}", ldap.EscapeFilter(dn), "{user}", ldap.EscapeFilter(user)).Replace(filter)
}
