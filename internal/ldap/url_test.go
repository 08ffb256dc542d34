package ldap

import (
	"strings"
	"testing"
)

// TestParseURL: Apache's AuthLDAPURL syntax.
func TestParseURL(t *testing.T) {
	t.Parallel()
	tests := []struct {
		url                    string
		hosts                  string
		base, attribute, scope string
		filter, err            string
	}{
		{url: "ldap://ldap.example.com/dc=example,dc=com", hosts: "ldap.example.com:389", base: "dc=example,dc=com", attribute: "uid", scope: "sub", filter: "(objectClass=*)"},
		{url: "ldaps://a b:1636/ou=people,dc=x?sAMAccountName,cn?one?objectClass=user", hosts: "a:636 b:1636", base: "ou=people,dc=x", attribute: "sAMAccountName", scope: "one", filter: "(objectClass=user)"},
		{url: "ldap://[::1]:10389/dc=x??base?(objectClass=person)", hosts: "[::1]:10389", base: "dc=x", attribute: "uid", scope: "sub", filter: "(objectClass=person)"},
		{url: "ldap://h/dc=x%2Cdc=y?uid", hosts: "h:389", base: "dc=x,dc=y", attribute: "uid", scope: "sub", filter: "(objectClass=*)"},
		{url: "http://h/dc=x", err: "want ldap://"},
		{url: "ldap:///dc=x", err: "names no host"},
		{url: "ldap://h/dc=x?uid?children", err: "want one or sub"},
		{url: "ldap://h/dc=x?uid?sub?(objectClass=*", err: "filter"},
		{url: "ldap://h/not a dn", err: "base DN"},
	}
	for _, tt := range tests {
		u, err := parseURL(tt.url)
		if tt.err != "" {
			if err == nil || !strings.Contains(err.Error(), tt.err) {
				t.Errorf("%s: got error %v, want one saying %q", tt.url, err, tt.err)
			}
			continue
		}
		scope := map[int]string{0: "base", 1: "one", 2: "sub"}[u.scope]
		if err != nil || strings.Join(u.hosts, " ") != tt.hosts || u.baseDN != tt.base || u.attribute != tt.attribute || scope != tt.scope || u.filter != tt.filter {
			t.Errorf("%s: got %q %q %q %s %q (%v), want %q %q %q %s %q", tt.url, u.hosts, u.baseDN, u.attribute, scope, u.filter, err, tt.hosts, tt.base, tt.attribute, tt.scope, tt.filter)
		}
	}
}
