package cli

import (
	"fmt"

	"golang.org/x/crypto/bcrypt"
)

// The flags that several commands share, each defined here once so that it reads, defaults
// and explains itself alike everywhere.

// HTPasswd defines --htpasswd [REGISTRY_AUTH_HTPASSWD]: the service's users.
func (fs *FlagSet) HTPasswd(p *string) {
	fs.EnvString(p, "htpasswd", "/auth/htpasswd", "Apache htpasswd file with the users")
}

// Groups defines --groups [REGISTRY_AUTH_GROUPS]: the service's groups file.
func (fs *FlagSet) Groups(p *string) {
	fs.EnvString(p, "groups", "/auth/groups", "Apache groups file (lines \"group: user1 user2\"); empty means none")
}

// Tokens defines --tokens [REGISTRY_AUTH_TOKENS]: the robot tokens file.
func (fs *FlagSet) Tokens(p *string) {
	fs.EnvString(p, "tokens", "/auth/tokens.yaml", "robot tokens file, written by 'registry-auth token' (a file that does not exist yet has no tokens); empty turns tokens off")
}

// Cost defines --cost, the bcrypt cost of a new hash; Parse refuses one bcrypt does not take.
func (fs *FlagSet) Cost(p *int) {
	fs.IntVar(p, "cost", bcrypt.DefaultCost, fmt.Sprintf("bcrypt cost, %d to %d; each step doubles the work", bcrypt.MinCost, bcrypt.MaxCost))
	fs.Check(func() error {
		if *p < bcrypt.MinCost || *p > bcrypt.MaxCost {
			return fmt.Errorf("--cost %d: want %d to %d (10 is a sensible default)", *p, bcrypt.MinCost, bcrypt.MaxCost)
		}
		return nil
	})
}
