package main

import (
	"context"
	"fmt"
	"path/filepath"
	"time"

	"github.com/registry-auth/registry-auth/e2e/harness"
	"github.com/registry-auth/registry-auth/internal/tokens"
)

// benchTokens is how many robot tokens the tokens workload logs in with: as
// many as the users of the 64-user loads it is compared with.
const benchTokens = 64

// tokensFile is registry-auth's tokens file in the setup's /auth directory,
// where docker-compose.yml's service looks by default (/auth/tokens.yaml).
// It does not exist, so there are no tokens, until addTokens writes it.
func (s *stack) tokensFile() string { return filepath.Join(s.dir, "auth", "tokens.yaml") }

// addTokens writes n pull tokens into the running setup's tokens file, as
// one save (a temporary file renamed over it, as `registry-auth token`
// writes it), waits until registry-auth has loaded them, and returns their
// credentials: token+NAME and the secret.
//
// It waits on registry_auth_tokens, not on /auth: a token refused before the
// reload is a failed login, which registry-auth counts per client address
// (50 per 5 minutes by default), and a round of 64 of them would get the
// harness's own address throttled for the loads that follow.
func (l *lab) addTokens(ctx context.Context, s *stack, n int) ([]credential, error) {
	file, err := tokens.Parse(nil, s.tokensFile())
	if err != nil {
		return nil, err
	}
	created := time.Now().UTC().Truncate(time.Second)
	var creds []credential
	for i := range n {
		name := fmt.Sprintf("bench-%05d", i)
		secret, digest := tokens.NewSecret()
		if err := file.Create(&tokens.Token{Name: name, Digest: digest, Scopes: []string{"pull:**"}, Created: created}, created); err != nil {
			return nil, err
		}
		creds = append(creds, credential{User: tokens.LoginName(name), Password: secret})
	}
	if err := writeFileAtomic(s.tokensFile(), file.Bytes()); err != nil {
		return nil, err
	}
	err = harness.WaitFor(ctx, 10*time.Second, func() error {
		active, err := l.fetchCount(ctx, s.authURL("/metrics"), `registry_auth_tokens{state="active"} `)
		if err == nil && active != int64(n) {
			err = fmt.Errorf("registry-auth counts %d active tokens, want %d", active, n)
		}
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("the tokens file was not loaded: %w", err)
	}
	return creds, nil
}
