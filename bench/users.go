package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/base64"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"

	"golang.org/x/crypto/bcrypt"
)

// pushGroup is the group allowed to push, as in the Apache recipe.
const pushGroup = "pusher"

// credential is one user of a generated htpasswd file.
type credential struct {
	User, Password string
}

// basic returns the value of an Authorization header for c.
func (c credential) basic() string {
	return "Basic " + base64.StdEncoding.EncodeToString([]byte(c.User+":"+c.Password))
}

// userFiles is a generated htpasswd file and its groups file, or with
// Directory the people of the lab's slapd (no files, no cost). The first
// user is the only member of the push group; the others may only pull.
type userFiles struct {
	Htpasswd, Groups string
	Users            []credential
	Cost             int
	Directory        bool
}

// String names the users in messages: "cost 10 files" or "directory users".
func (u *userFiles) String() string {
	if u.Directory {
		return "directory users"
	}
	return fmt.Sprintf("cost %d files", u.Cost)
}

// pusher returns the member of the push group.
func (u *userFiles) pusher() credential { return u.Users[0] }

// reader returns a user who may pull but not push (the pusher when there is
// only one user).
func (u *userFiles) reader() credential { return u.Users[len(u.Users)-1] }

// benchUser returns the i-th user. Passwords are derived from names, so the
// files can be cached between runs; they protect nothing but a loopback
// benchmark.
func benchUser(prefix string, i int) credential {
	name := fmt.Sprintf("%s%05d", prefix, i)
	return credential{User: name, Password: "bench-" + name + "-secret"}
}

// makeUserFiles writes n users hashed with bcrypt at cost into dir (files
// named after n and cost), reusing a copy cached under cacheDir when one
// exists. Small files are hashed by Apache's own htpasswd (the tool users
// have), large ones with Go's bcrypt, which is the same algorithm
// (htpasswd writes $2y$, Go $2a$; Apache reads both) without a process per
// user.
func makeUserFiles(ctx context.Context, cacheDir, dir string, n, cost int) (*userFiles, error) {
	uf := &userFiles{Cost: cost}
	for i := range n {
		uf.Users = append(uf.Users, benchUser("user", i))
	}
	base := fmt.Sprintf("users-%d-cost%d", n, cost)
	cached := filepath.Join(cacheDir, base+".htpasswd")
	content, err := os.ReadFile(cached)
	if err != nil || !htpasswdHolds(content, uf.Users) {
		useApache := n <= 1000
		content, err = hashUsers(ctx, uf.Users, cost, useApache)
		if err != nil {
			return nil, err
		}
		if err := writeFileAtomic(cached, content); err != nil {
			return nil, err
		}
	}
	uf.Htpasswd = filepath.Join(dir, base+".htpasswd")
	uf.Groups = filepath.Join(dir, base+".groups")
	if err := os.WriteFile(uf.Htpasswd, content, 0o644); err != nil {
		return nil, err
	}
	groups := fmt.Sprintf("%s: %s\n", pushGroup, uf.pusher().User)
	if err := os.WriteFile(uf.Groups, []byte(groups), 0o644); err != nil {
		return nil, err
	}
	return uf, nil
}

// htpasswdHolds reports whether content has exactly one line per user, in
// order, each for the right name. (A cached file is ours; checking names
// and count catches a truncated or foreign file without hashing again.)
func htpasswdHolds(content []byte, users []credential) bool {
	lines := strings.Split(strings.TrimRight(string(content), "\n"), "\n")
	if len(lines) != len(users) {
		return false
	}
	for i, line := range lines {
		name, hash, ok := strings.Cut(line, ":")
		if !ok || name != users[i].User || !strings.HasPrefix(hash, "$2") {
			return false
		}
	}
	return true
}

// hashUsers returns htpasswd content for users, one line each, in order,
// hashing on every core.
func hashUsers(ctx context.Context, users []credential, cost int, useApache bool) ([]byte, error) {
	lines := make([]string, len(users))
	errs := make([]error, len(users))
	next := make(chan int)
	var wg sync.WaitGroup
	for range runtime.NumCPU() {
		wg.Go(func() {
			for i := range next {
				lines[i], errs[i] = hashLine(ctx, users[i], cost, useApache)
			}
		})
	}
	for i := range users {
		if ctx.Err() != nil {
			break
		}
		next <- i
	}
	close(next)
	wg.Wait()
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	var buf bytes.Buffer
	for i, line := range lines {
		if errs[i] != nil {
			return nil, errs[i]
		}
		buf.WriteString(line)
		buf.WriteByte('\n')
	}
	return buf.Bytes(), nil
}

// hashLine returns "user:hash" for c.
func hashLine(ctx context.Context, c credential, cost int, useApache bool) (string, error) {
	if !useApache {
		h, err := bcrypt.GenerateFromPassword([]byte(c.Password), cost)
		if err != nil {
			return "", err
		}
		return c.User + ":" + string(h), nil
	}
	return apacheHash(ctx, c, cost)
}

// apacheHash runs Apache's htpasswd to hash c with bcrypt at cost. The
// password goes through stdin (-i), never the command line.
func apacheHash(ctx context.Context, c credential, cost int) (string, error) {
	cmd := exec.CommandContext(ctx, "htpasswd", "-niB", "-C", fmt.Sprint(cost), c.User)
	cmd.Stdin = strings.NewReader(c.Password)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return "", fmt.Errorf("htpasswd for %s: %w: %s", c.User, err, stderr.Bytes())
	}
	sc := bufio.NewScanner(bytes.NewReader(out))
	if !sc.Scan() || !strings.HasPrefix(sc.Text(), c.User+":$2y$") {
		return "", fmt.Errorf("htpasswd for %s: unexpected output %q", c.User, out)
	}
	return sc.Text(), nil
}

// writeFileAtomic writes content to a temporary file beside path and renames
// it over path, the way editors save: a reader sees the old file or the new
// one, never a mix.
func writeFileAtomic(path string, content []byte) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	f, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".tmp-*")
	if err != nil {
		return err
	}
	defer os.Remove(f.Name()) // no-op after the rename
	if _, err := f.Write(content); err != nil {
		f.Close()
		return err
	}
	if err := f.Chmod(0o644); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	return os.Rename(f.Name(), path)
}
