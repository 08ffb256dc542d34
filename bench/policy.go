package main

import (
	"fmt"
	"os"
	"strings"
)

// longPolicyRules is the length of setup 9's policy.
const longPolicyRules = 200

// writeLongPolicy writes setup 9's access policy to path: 198 team rules
// that decide nothing for the bench's users, then the Apache recipe's two
// rules (the push group pushes, everyone else pulls). Every request of the
// workloads therefore walks the whole policy before a rule decides, half of
// the team rules skipped on the subject (a group the user is not in), half
// on the repository (any user, a namespace the workloads never touch).
func writeLongPolicy(path string) error {
	var b strings.Builder
	b.WriteString("# Setup 9 of bench/: 198 rules that never match the bench's requests, then the recipe's rule.\nrules:\n")
	for i := 1; i <= longPolicyRules-2; i++ {
		subject := fmt.Sprintf("group:team-%d", i)
		if i%2 == 0 {
			subject = "authenticated"
		}
		fmt.Fprintf(&b, "  - subjects: [%q]\n    repositories: [\"team-%d\", \"team-%d/**\", \"mirror/team-%d/*\"]\n    actions: [pull, push]\n", subject, i, i, i)
	}
	fmt.Fprintf(&b, "  - subjects: [\"group:%s\"]\n    repositories: [\"**\"]\n    actions: [pull, push, delete]\n", pushGroup)
	b.WriteString("  - subjects: [authenticated]\n    repositories: [\"**\"]\n    actions: [pull]\ncatalog: [authenticated]\n")
	return os.WriteFile(path, []byte(b.String()), 0o644)
}
