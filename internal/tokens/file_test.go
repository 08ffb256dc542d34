package tokens

import (
	"strings"
	"testing"
	"time"
)

// digestOf is the digest of the secret s, as the file holds it.
func digestOf(s string) string { return Digest([]byte(s)) }

// TestParseProblemsNameTheirLine: a token that cannot be used is skipped with a problem on its
// line that says what is wrong, and the other tokens load.
func TestParseProblemsNameTheirLine(t *testing.T) {
	t.Parallel()
	good := digestOf("rat_good")
	data := `# a hand-edited file
tokens:
  - name: ok
    sha256: ` + good + `
    scopes: ["pull:team/*"]
    created: 2026-12-01T00:00:00Z
  - name: Bad_Name
    sha256: ` + good + `
    scopes: ["pull:x"]
    created: 2026-12-01T00:00:00Z
  - name: short
    sha256: abc
    scopes: ["pull:x"]
    created: 2026-12-01T00:00:00Z
  - name: noscope
    sha256: ` + good + `
    created: 2026-12-01T00:00:00Z
  - name: badscope
    sha256: ` + good + `
    scopes: ["read:x"]
    created: 2026-12-01T00:00:00Z
  - name: baddate
    sha256: ` + good + `
    scopes: ["pull:x"]
    created: yesterday
  - name: typo
    sha256: ` + good + `
    scope: ["pull:x"]
    created: 2026-12-01T00:00:00Z
  - name: backwards
    sha256: ` + good + `
    scopes: ["pull:x"]
    created: 2026-12-01T00:00:00Z
    expires: 2026-11-01T00:00:00Z
  - name: twice
    sha256: ` + good + `
    scopes: ["pull:x"]
    created: 2026-12-01T00:00:00Z
  - name: twice
    sha256: ` + good + `
    scopes: ["pull:y"]
    created: 2026-12-01T00:00:00Z
  - name: upper
    sha256: ` + strings.ToUpper(good) + `
    scopes: ["pull:x"]
    created: 2026-12-01T00:00:00Z
`
	f, err := Parse([]byte(data), "tokens.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if len(f.Tokens) != 1 || f.Tokens[0].Name != "ok" || f.Get("ok") == nil {
		t.Errorf("got tokens %v, want only ok", f.Tokens)
	}
	want := []struct {
		line int
		text string
	}{
		{7, `token name "Bad_Name"`},
		{11, "sha256: want the 64 lower-case hex digits"},
		{15, "no scopes"},
		{18, `unknown action "read"`},
		{22, `created "yesterday": want a time such as`},
		{26, `unknown key "scope"`},
		{30, "expires is not after created"},
		{39, `token "twice" is also on line 35`},
		{43, "sha256: want the 64 lower-case hex digits"},
	}
	if len(f.Problems) != len(want) {
		t.Fatalf("got %d problems, want %d:\n%v", len(f.Problems), len(want), f.Problems)
	}
	for i, w := range want {
		p := f.Problems[i]
		if p.Line != w.line || !strings.Contains(p.Message, w.text) || !strings.Contains(p.Message, "skipped") {
			t.Errorf("problem %d: got line %d %q, want line %d with %q and skipped", i, p.Line, p.Message, w.line, w.text)
		}
	}
	if f.Get("twice") != nil {
		t.Error("a name given twice loaded; want both skipped")
	}
}

// TestParseRefusesWhatIsNoTokensFile: what is not a tokens file at all fails whole, with the
// line, so that the service keeps the tokens it had; an empty file has none.
func TestParseRefusesWhatIsNoTokensFile(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct{ data, want string }{
		{"tokens: [\n", "not a tokens file"},
		{"- a\n- b\n", "line 1: not a tokens file"},
		{"users: []\n", `line 1: unknown key "users"`},
		{"tokens: {}\n", "line 1: tokens: want a list"},
		{"# nothing\nother:\n", `line 2: unknown key "other"`},
		{"tokens: []\ntokens: []\n", "line 2: a second key tokens (the first is on line 1)"},
		{"tokens: []\n---\ntokens: []\n", "line 2: a second YAML document"},
		{"tokens: []\n---\n[\n", "not a tokens file"},
	} {
		if _, err := Parse([]byte(tt.data), "tokens.yaml"); err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("Parse(%q): got %v, want an error with %q", tt.data, err, tt.want)
		}
	}
	for _, empty := range []string{"", "# only a comment\n", "tokens: []\n"} {
		if f, err := Parse([]byte(empty), "tokens.yaml"); err != nil || len(f.Tokens) != 0 {
			t.Errorf("Parse(%q): got %v, %v, want no tokens and no error", empty, f, err)
		}
	}
}

// TestEditsReadBack: what Bytes writes after each edit parses to the same tokens.
func TestEditsReadBack(t *testing.T) {
	t.Parallel()
	f, err := Parse(nil, "tokens.yaml")
	if err != nil {
		t.Fatal(err)
	}
	created := time.Date(2026, 12, 5, 18, 0, 0, 0, time.UTC)
	_, d1 := NewSecret()
	tok := &Token{Name: "ci", Digest: d1, Scopes: []string{"pull:team/*", "catalog"}, Owner: "alice: ops", Description: "it's # not a comment",
		Created: created, Expires: created.Add(90 * 24 * time.Hour)}
	if err := f.Create(tok, created); err != nil {
		t.Fatal(err)
	}
	if err := f.Create(&Token{Name: "ci"}, created); err == nil || !strings.Contains(err.Error(), "token rotate ci") {
		t.Errorf("a second ci: got %v, want refused with how to rotate", err)
	}
	_, d2 := NewSecret()
	if err := f.Rotate("ci", d2, created); err != nil {
		t.Fatal(err)
	}
	back, err := Parse(f.Bytes(), "tokens.yaml")
	if err != nil || len(back.Problems) > 0 {
		t.Fatalf("got %v, %v, want the file read back\n%s", err, back.Problems, f.Bytes())
	}
	got := back.Get("ci")
	if got.Digest != d2 || got.Owner != tok.Owner || got.Description != tok.Description || !got.Created.Equal(created) || !got.Expires.Equal(tok.Expires) ||
		strings.Join(got.Scopes, " ") != "pull:team/* catalog" || !got.Revoked.IsZero() {
		t.Errorf("got %+v, want %+v with the new digest", got, tok)
	}
	if err := back.Revoke("ci", created.Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	again, _ := Parse(back.Bytes(), "tokens.yaml")
	if r := again.Get("ci").Revoked; !r.Equal(created.Add(time.Hour)) {
		t.Errorf("got revoked %v, want %v", r, created.Add(time.Hour))
	}
	for _, edit := range []func() error{
		func() error { return again.Revoke("ci", created) },
		func() error { return again.Rotate("ci", d1, created) },
		func() error { return again.Create(&Token{Name: "ci"}, created) },
	} {
		if err := edit(); err == nil || !strings.Contains(err.Error(), "revoked") {
			t.Errorf("an edit of a revoked token: got %v, want refused as revoked", err)
		}
	}
	if err := again.Revoke("nobody", created); err == nil || !strings.Contains(err.Error(), "no token") {
		t.Errorf("revoking a token the file lacks: got %v", err)
	}

	// An expired token keeps its name and is not rotated: the new secret would be refused too.
	_, d3 := NewSecret()
	old := &Token{Name: "old", Digest: d3, Scopes: []string{"pull:x"}, Created: created, Expires: created.Add(time.Hour)}
	if err := again.Create(old, created); err != nil {
		t.Fatal(err)
	}
	later := created.Add(2 * time.Hour)
	if err := again.Rotate("old", d1, later); err == nil || !strings.Contains(err.Error(), "expired on") {
		t.Errorf("rotating an expired token: got %v, want refused as expired", err)
	}
	if err := again.Create(&Token{Name: "old"}, later); err == nil || !strings.Contains(err.Error(), "expired on") || strings.Contains(err.Error(), "rotate") {
		t.Errorf("creating over an expired token: got %v, want refused as expired, without advice to rotate", err)
	}
	if err := again.Rotate("old", d1, created); err != nil {
		t.Errorf("rotating before the expiry: %v", err)
	}
}

// TestStates: a token's state at the boundaries of its expiry and of the expiring window.
func TestStates(t *testing.T) {
	t.Parallel()
	exp := time.Date(2027, 1, 1, 0, 0, 0, 0, time.UTC)
	tok := Token{Expires: exp}
	for _, tt := range []struct {
		at   time.Time
		want State
	}{
		{exp.Add(-ExpiringWithin - time.Nanosecond), Active},
		{exp.Add(-ExpiringWithin), Expiring},
		{exp.Add(-time.Nanosecond), Expiring},
		{exp, Expired},
	} {
		if got := tok.StateAt(tt.at); got != tt.want {
			t.Errorf("at %v: got %s, want %s", tt.at, got, tt.want)
		}
	}
	if got := (&Token{}).StateAt(exp); got != Active {
		t.Errorf("no expiry: got %s, want active", got)
	}
	if got := (&Token{Expires: exp, Revoked: exp.Add(-time.Hour)}).StateAt(exp.Add(time.Hour)); got != Revoked {
		t.Errorf("revoked and expired: got %s, want revoked", got)
	}
}

// TestCheckName: the names a token may have; its login name is a repository path component.
func TestCheckName(t *testing.T) {
	t.Parallel()
	for _, ok := range []string{"ci", "a", "team-pull", "k8s.node_1", strings.Repeat("a", 63)} {
		if err := CheckName(ok); err != nil {
			t.Errorf("CheckName(%q): %v", ok, err)
		}
	}
	for _, bad := range []string{"", "CI", "-ci", "ci-", "a b", "a+b", "a/b", "a:b", strings.Repeat("a", 64)} {
		if err := CheckName(bad); err == nil {
			t.Errorf("CheckName(%q): accepted", bad)
		}
	}
}
