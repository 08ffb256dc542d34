package policy

import (
	"strings"

	"github.com/go-ldap/ldap/v3"
)

// GroupKey is how a group name or DN is compared, the one rule for the policy, the files,
// their editors, the directory and the metrics: a DN (as in Apache's Require ldap-group
// cn=pusher,ou=groups,dc=example,dc=com) in one spelling, without regard to case or the
// spaces around its separators; any other name in lower case.
func GroupKey(name string) string {
	if !strings.Contains(name, "=") {
		return strings.ToLower(name)
	}
	dn, err := ldap.ParseDN(name)
	if err != nil || len(dn.RDNs) == 0 {
		return strings.ToLower(name)
	}
	var b strings.Builder
	for i, rdn := range dn.RDNs {
		if i > 0 {
			b.WriteByte(',')
		}
		for j, a := range rdn.Attributes {
			if j > 0 {
				b.WriteByte('+')
			}
			b.WriteString(strings.ToLower(a.Type) + "=" + ldap.EscapeDN(strings.ToLower(a.Value)))
		}
	}
	return b.String()
}
