package main

import (
	"context"
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"time"

	"github.com/fsnotify/fsnotify"
)

// Debounce timing: a reload runs once events have been quiet for debounceQuiet (Apache's
// htpasswd rewrites in place with several writes), but never later than debounceMax after
// the first event, so a file that keeps changing is still picked up within a second.
const (
	debounceQuiet = 100 * time.Millisecond
	debounceMax   = 500 * time.Millisecond
)

// watcher turns file-system events, SIGHUP and a slow poll into calls of reload. It watches
// the parent directories of the files (and of their symlink targets) and does not filter by
// name or operation: a Kubernetes ..data swap names neither file, and reload skips content
// that did not change, so a stray event costs one read of two small files.
type watcher struct {
	paths   []string
	poll    time.Duration    // 0: no poll
	signals <-chan os.Signal // each value forces a reload (serve relays SIGHUP); may be nil
	reload  func(trigger string) error
	logger  *slog.Logger
	started func() // called once the watches are in place; may be nil
	// newFSWatcher makes the fsnotify watcher; nil means fsnotify.NewWatcher.
	newFSWatcher func() (*fsnotify.Watcher, error)
}

// run watches until ctx is done. It returns an error only if fsnotify stops on its own.
func (w *watcher) run(ctx context.Context) error {
	// Without fsnotify (the host's inotify limits reached) the poll and signals still work.
	var events <-chan fsnotify.Event
	var watchErrors <-chan error
	newFSWatcher := w.newFSWatcher
	if newFSWatcher == nil {
		newFSWatcher = fsnotify.NewWatcher
	}
	fsw, err := newFSWatcher()
	if err != nil {
		w.logger.Warn("cannot watch the files for changes; relying on --poll-interval and SIGHUP (raise fs.inotify.max_user_instances to fix)",
			"error", err, "poll_interval", w.poll.String())
		fsw = nil
	} else {
		defer fsw.Close()
		events, watchErrors = fsw.Events, fsw.Errors
	}
	watched := map[string]bool{}
	w.watchDirs(fsw, watched)

	var tick <-chan time.Time
	if w.poll > 0 {
		t := time.NewTicker(w.poll)
		defer t.Stop()
		tick = t.C
	}

	if w.started != nil {
		w.started()
	}
	debounce := time.NewTimer(time.Hour)
	debounce.Stop()
	var firstEvent time.Time // zero: no reload pending
	trigger := func(reason string) {
		w.reload(reason)
		firstEvent = time.Time{}
		w.watchDirs(fsw, watched) // a directory may have appeared, or a symlink moved
	}
	for {
		select {
		case <-ctx.Done():
			return nil
		case ev, ok := <-events:
			if !ok {
				return errors.New("file watcher closed")
			}
			w.logger.Debug("file event", "name", ev.Name, "op", ev.Op.String())
			if ev.Has(fsnotify.Remove) || ev.Has(fsnotify.Rename) {
				delete(watched, ev.Name) // a watched directory went: watch it again when it is back
			}
			now := time.Now()
			if firstEvent.IsZero() {
				firstEvent = now
			}
			wait := debounceQuiet
			if left := firstEvent.Add(debounceMax).Sub(now); left < wait {
				wait = max(left, 0)
			}
			debounce.Reset(wait)
		case err, ok := <-watchErrors:
			if !ok {
				return errors.New("file watcher closed")
			}
			// An overflow loses events: reload to be sure.
			w.logger.Warn("file watch error; reloading to be safe", "error", err)
			trigger("watch-error")
		case <-debounce.C:
			trigger("file-change")
		case <-w.signals:
			trigger("signal")
		case <-tick:
			if firstEvent.IsZero() { // else a file is being written: the debounce reloads soon
				trigger("poll")
			}
		}
	}
}

// watchDirs adds a watch on each file's directory and on its resolved target's directory.
// A directory that does not exist yet is retried at the next reload (and warned about once);
// the poll covers it meanwhile. watched maps a directory to whether its watch is in place.
func (w *watcher) watchDirs(fsw *fsnotify.Watcher, watched map[string]bool) {
	if fsw == nil {
		return
	}
	for _, p := range w.paths {
		dirs := []string{filepath.Dir(p)}
		if target, err := filepath.EvalSymlinks(p); err == nil {
			dirs = append(dirs, filepath.Dir(target))
		}
		for _, d := range dirs {
			if watched[d] {
				continue
			}
			if err := fsw.Add(d); err != nil {
				if _, warned := watched[d]; !warned {
					w.logger.Warn("cannot watch directory; changes there are seen by the poll and SIGHUP only", "dir", d, "error", err)
				}
				watched[d] = false
				continue
			}
			watched[d] = true
		}
	}
}
