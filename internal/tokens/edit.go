package tokens

import (
	"bytes"
	"fmt"
	"time"

	"go.yaml.in/yaml/v3"
)

// The edits of the token commands. Each changes the File in memory; Bytes writes it whole, and
// the commands check the result by parsing it again before they replace the file.

// header starts every tokens file the commands write.
const header = `# registry-auth tokens file, written by 'registry-auth token' (README.md, "Robot tokens").
# It holds no secret, only the SHA-256 of each; a token logs in as token+NAME. Hand edits
# are read too, but the commands rewrite the whole file: comments below are not kept.
`

// Create adds t, refusing a name the file has (a revoked or expired token's too: its record
// stays, so that the log's "revoked" keeps meaning that one). now says whether the existing
// token expired.
func (f *File) Create(t *Token, now time.Time) error {
	if old := f.byName[t.Name]; old != nil {
		switch old.StateAt(now) {
		case Revoked:
			return fmt.Errorf("token %q exists, revoked on %s: choose another name", t.Name, old.Revoked.Format(time.RFC3339))
		case Expired:
			return fmt.Errorf("token %q exists, expired on %s: choose another name", t.Name, old.Expires.Format(time.RFC3339))
		}
		return fmt.Errorf("token %q exists: choose another name, or give it a new secret with `registry-auth token rotate %s`", t.Name, t.Name)
	}
	f.Tokens = append(f.Tokens, t)
	f.byName[t.Name] = t
	return nil
}

// live is the token name, refusing one the file lacks or that is revoked.
func (f *File) live(name, command string) (*Token, error) {
	t := f.byName[name]
	switch {
	case t == nil:
		return nil, fmt.Errorf("no token %q (`registry-auth token list` lists them)", name)
	case !t.Revoked.IsZero():
		return nil, fmt.Errorf("token %q was revoked on %s: a revoked token cannot be %s; create another", name, t.Revoked.Format(time.RFC3339), command)
	}
	return t, nil
}

// Revoke marks the token name revoked at at: from then on it is refused.
func (f *File) Revoke(name string, at time.Time) error {
	t, err := f.live(name, "revoked again")
	if err != nil {
		return err
	}
	t.Revoked = at.UTC().Truncate(time.Second)
	return nil
}

// Rotate gives the token name the secret of digest: the old secret is refused from the
// moment the service loads the file. Scopes, owner and expiry stay, so a token that expired
// at now is refused: a new secret would be refused too.
func (f *File) Rotate(name, digest string, now time.Time) error {
	t, err := f.live(name, "rotated")
	if err != nil {
		return err
	}
	if t.StateAt(now) == Expired {
		return fmt.Errorf("token %q expired on %s, and a rotation keeps the expiry: create another token", name, t.Expires.Format(time.RFC3339))
	}
	t.Digest = digest
	return nil
}

// tokenDocument is how a token is written.
type tokenDocument struct {
	Name        string   `yaml:"name"`
	SHA256      string   `yaml:"sha256"`
	Scopes      []string `yaml:"scopes,flow"`
	Owner       string   `yaml:"owner,omitempty"`
	Description string   `yaml:"description,omitempty"`
	Created     string   `yaml:"created"`
	Expires     string   `yaml:"expires,omitempty"`
	Revoked     string   `yaml:"revoked,omitempty"`
}

// Bytes is the file with its tokens, as the commands write it.
func (f *File) Bytes() []byte {
	stamp := func(t time.Time) string {
		if t.IsZero() {
			return ""
		}
		// Nano keeps a hand-written fraction of a second; the commands write whole seconds.
		return t.UTC().Format(time.RFC3339Nano)
	}
	doc := struct {
		Tokens []tokenDocument `yaml:"tokens"`
	}{Tokens: []tokenDocument{}}
	for _, t := range f.Tokens {
		doc.Tokens = append(doc.Tokens, tokenDocument{
			Name: t.Name, SHA256: t.Digest, Scopes: t.Scopes, Owner: t.Owner, Description: t.Description,
			Created: stamp(t.Created), Expires: stamp(t.Expires), Revoked: stamp(t.Revoked),
		})
	}
	var b bytes.Buffer
	b.WriteString(header)
	enc := yaml.NewEncoder(&b)
	enc.SetIndent(2)
	if err := enc.Encode(doc); err != nil {
		panic(err) // strings and lists of strings always encode
	}
	enc.Close()
	return b.Bytes()
}
