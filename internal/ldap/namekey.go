package ldap

import (
	"strings"
	"unicode"

	"golang.org/x/text/cases"
	"golang.org/x/text/unicode/norm"
)

// nameKey is name prepared for caseIgnoreMatch (RFC 4518, sections 2.2 to 2.6).
func nameKey(name string) string {
	mapped := strings.Map(func(r rune) rune {
		switch {
		case r == '\t' || r == '\n' || r == '\v' || r == '\f' || r == '\r' || r == 0x85:
			return ' '
		case r == 0x00AD || r == 0x1806 || r == 0x034F || r == 0x200B || r == 0xFFFC,
			r >= 0x180B && r <= 0x180D, unicode.Is(unicode.Variation_Selector, r),
			unicode.IsControl(r), unicode.Is(unicode.Cf, r):
			return -1
		case unicode.In(r, unicode.Zs, unicode.Zl, unicode.Zp):
			return ' '
		}
		return r
	}, name)
	prepared := norm.NFKC.String(cases.Fold().String(mapped))
	return strings.Join(strings.Fields(prepared), " ")
}
