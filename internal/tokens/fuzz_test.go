package tokens

import "testing"

// FuzzParse: any bytes parse without a panic, and the tokens of a file that parses are
// written back by Bytes as a file that parses to the same tokens, with no problem.
func FuzzParse(f *testing.F) {
	f.Add([]byte("tokens:\n  - name: ci\n    sha256: " + Digest([]byte("rat_x")) + "\n    scopes: [\"pull:team/*\", catalog]\n    created: 2026-12-01T00:00:00Z\n    expires: 2027-12-01T00:00:00Z\n"))
	f.Add([]byte("tokens: []\n"))
	f.Add([]byte("tokens:\n  - name: a\n  - [1, 2]\n  - name: a\n"))
	f.Add([]byte("- a\n"))
	f.Add([]byte("tokens: {a: b}\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		file, err := Parse(data, "tokens.yaml")
		if err != nil {
			return
		}
		back, err := Parse(file.Bytes(), "tokens.yaml")
		if err != nil || len(back.Problems) > 0 || len(back.Tokens) != len(file.Tokens) {
			t.Fatalf("the tokens read back: %v, problems %v, %d tokens, want %d\n%s", err, back.Problems, len(back.Tokens), len(file.Tokens), file.Bytes())
		}
		for i, tok := range file.Tokens {
			got := back.Tokens[i]
			if got.Name != tok.Name || got.Digest != tok.Digest || got.stamp != tok.stamp || got.Owner != tok.Owner ||
				got.Description != tok.Description || !got.Created.Equal(tok.Created) {
				t.Fatalf("token %d read back as %+v, want %+v", i, got, tok)
			}
		}
	})
}
