package main

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/fsnotify/fsnotify"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

// reloadDeadline bounds how long a test waits for a change to take effect. The product
// promise is one second (the e2e suite and the benchmark measure it); the margin is for
// -race on a loaded 2-core machine.
const reloadDeadline = 3 * time.Second

// startWatcher runs a watcher over st's files (and the given extra paths) until the test ends.
func startWatcher(t *testing.T, st *store, poll time.Duration, signals <-chan os.Signal, paths ...string) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	w := &watcher{paths: paths, poll: poll, signals: signals, reload: st.reload, logger: slog.New(slog.NewTextHandler(io.Discard, nil))}
	ready := make(chan struct{})
	w.started = func() { close(ready) }
	go func() { done <- w.run(ctx) }()
	<-ready
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("watcher: %v", err)
		}
	})
}

// hasUser reports whether the current snapshot has user.
func hasUser(st *store, user string) func() bool {
	return func() bool { _, ok := st.snapshot().users[user]; return ok }
}

// TestWatcherSeesEveryKindOfChange covers the ways files really change
// (docs/registry-protocol.md, "How files change on disk").
func TestWatcherSeesEveryKindOfChange(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name   string
		change func(t *testing.T, f testFiles, data string)
	}{
		{"editor renames a temp file over it", func(t *testing.T, f testFiles, data string) {
			tmp := filepath.Join(f.dir, ".htpasswd.swp")
			writeFile(t, tmp, data)
			if err := os.Rename(tmp, f.htpasswd); err != nil {
				t.Fatal(err)
			}
		}},
		{"htpasswd rewrites in place in several writes", func(t *testing.T, f testFiles, data string) {
			fh, err := os.OpenFile(f.htpasswd, os.O_WRONLY|os.O_TRUNC, 0)
			if err != nil {
				t.Fatal(err)
			}
			half := len(data) / 2
			fh.WriteString(data[:half]) // a moment of partial content
			fh.Sync()
			fh.WriteString(data[half:])
			fh.Close()
		}},
		{"deleted then recreated", func(t *testing.T, f testFiles, data string) {
			os.Remove(f.htpasswd)
			writeFile(t, f.htpasswd, data)
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			f := newTestFiles(t, htpasswdLines(t, "bob", "bob-secret"), "pusher: bob\n")
			st, _ := newTestStore(t, f, time.Minute, nil)
			startWatcher(t, st, 0, nil, f.htpasswd, f.groups)
			tt.change(t, f, htpasswdLines(t, "bob", "bob-secret", "dave", "dave-secret"))
			took := waitFor(t, reloadDeadline, "dave to be loaded", hasUser(st, "dave"))
			t.Logf("change in effect after %v", took)
		})
	}
}

// TestWatcherKubernetesSymlinkSwap: a Secret mount swaps ..data; no event names the file.
func TestWatcherKubernetesSymlinkSwap(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	mkVersion := func(name, htpasswd string) {
		os.Mkdir(filepath.Join(dir, name), 0o755)
		writeFile(t, filepath.Join(dir, name, "htpasswd"), htpasswd)
		writeFile(t, filepath.Join(dir, name, "groups"), "pusher: bob\n")
	}
	mkVersion("..v1", htpasswdLines(t, "bob", "bob-secret"))
	must(t, os.Symlink("..v1", filepath.Join(dir, "..data")))
	must(t, os.Symlink("..data/htpasswd", filepath.Join(dir, "htpasswd")))
	must(t, os.Symlink("..data/groups", filepath.Join(dir, "groups")))
	f := testFiles{dir: dir, htpasswd: filepath.Join(dir, "htpasswd"), groups: filepath.Join(dir, "groups")}
	st, _ := newTestStore(t, f, time.Minute, nil)
	startWatcher(t, st, 0, nil, f.htpasswd, f.groups)

	// What the kubelet does: new version directory, new link, rename over ..data.
	mkVersion("..v2", htpasswdLines(t, "bob", "bob-secret", "erin", "erin-secret"))
	must(t, os.Symlink("..v2", filepath.Join(dir, "..data_tmp")))
	must(t, os.Rename(filepath.Join(dir, "..data_tmp"), filepath.Join(dir, "..data")))
	os.RemoveAll(filepath.Join(dir, "..v1"))
	waitFor(t, reloadDeadline, "erin to be loaded", hasUser(st, "erin"))
}

// TestWatcherKeepsOldOnInvalidWrite: a broken file is refused and the old users stay.
func TestWatcherKeepsOldOnInvalidWrite(t *testing.T) {
	t.Parallel()
	f := newTestFiles(t, htpasswdLines(t, "bob", "bob-secret"), "pusher: bob\n")
	st, m := newTestStore(t, f, time.Minute, nil)
	startWatcher(t, st, 0, nil, f.htpasswd, f.groups)
	before := st.snapshot()
	writeFile(t, f.htpasswd, "this line has no colon\n")
	waitFor(t, reloadDeadline, "the failed reload", func() bool {
		return testutil.ToFloat64(m.reloads.WithLabelValues("failure")) >= 1
	})
	if st.snapshot() != before {
		t.Error("got a new snapshot from an invalid file, want the old one kept")
	}
	// And the next good write is picked up.
	writeFile(t, f.htpasswd, htpasswdLines(t, "frank", "frank-secret"))
	waitFor(t, reloadDeadline, "frank to be loaded", hasUser(st, "frank"))
}

// TestWatcherGroupsChange: an edit of the groups file changes who may push.
func TestWatcherGroupsChange(t *testing.T) {
	t.Parallel()
	f := newTestFiles(t, htpasswdLines(t, "bob", "bob-secret", "carol", "carol-secret"), "pusher: bob\n")
	st, _ := newTestStore(t, f, time.Minute, nil)
	startWatcher(t, st, 0, nil, f.htpasswd, f.groups)
	writeFile(t, f.groups, "pusher: bob\npusher: carol\n")
	waitFor(t, reloadDeadline, "carol to join pusher", func() bool { return st.snapshot().inGroup("carol", "pusher") })
}

// TestWatcherPollWithoutEvents: with nothing watched (as on NFS), the poll finds the change.
func TestWatcherPollWithoutEvents(t *testing.T) {
	t.Parallel()
	f := newTestFiles(t, htpasswdLines(t, "bob", "bob-secret"), "")
	st, _ := newTestStore(t, f, time.Minute, nil)
	startWatcher(t, st, 50*time.Millisecond, nil) // no paths: no directory is watched
	writeFile(t, f.htpasswd, htpasswdLines(t, "bob", "bob-secret", "gina", "gina-secret"))
	waitFor(t, reloadDeadline, "gina to be loaded", hasUser(st, "gina"))
}

// TestWatcherSignal: a signal (SIGHUP in serve) reloads at once.
func TestWatcherSignal(t *testing.T) {
	t.Parallel()
	f := newTestFiles(t, htpasswdLines(t, "bob", "bob-secret"), "")
	st, _ := newTestStore(t, f, time.Minute, nil)
	signals := make(chan os.Signal, 1)
	startWatcher(t, st, 0, signals) // no paths, no poll: only the signal can reload
	writeFile(t, f.htpasswd, htpasswdLines(t, "bob", "bob-secret", "hank", "hank-secret"))
	signals <- os.Interrupt
	waitFor(t, reloadDeadline, "hank to be loaded", hasUser(st, "hank"))
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// TestWatcherWithoutFSNotify: when inotify cannot be had (the host's limits reached), the
// service says so and the poll still finds changes.
func TestWatcherWithoutFSNotify(t *testing.T) {
	t.Parallel()
	f := newTestFiles(t, htpasswdLines(t, "bob", "bob-secret"), "")
	st, _ := newTestStore(t, f, time.Minute, nil)
	logs := &lockedBuffer{}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	w := &watcher{
		paths:        []string{f.htpasswd},
		poll:         50 * time.Millisecond,
		reload:       st.reload,
		logger:       slog.New(slog.NewTextHandler(logs, nil)),
		newFSWatcher: func() (*fsnotify.Watcher, error) { return nil, errors.New("too many open files") },
	}
	go func() { done <- w.run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("watcher: %v", err)
		}
	})
	writeFile(t, f.htpasswd, htpasswdLines(t, "bob", "bob-secret", "ivan", "ivan-secret"))
	waitFor(t, reloadDeadline, "ivan to be loaded by the poll", hasUser(st, "ivan"))
	if !strings.Contains(logs.String(), "relying on --poll-interval and SIGHUP") {
		t.Errorf("no warning about the missing file watch in: %s", logs)
	}
}
