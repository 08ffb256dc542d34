package e2e

import (
	"fmt"
	"strings"
	"testing"

	"golang.org/x/crypto/bcrypt"
)

// account is a user of the test's htpasswd file.
type account struct{ name, password string }

// The stack's users. Passwords are made up for the tests; the hashes are
// made at bcrypt cost 5 (htpasswd -B's default) when a test writes the file.
var (
	pusher = account{"alice", "alice-pushes-2024"} // member of the push group
	reader = account{"bob", "bob-only-reads"}      // no group: pull only
)

// testHashCost keeps bcrypt fast in the tests (htpasswd -B's default cost).
const testHashCost = 5

// htpasswdFor returns htpasswd content with a bcrypt line for each account.
func htpasswdFor(t testing.TB, accounts ...account) string {
	t.Helper()
	var b strings.Builder
	for _, a := range accounts {
		hash, err := bcrypt.GenerateFromPassword([]byte(a.password), testHashCost)
		if err != nil {
			t.Fatal(err)
		}
		fmt.Fprintf(&b, "%s:%s\n", a.name, hash)
	}
	return b.String()
}

// groupsFor returns a groups file making members the push group "pusher",
// the group docker-compose.yml configures.
func groupsFor(members ...account) string {
	names := make([]string, len(members))
	for i, m := range members {
		names[i] = m.name
	}
	return "pusher: " + strings.Join(names, " ") + "\n"
}

// testManifest is an OCI image manifest with no layers, for pushes that must
// be refused (its config blob is never uploaded).
const testManifest = `{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a","size":2},"layers":[]}`
