package ldap

import (
	"errors"
	"fmt"
	"net"
	"time"

	goldap "github.com/go-ldap/ldap/v3"
)

// Diagnosis is what Diagnose found, as far as it got.
type Diagnosis struct {
	// Server is scheme://host of the host that answered; "" when none did.
	Server string
	// As says how the service account searches: "bound as DN" or "searching anonymously (no
	// --ldap-bind-dn)", after "StartTLS, " with --ldap-starttls.
	As string
	// DN and User are the test user's entry and its name as the directory spells it (the
	// name logs, X-Forwarded-User and the policy use), when it was found exactly once.
	DN, User string
	// Groups are the test user's directory groups; nil without --ldap-group-base.
	Groups []Group
}

// Diagnose does with the directory what the service does, and says what it found: it
// connects (the URL's hosts in order, with TLS as configured) and binds as the service
// account (or not, for anonymous searches); then, with testUser, it searches that user as a
// login would, without a password, and the user's groups. It never returns the service
// account's password. The error says what failed and what to check; the Diagnosis holds what
// was found before it.
func (d *Directory) Diagnose(testUser string) (Diagnosis, error) {
	var diag Diagnosis
	secret, _, err := d.bindSecret()
	if err != nil {
		return diag, err
	}
	conn, host, err := d.serviceConn(secret)
	switch {
	case err != nil && host == "":
		return diag, fmt.Errorf("cannot connect to %s: %w%s", d.cfg.URL, err, unreachableHint(err, d.cfg.Timeout))
	case err != nil:
		return diag, fmt.Errorf("connected to %s://%s, but %w", d.cfg.parsed.scheme, host, err)
	}
	d.release(conn) // for the searches below
	diag.Server = d.cfg.parsed.scheme + "://" + host
	diag.As = "searching anonymously (no --ldap-bind-dn)"
	if d.cfg.BindDN != "" {
		diag.As = "bound as " + d.cfg.BindDN
	}
	if d.cfg.StartTLS {
		diag.As = "StartTLS, " + diag.As
	}
	if testUser == "" {
		return diag, nil
	}
	scope := "sub"
	if d.cfg.parsed.scope == goldap.ScopeSingleLevel {
		scope = "one"
	}
	search := fmt.Sprintf("%s under %q (scope %s)", d.cfg.parsed.userFilter(testUser), d.cfg.parsed.baseDN, scope)
	e, found, err := d.findUser(testUser)
	switch {
	case err != nil:
		return diag, fmt.Errorf("searching user %q: %w", testUser, err)
	case found == 0:
		return diag, fmt.Errorf("no entry for user %q: searched %s; a login with this name is refused as an unknown user", testUser, search)
	case found > 1:
		return diag, fmt.Errorf("user %q matches several entries: searched %s; a login with this name is refused: make --ldap-url's attribute and filter match one entry per user", testUser, search)
	}
	diag.DN, diag.User = e.dn, e.user
	if d.cfg.GroupBase == "" {
		return diag, nil
	}
	groups, err := d.groupEntries(e.dn, e.user)
	if err != nil {
		return diag, fmt.Errorf("searching the groups of %s: %w", e.dn, err)
	}
	diag.Groups = append([]Group{}, groups...) // searched: not nil, even when empty
	return diag, nil
}

// unreachableHint says what to check when a connection to the directory failed in the
// network (not in TLS, whose errors say what to do themselves).
func unreachableHint(err error, timeout time.Duration) string {
	var netErr net.Error
	switch {
	case !errors.As(err, &netErr):
		return ""
	case netErr.Timeout():
		return fmt.Sprintf(" (no answer within --ldap-timeout %v: check that the directory runs and that --ldap-url names its hosts and ports, or raise --ldap-timeout)", timeout)
	}
	return " (check that the directory runs and that --ldap-url names its hosts and ports)"
}
