package tokens

import (
	"bytes"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"time"

	"github.com/registry-auth/registry-auth/internal/htpasswd"
	"github.com/registry-auth/registry-auth/internal/policy"

	"go.yaml.in/yaml/v3"
)

// The tokens file (README.md, "Robot tokens") is YAML written by the token commands:
//
//	tokens:
//	  - name: ci
//	    sha256: 6b1b...               # of the secret; the secret itself is nowhere
//	    scopes: ["pull:team/*"]
//	    owner: alice                  # optional, who answers for it
//	    description: team's CI pulls  # optional
//	    created: 2026-12-05T18:00:00Z
//	    expires: 2027-03-05T18:00:00Z # optional: none, never
//	    revoked: 2026-12-06T09:00:00Z # set by token revoke: refused from then on
//
// A file that is not YAML of that shape does not load (the service keeps the tokens it had);
// a token with a wrong or missing field is skipped with a problem on its line, so that a
// mistake refuses that token and nothing else.

// Token is one token of the file.
type Token struct {
	Name        string
	Digest      string // hex SHA-256 of the secret
	Scopes      []string
	Owner       string
	Description string
	Created     time.Time
	Expires     time.Time // zero: never
	Revoked     time.Time // zero: not revoked
	Line        int       // where the token starts in the file; 0 for one not read from a file

	scopes *policy.Scopes // compiled Scopes
	digest [32]byte       // decoded Digest
	stamp  string         // what makes its verdict, for Authenticator.Claims
}

// State is what a token is at an instant.
type State string

// The states, as token list and the registry_auth_tokens metric name them.
const (
	Active   State = "active"
	Expiring State = "expiring" // active, and expires within ExpiringWithin
	Expired  State = "expired"
	Revoked  State = "revoked"
)

// ExpiringWithin is how close to its expiry an active token counts as expiring.
const ExpiringWithin = 7 * 24 * time.Hour

// StateAt is t's state at now.
func (t *Token) StateAt(now time.Time) State {
	switch {
	case !t.Revoked.IsZero():
		return Revoked
	case !t.Expires.IsZero() && !now.Before(t.Expires):
		return Expired
	case !t.Expires.IsZero() && t.Expires.Sub(now) <= ExpiringWithin:
		return Expiring
	}
	return Active
}

// File is a tokens file as read: the tokens that load, by name, in file order, and the
// problems of those that do not.
type File struct {
	Tokens   []*Token
	Problems htpasswd.Problems
	byName   map[string]*Token
}

// Get is the token named name, nil when the file has none or f is nil.
func (f *File) Get(name string) *Token {
	if f == nil {
		return nil
	}
	return f.byName[name]
}

// fields are a token's keys, in the order the file is written.
var fields = []string{"name", "sha256", "scopes", "owner", "description", "created", "expires", "revoked"}

// Parse reads the tokens file name (which names it in its error and Problems). An empty file
// has no tokens. Its error says why the file is not a tokens file at all (with the line, where
// YAML gives one); a token that cannot be used is left out and named in Problems instead.
func Parse(data []byte, name string) (*File, error) {
	f, err := parse(data)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	for i := range f.Problems {
		f.Problems[i].File = name
	}
	return f, nil
}

// parse is Parse without the file's name.
func parse(data []byte) (*File, error) {
	f := &File{byName: map[string]*Token{}}
	var root yaml.Node
	dec := yaml.NewDecoder(bytes.NewReader(data))
	if err := dec.Decode(&root); err != nil {
		if errors.Is(err, io.EOF) {
			return f, nil // an empty file, or only comments
		}
		return nil, fmt.Errorf("not a tokens file: %s", strings.TrimPrefix(err.Error(), "yaml: "))
	}
	var more yaml.Node
	switch err := dec.Decode(&more); {
	case err == nil:
		return nil, fmt.Errorf("line %d: a second YAML document (after ---): a tokens file is one", more.Line)
	case !errors.Is(err, io.EOF):
		return nil, fmt.Errorf("not a tokens file: %s", strings.TrimPrefix(err.Error(), "yaml: "))
	}
	doc := root.Content[0]
	if doc.Kind != yaml.MappingNode {
		return nil, fmt.Errorf("line %d: not a tokens file: want a mapping with the key tokens (write \"tokens: []\" for none)", doc.Line)
	}
	var list *yaml.Node
	for i := 0; i+1 < len(doc.Content); i += 2 {
		key, value := doc.Content[i], doc.Content[i+1]
		switch {
		case key.Value != "tokens":
			return nil, fmt.Errorf("line %d: unknown key %q: a tokens file has the key tokens only", key.Line, key.Value)
		case list != nil:
			return nil, fmt.Errorf("line %d: a second key tokens (the first is on line %d): one list holds every token", key.Line, doc.Content[0].Line)
		}
		list = value
	}
	if list == nil {
		return nil, fmt.Errorf("line %d: no key tokens (write \"tokens: []\" for none)", doc.Line)
	}
	if list.Kind != yaml.SequenceNode {
		return nil, fmt.Errorf("line %d: tokens: want a list of tokens", list.Line)
	}
	lineOf := map[string]int{}
	for _, item := range list.Content {
		t, err := parseToken(item)
		if err != nil {
			f.Problems.Add(item.Line, htpasswd.Error, "%v; the token is skipped", err)
			continue
		}
		if first, ok := lineOf[t.Name]; ok {
			// Neither is used: which one the writer meant is anyone's guess.
			f.Problems.Add(t.Line, htpasswd.Error, "token %q is also on line %d; both are skipped", t.Name, first)
			if other := f.byName[t.Name]; other != nil {
				f.Tokens = slices.DeleteFunc(f.Tokens, func(x *Token) bool { return x == other })
				delete(f.byName, t.Name)
			}
			continue
		}
		lineOf[t.Name] = t.Line
		f.Tokens = append(f.Tokens, t)
		f.byName[t.Name] = t
	}
	return f, nil
}

// parseToken reads one token's mapping.
func parseToken(n *yaml.Node) (*Token, error) {
	t := &Token{Line: n.Line}
	if n.Kind != yaml.MappingNode {
		return nil, errors.New("a token is a mapping of " + strings.Join(fields, ", "))
	}
	seen := map[string]bool{}
	var errs []string
	for i := 0; i+1 < len(n.Content); i += 2 {
		key, value := n.Content[i], n.Content[i+1]
		if !slices.Contains(fields, key.Value) {
			errs = append(errs, fmt.Sprintf("unknown key %q (the keys are %s)", key.Value, strings.Join(fields, ", ")))
			continue
		}
		if seen[key.Value] {
			errs = append(errs, fmt.Sprintf("%s is given twice", key.Value))
			continue
		}
		seen[key.Value] = true
		if key.Value == "scopes" {
			if value.Kind != yaml.SequenceNode {
				errs = append(errs, "scopes: want a list such as [\"pull:team/*\"]")
				continue
			}
			for _, s := range value.Content {
				if s.Kind != yaml.ScalarNode {
					errs = append(errs, "scopes: want a list of strings")
					continue
				}
				t.Scopes = append(t.Scopes, s.Value)
			}
			continue
		}
		if value.Kind != yaml.ScalarNode {
			errs = append(errs, fmt.Sprintf("%s: want a single value", key.Value))
			continue
		}
		if err := t.set(key.Value, value.Value); err != nil {
			errs = append(errs, err.Error())
		}
	}
	for _, required := range []string{"name", "sha256", "scopes", "created"} {
		if !seen[required] {
			errs = append(errs, "no "+required)
		}
	}
	if seen["scopes"] {
		s, err := policy.ParseScopes(t.Scopes)
		if err != nil {
			errs = append(errs, err.Error())
		}
		t.scopes = s
	}
	if !t.Expires.IsZero() && !t.Expires.After(t.Created) {
		errs = append(errs, "expires is not after created")
	}
	if len(errs) > 0 {
		name := ""
		if t.Name != "" {
			name = fmt.Sprintf(" %q", t.Name)
		}
		return nil, fmt.Errorf("token%s: %s", name, strings.Join(errs, "; "))
	}
	t.stamp = t.Digest + "|" + t.Expires.Format(time.RFC3339) + "|" + t.Revoked.Format(time.RFC3339) + "|" + t.scopes.String()
	return t, nil
}

// set sets the field key of t from its text.
func (t *Token) set(key, text string) error {
	var err error
	switch key {
	case "name":
		t.Name, err = text, CheckName(text)
	case "sha256":
		t.Digest = text
		// The length first: hex.Decode writes past a destination too short for its source.
		if len(text) != hex.EncodedLen(len(t.digest)) || strings.ToLower(text) != text {
			err = errors.New("sha256: want the 64 lower-case hex digits of the secret's SHA-256 (token rotate writes a new one)")
		} else if _, decodeErr := hex.Decode(t.digest[:], []byte(text)); decodeErr != nil {
			err = errors.New("sha256: want the 64 lower-case hex digits of the secret's SHA-256 (token rotate writes a new one)")
		}
	case "owner":
		t.Owner, err = text, checkText(key, text)
	case "description":
		t.Description, err = text, checkText(key, text)
	case "created":
		t.Created, err = parseTime(key, text)
	case "expires":
		t.Expires, err = parseTime(key, text)
	case "revoked":
		t.Revoked, err = parseTime(key, text)
	}
	return err
}

// parseTime reads an instant of the file.
func parseTime(key, text string) (time.Time, error) {
	at, err := time.Parse(time.RFC3339, text)
	if err != nil {
		return time.Time{}, fmt.Errorf("%s %q: want a time such as 2026-12-05T18:00:00Z (RFC 3339)", key, text)
	}
	return at, nil
}

// checkText refuses control characters in free text, which would forge lines of token list.
func checkText(key, text string) error {
	if strings.IndexFunc(text, func(r rune) bool { return r < 0x20 || r == 0x7f }) >= 0 {
		return fmt.Errorf("%s: control characters are not allowed", key)
	}
	return nil
}

// CompiledScopes are t's scopes as the policy applies them.
func (t *Token) CompiledScopes() *policy.Scopes { return t.scopes }
