package ldap

import (
	"errors"
	"fmt"
	"time"

	goldap "github.com/go-ldap/ldap/v3"
)

// Config is the directory's settings, each set by the --ldap-* flag of its name; README.md,
// "LDAP and Active Directory", maps them to Apache's directives. LDAP is off when URL is empty.
type Config struct {
	URL              string
	BindDN           string
	BindPasswordFile string
	StartTLS         bool
	CAFile           string
	Timeout          time.Duration
	GroupBase        string
	GroupFilter      string
	GroupNameAttr    string
	GroupDepth       int
	parsed           parsedURL // URL parsed by Validate
}

// DefaultGroupFilter finds groupOfNames, groupOfUniqueNames and posixGroup groups.
const DefaultGroupFilter = "(|(member={dn})(uniqueMember={dn})(memberUid={user}))"

// Validate checks the settings (naming the flags in its errors) and prepares them for New.
func (c *Config) Validate() error {
	if c.URL == "" {
		if c.BindDN != "" || c.BindPasswordFile != "" || c.StartTLS || c.CAFile != "" || c.GroupBase != "" {
			return errors.New("--ldap-bind-dn, --ldap-bind-password-file, --ldap-starttls, --ldap-ca and --ldap-group-base need --ldap-url: set it, or remove them")
		}
		return nil
	}
	var errs []error
	u, err := parseURL(c.URL)
	if err != nil {
		errs = append(errs, fmt.Errorf("--ldap-url: %w", err))
	}
	c.parsed = u
	if c.StartTLS && u.scheme == "ldaps" {
		errs = append(errs, errors.New("--ldap-starttls with an ldaps:// URL: the connection is already TLS; remove one of them"))
	}
	if (c.BindDN == "") != (c.BindPasswordFile == "") {
		errs = append(errs, errors.New("--ldap-bind-dn and --ldap-bind-password-file go together: give both, or neither for anonymous searches"))
	}
	if c.BindDN != "" {
		if _, err := goldap.ParseDN(c.BindDN); err != nil {
			errs = append(errs, fmt.Errorf("--ldap-bind-dn %q is not a DN such as cn=registry,ou=services,dc=example,dc=com: %v", c.BindDN, err))
		}
	}
	if c.Timeout <= 0 {
		errs = append(errs, fmt.Errorf("--ldap-timeout %v: want a positive duration such as 5s", c.Timeout))
	}
	if c.GroupBase != "" {
		if _, err := goldap.ParseDN(c.GroupBase); err != nil {
			errs = append(errs, fmt.Errorf("--ldap-group-base %q is not a DN such as ou=groups,dc=example,dc=com: %v", c.GroupBase, err))
		}
	}
	if _, err := goldap.CompileFilter(groupFilterFor(c.GroupFilter, "cn=x", "x")); err != nil {
		errs = append(errs, fmt.Errorf("--ldap-group-filter %q is not an LDAP filter such as %s: %v", c.GroupFilter, DefaultGroupFilter, err))
	}
	if c.GroupNameAttr == "" {
		errs = append(errs, errors.New("--ldap-group-name-attribute is empty: give the attribute naming a group, such as cn"))
	}
	if c.GroupDepth < 0 {
		errs = append(errs, fmt.Errorf("--ldap-group-depth %d: want 0 or more", c.GroupDepth))
	}
	return errors.Join(errs...)
}

// Supplies says what the directory adds to the files: users (with --ldap-url) and groups
// (with --ldap-group-base too).
func (c *Config) Supplies() (users, groups bool) {
	return c.URL != "", c.URL != "" && c.GroupBase != ""
}
