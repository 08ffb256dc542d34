package main

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"slices"
	"time"
)

// editUsers is how many users the "edit under load" workload has cached
// when it edits the htpasswd file.
const editUsers = 500

// editWorkers is how many requests of a pass run at once.
const editWorkers = 16

// measureEdit is the "edit under load" workload on a registry-auth setup:
// every user of files once through Traefik (each hashed), every user again
// (the first warm pass, from the cache), one unrelated user added to the
// htpasswd file and waited for, then every user once more. It reports the
// hash computations of that last pass (registry-auth's
// registry_auth_verify_duration_seconds count) and its p99 next to the warm
// pass's.
func (l *lab) measureEdit(ctx context.Context, id setupID, files *userFiles) (_ *editResult, err error) {
	s, err := l.startSetup(ctx, id, files)
	if err != nil {
		return nil, err
	}
	defer func() {
		l.client.CloseIdleConnections()
		err = errors.Join(err, s.stop(l.out))
	}()
	url := s.proxyURL(manifestPath)
	hashes := func() (int64, error) {
		return l.fetchCount(ctx, s.authURL("/metrics"), "registry_auth_verify_duration_seconds_count ")
	}
	res := &editResult{Users: len(s.files.Users)}
	if _, err := l.pass(ctx, url, s.files.Users); err != nil {
		return nil, fmt.Errorf("first pass: %w", err)
	}
	warm, err := l.pass(ctx, url, s.files.Users)
	if err != nil {
		return nil, fmt.Errorf("warm pass: %w", err)
	}
	res.WarmP99 = percentileOf(warm, 99)

	// The edit: an editor-style save of the file with one more user.
	extra := credential{User: fmt.Sprintf("edit%d-new", id), Password: fmt.Sprintf("edit-%d-new-secret", id)}
	line, err := apacheHash(ctx, extra, s.files.Cost)
	if err != nil {
		return nil, err
	}
	old, err := os.ReadFile(s.files.Htpasswd)
	if err != nil {
		return nil, err
	}
	if err := writeFileAtomic(s.files.Htpasswd, append(old, []byte(line+"\n")...)); err != nil {
		return nil, err
	}
	if err := l.waitAccepted(ctx, url, extra); err != nil {
		return nil, err
	}
	before, err := hashes()
	if err != nil {
		return nil, err
	}
	after, err := l.pass(ctx, url, s.files.Users)
	if err != nil {
		return nil, fmt.Errorf("pass after the edit: %w", err)
	}
	end, err := hashes()
	if err != nil {
		return nil, err
	}
	res.AfterEditP99, res.AfterEditHashes = percentileOf(after, 99), end-before
	return res, nil
}

// pass sends one GET of url for each user, editWorkers at a time, and
// returns the latencies. Any answer but 200 fails it.
func (l *lab) pass(ctx context.Context, url string, users []credential) ([]time.Duration, error) {
	return l.getEach(ctx, "GET", url, users, nil, editWorkers)
}

// waitAccepted polls url as c until it answers 200 (the service has loaded
// the edit), for at most 10 s.
func (l *lab) waitAccepted(ctx context.Context, url string, c credential) error {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for {
		status, err := get(ctx, l.client, url, c.basic(), nil)
		if err == nil && status == http.StatusOK {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("the user added to the htpasswd file was not accepted within 10 s (last: %d, %v)", status, err)
		case <-tick.C:
		}
	}
}

// percentileOf is the p-th percentile (nearest rank) of ds.
func percentileOf(ds []time.Duration, p int) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	sorted := slices.Clone(ds)
	slices.Sort(sorted)
	i := (len(sorted)*p + 99) / 100
	return sorted[max(i-1, 0)]
}
