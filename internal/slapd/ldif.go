package slapd

import (
	"fmt"
	"strings"
)

// Where Skeleton puts people and groups.
const (
	PeopleBase = "ou=people," + BaseDN
	GroupBase  = "ou=groups," + BaseDN
)

// Skeleton is the LDIF of the BaseDN entry, ou=people and ou=groups: what a directory
// needs before Person, Group and Account entries.
func Skeleton() string {
	return `dn: ` + BaseDN + `
objectClass: dcObject
objectClass: organization
o: Example
dc: example

dn: ` + PeopleBase + `
objectClass: organizationalUnit
ou: people

dn: ` + GroupBase + `
objectClass: organizationalUnit
ou: groups
`
}

// PersonDN is the DN of the Person entry uid.
func PersonDN(uid string) string { return "uid=" + uid + "," + PeopleBase }

// GroupDN is the DN of the Group entry cn.
func GroupDN(cn string) string { return "cn=" + cn + "," + GroupBase }

// AccountDN is the DN of the Account entry cn.
func AccountDN(cn string) string { return "cn=" + cn + "," + BaseDN }

// Person is the LDIF of an inetOrgPerson uid=UID under PeopleBase who binds with password.
// Neither may hold a newline.
func Person(uid, password string) string {
	return fmt.Sprintf(`
dn: %s
objectClass: inetOrgPerson
uid: %s
cn: %[2]s
sn: %[2]s
userPassword: %s
`, PersonDN(uid), uid, password)
}

// Group is the LDIF of a groupOfNames cn=CN under GroupBase whose members are the Person
// entries memberUIDs. A groupOfNames must have a member, so memberUIDs must not be empty.
func Group(cn string, memberUIDs ...string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "\ndn: %s\nobjectClass: groupOfNames\ncn: %s\n", GroupDN(cn), cn)
	for _, uid := range memberUIDs {
		fmt.Fprintf(&b, "member: %s\n", PersonDN(uid))
	}
	return b.String()
}

// Account is the LDIF of a service account cn=CN under BaseDN (an organizationalRole that
// binds with password), such as the one registry-auth searches as.
func Account(cn, password string) string {
	return fmt.Sprintf(`
dn: %s
objectClass: organizationalRole
objectClass: simpleSecurityObject
cn: %s
userPassword: %s
`, AccountDN(cn), cn, password)
}
