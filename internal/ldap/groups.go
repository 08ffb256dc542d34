package ldap

import (
	"strings"

	goldap "github.com/go-ldap/ldap/v3"

	"github.com/registry-auth/registry-auth/internal/policy"
)

// groupsOf is the keys (policy.GroupKey) of the groups of the user with dn and name: each
// group's DN and name.
func (d *Directory) groupsOf(dn, user string) ([]string, error) {
	groups, err := d.groupEntries(dn, user)
	if err != nil {
		return nil, err
	}
	var keys []string
	for _, g := range groups {
		keys = append(keys, policy.GroupKey(g.DN))
		if g.Name != "" {
			keys = append(keys, policy.GroupKey(g.Name))
		}
	}
	return keys, nil
}

// Group is a group of a user as the directory spells it.
type Group struct {
	DN    string
	Name  string // its --ldap-group-name-attribute, "" when it has none
	Depth int    // 0: it holds the user directly; n: through n nested groups
}

// groupEntries is the groups of the user with dn and name: those --ldap-group-filter finds
// under --ldap-group-base, then, up to --ldap-group-depth levels, the groups holding those
// through member and uniqueMember.
func (d *Directory) groupEntries(dn, user string) ([]Group, error) {
	if d.cfg.GroupBase == "" {
		return nil, nil
	}
	var groups []Group
	seen := map[string]bool{}
	filter := groupFilterFor(d.cfg.GroupFilter, dn, user)
	for level := 0; level <= d.cfg.GroupDepth && filter != ""; level++ {
		res, err := d.search(&goldap.SearchRequest{
			BaseDN: d.cfg.GroupBase, Scope: goldap.ScopeWholeSubtree, DerefAliases: goldap.NeverDerefAliases,
			TimeLimit: d.timeLimit(), Filter: filter, Attributes: []string{d.cfg.GroupNameAttr},
		})
		if err != nil {
			return nil, err
		}
		var next []string
		for _, e := range res.Entries {
			key := policy.GroupKey(e.DN)
			if seen[key] {
				continue // a cycle, or a group reached twice
			}
			seen[key] = true
			groups = append(groups, Group{DN: e.DN, Name: e.GetAttributeValue(d.cfg.GroupNameAttr), Depth: level})
			esc := goldap.EscapeFilter(e.DN)
			next = append(next, "(member="+esc+")(uniqueMember="+esc+")")
		}
		filter = ""
		if len(next) > 0 {
			filter = "(|" + strings.Join(next, "") + ")"
		}
	}
	return groups, nil
}
