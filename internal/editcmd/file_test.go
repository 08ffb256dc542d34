package editcmd

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/registry-auth/registry-auth/internal/cli"
	"github.com/registry-auth/registry-auth/internal/htpasswd/htpasswdtest"
)

// TestInterruptedWriteLeavesTheOldFile: a write stopped between the temporary file and the
// rename, as a crash would stop it, leaves the old file as it was and no temporary file; a
// temporary file that a killed command left is removed by the next one.
func TestInterruptedWriteLeavesTheOldFile(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	htpasswdPath, groupsPath := filepath.Join(dir, "htpasswd"), filepath.Join(dir, "groups")
	old := "alice:" + htpasswdtest.Hash(t, "a") + "\n"
	for path, data := range map[string]string{htpasswdPath: old, groupsPath: "pusher: alice\n"} {
		if err := os.WriteFile(path, []byte(data), 0o640); err != nil {
			t.Fatal(err)
		}
	}
	vars := map[string]string{"REGISTRY_AUTH_HTPASSWD": htpasswdPath, "REGISTRY_AUTH_GROUPS": groupsPath}
	var stderr bytes.Buffer
	env := cli.Env{LookupEnv: func(k string) (string, bool) { v, ok := vars[k]; return v, ok },
		Stdin: strings.NewReader("pw\n"), Stdout: &bytes.Buffer{}, Stderr: &stderr}
	dirHolds := func(names ...string) {
		t.Helper()
		entries, err := os.ReadDir(dir)
		if err != nil {
			t.Fatal(err)
		}
		var got []string
		for _, e := range entries {
			got = append(got, e.Name())
		}
		if !slices.Equal(got, names) {
			t.Errorf("%s holds %v, want %v", dir, got, names)
		}
	}

	var tempSeen string
	errCrash := errors.New("crash")
	c := &editCLI{env: env, editor: fileEditor{beforeRename: func(temp string) error {
		// The new content is all in the temporary file, beside the old one.
		b, err := os.ReadFile(temp)
		if err != nil || !strings.Contains(string(b), "bob:$2y$04$") || filepath.Dir(temp) != dir {
			t.Errorf("temporary file %s: %q, %v; want bob in it, in %s", temp, b, err, dir)
		}
		tempSeen = temp
		return errCrash
	}}}
	if err := c.userAdd(context.Background(), []string{"--cost", "4", "bob"}); !errors.Is(err, errCrash) {
		t.Fatalf("got %v, want the injected crash", err)
	}
	if tempSeen == "" {
		t.Fatal("the hook never ran")
	}
	if got, _ := os.ReadFile(htpasswdPath); string(got) != old {
		t.Errorf("htpasswd: got %q, want the old content", got)
	}
	dirHolds("groups", "htpasswd", "htpasswd.lock")

	// What a killed command leaves: its temporary file. The next command clears it.
	if err := os.WriteFile(tempSeen, []byte("half"), 0o600); err != nil {
		t.Fatal(err)
	}
	env.Stdin = strings.NewReader("pw\n")
	if err := User(context.Background(), env, []string{"add", "--cost", "4", "bob"}); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(stderr.String(), "removed "+tempSeen) {
		t.Errorf("got %q, want it to say it removed %s", stderr.String(), tempSeen)
	}
	dirHolds("groups", "htpasswd", "htpasswd.lock")
}
