package ldap

import (
	"testing"
)

// TestNameKey: RFC 4518's preparation for caseIgnoreMatch.
func TestNameKey(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct{ in, want string }{
		{"Dave", "dave"},
		{"  Dave   Smith ", "dave smith"},
		{"dave\tsmith", "dave smith"},
		{"da\u00adve\u200b", "dave"},        // soft hyphen and zero-width space: nothing
		{"\uff24ave", "dave"},               // fullwidth D: NFKC
		{"Stra\u00dfe", "strasse"},          // full case folding
		{"dave\u00a0smith", "dave smith"},   // no-break space is a space
		{"e\u0301", "\u00e9"},               // composed
		{"x\ufe0fy", "xy"},                  // a variation selector: nothing
		{"alice)(uid=*", "alice)(uid=*"},    // no filter syntax is touched here
		{"\u0130stanbul", "i\u0307stanbul"}, // dotted capital I folds to i and a combining dot
	} {
		if got := nameKey(tt.in); got != tt.want {
			t.Errorf("nameKey(%q): got %q, want %q", tt.in, got, tt.want)
		}
	}
}
