package tokens

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/registry-auth/registry-auth/internal/authn"
	"github.com/registry-auth/registry-auth/internal/htpasswd"

	"golang.org/x/crypto/bcrypt"
)

// fileWith is a tokens file of one token name with secret, scopes and extra keys.
func fileWith(t testing.TB, name, secret, scopes, extra string) *File {
	t.Helper()
	f, err := Parse([]byte(fmt.Sprintf("tokens:\n  - name: %s\n    sha256: %s\n    scopes: %s\n    created: 2026-12-01T00:00:00Z\n%s", name, digestOf(secret), scopes, extra)), "tokens.yaml")
	if err != nil || len(f.Problems) > 0 {
		t.Fatalf("%v %v", err, f.Problems)
	}
	return f
}

// TestAuthenticatorChecks: the right secret proves the token with its scopes and expiry; a
// wrong one, another token's name, or a revoked token does not; no name but a token's is
// claimed.
func TestAuthenticatorChecks(t *testing.T) {
	t.Parallel()
	a := NewAuthenticator(fileWith(t, "ci", "rat_right", `["pull:team/*"]`, "    expires: 2027-01-01T00:00:00Z\n"))
	revoked := NewAuthenticator(fileWith(t, "ci", "rat_right", `["pull:team/*"]`, "    revoked: 2026-12-02T00:00:00Z\n"))
	check := func(a Authenticator, user, secret string) authn.Outcome {
		t.Helper()
		if _, ok := a.Claims(user); !ok {
			t.Fatalf("%s not claimed", user)
		}
		out, err := a.Check(context.Background(), authn.Credential{User: user, Password: []byte(secret)})
		if err != nil {
			t.Fatal(err)
		}
		return out
	}
	out := check(a, "token+ci", "rat_right")
	if !out.OK || out.User != "token+ci" || out.Scopes.String() != "pull:team/*" || !out.Until.Equal(time.Date(2027, 1, 1, 0, 0, 0, 0, time.UTC)) {
		t.Errorf("right secret: got %+v, want proved with its scopes and expiry", out)
	}
	if out := check(a, "token+ci", "rat_wrong"); out.OK || !out.Known {
		t.Errorf("wrong secret: got %+v, want refused, known", out)
	}
	if out := check(a, "token+other", "rat_right"); out.OK || out.Known {
		t.Errorf("another name: got %+v, want refused, unknown", out)
	}
	if out := check(revoked, "token+ci", "rat_right"); out.OK || out.Reason != "revoked" {
		t.Errorf("revoked: got %+v, want refused as revoked", out)
	}
	for _, user := range []string{"ci", "alice", "Token+ci", "token-ci"} {
		if _, ok := a.Claims(user); ok {
			t.Errorf("%q claimed: only token+ names are the tokens'", user)
		}
	}
	// Every part of a verdict is in the stamp: a cached verdict never outlives a change.
	base, _ := a.Claims("token+ci")
	for what, other := range map[string]Authenticator{
		"revoked":  revoked,
		"rotated":  NewAuthenticator(fileWith(t, "ci", "rat_new", `["pull:team/*"]`, "    expires: 2027-01-01T00:00:00Z\n")),
		"scopes":   NewAuthenticator(fileWith(t, "ci", "rat_right", `["pull:team/**"]`, "    expires: 2027-01-01T00:00:00Z\n")),
		"expiry":   NewAuthenticator(fileWith(t, "ci", "rat_right", `["pull:team/*"]`, "    expires: 2027-02-01T00:00:00Z\n")),
		"no token": NewAuthenticator(nil),
	} {
		if s, _ := other.Claims("token+ci"); s == base {
			t.Errorf("%s: the stamp did not change", what)
		}
	}
	if s, _ := NewAuthenticator(fileWith(t, "ci", "rat_right", `["pull:team/*"]`, "    expires: 2027-01-01T00:00:00Z\n    owner: bob\n")).Claims("token+ci"); s != base {
		t.Error("the owner changed the stamp: it is no part of the verdict")
	}
}

// BenchmarkTokenCheck is one uncached token check (target: under 50 µs; README.md, "Robot
// tokens"), beside BenchmarkBcryptCost10, what an htpasswd user's uncached check costs.
func BenchmarkTokenCheck(b *testing.B) {
	secret, _ := NewSecret()
	f, err := Parse([]byte(fmt.Sprintf("tokens:\n  - name: ci\n    sha256: %s\n    scopes: [\"pull:**\"]\n    created: 2026-12-01T00:00:00Z\n", digestOf(secret))), "tokens.yaml")
	if err != nil {
		b.Fatal(err)
	}
	a := NewAuthenticator(f)
	c := authn.Credential{User: "token+ci", Password: []byte(secret)}
	b.ReportAllocs()
	for b.Loop() {
		if _, ok := a.Claims(c.User); !ok {
			b.Fatal("not claimed")
		}
		if out, _ := a.Check(context.Background(), c); !out.OK {
			b.Fatal("refused")
		}
	}
}

// BenchmarkBcryptCost10 is the anchor: one check of an htpasswd file's bcrypt hash at the
// default cost.
func BenchmarkBcryptCost10(b *testing.B) {
	hash, err := bcrypt.GenerateFromPassword([]byte("secret"), bcrypt.DefaultCost)
	if err != nil {
		b.Fatal(err)
	}
	for b.Loop() {
		if ok, _ := htpasswd.Verify(string(hash), []byte("secret")); !ok {
			b.Fatal("refused")
		}
	}
}

// BenchmarkThousandColdTokens checks 1,000 distinct tokens once each, as a fleet of nodes
// pulling after a restart would (target: under 0.1 s of CPU for all of them).
func BenchmarkThousandColdTokens(b *testing.B) {
	var doc strings.Builder
	doc.WriteString("tokens:\n")
	secrets := make([]authn.Credential, 1000)
	for i := range secrets {
		secret, digest := NewSecret()
		fmt.Fprintf(&doc, "  - name: node-%d\n    sha256: %s\n    scopes: [\"pull:**\"]\n    created: 2026-12-01T00:00:00Z\n", i, digest)
		secrets[i] = authn.Credential{User: LoginName(fmt.Sprintf("node-%d", i)), Password: []byte(secret)}
	}
	f, err := Parse([]byte(doc.String()), "tokens.yaml")
	if err != nil || len(f.Tokens) != 1000 {
		b.Fatal(err)
	}
	a := NewAuthenticator(f)
	for b.Loop() {
		for _, c := range secrets {
			if out, _ := a.Check(context.Background(), c); !out.OK {
				b.Fatal("refused")
			}
		}
	}
}
