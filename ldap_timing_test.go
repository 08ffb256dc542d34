package main

import (
	"context"
	"log/slog"
	"path/filepath"
	"testing"

	"github.com/registry-auth/registry-auth/internal/authn"
	"github.com/registry-auth/registry-auth/internal/ldap"
)

// BenchmarkDirectoryRefusal is the price of refusing a directory login, against the real
// slapd: a known user with a wrong password (a search that finds the entry, then a failed
// bind as it) beside an unknown name (a search that finds nothing, then a bind as a DN that
// does not exist, so that both cost a search and a bind). README.md, "LDAP and Active
// Directory", reports the figures; the difference left is what slapd itself takes to find
// an entry and check its password, which any client of that directory can time.
func BenchmarkDirectoryRefusal(b *testing.B) {
	s := startSlapd(b)
	secret := filepath.Join(b.TempDir(), "ldap-secret")
	writeFile(b, secret, testReaderPW+"\n")
	cfg := testLDAPConfig(s.url+testBaseDN+"?uid?sub?(objectClass=inetOrgPerson)", secret)
	dir, err := ldap.New(cfg, slog.New(slog.DiscardHandler), nil)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(dir.Close)
	for _, c := range []struct{ name, user string }{
		{"known-user-wrong-password", "alice"},
		{"unknown-user", "nobody-of-that-name"},
	} {
		b.Run(c.name, func(b *testing.B) {
			for b.Loop() {
				out, err := dir.Check(context.Background(), authn.Credential{Client: "192.0.2.1", User: c.user, Password: []byte("wrong-password")})
				if err != nil || out.OK || out.Known != (c.user == "alice") {
					b.Fatalf("%s: got %+v, %v; want a refusal, known %v", c.user, out, err, c.user == "alice")
				}
			}
		})
	}
}
