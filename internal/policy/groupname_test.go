package policy

import "testing"

// TestGroupKey: DNs compare in one spelling, names in lower case.
func TestGroupKey(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct{ in, want string }{
		{"Pusher", "pusher"},
		{"CN=Pusher, OU=Groups,dc=example,dc=com", "cn=pusher,ou=groups,dc=example,dc=com"},
		{"cn=a\\,b,dc=x", "cn=a\\,b,dc=x"},
	} {
		if got := GroupKey(tt.in); got != tt.want {
			t.Errorf("GroupKey(%q): got %q, want %q", tt.in, got, tt.want)
		}
	}
}
