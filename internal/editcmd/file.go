package editcmd

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/gofrs/flock"
	"github.com/google/renameio/v2"
)

// How the user and group commands write a file, so that the service (or Apache) reading it at
// any moment sees the old file or the new one, and two commands at once both land:
//
//   - Under a lock: flock(2) on FILE.lock beside the file (htpasswd.lock, groups.lock), which
//     is created once and left there; the file is read again under the lock, so an edit
//     always starts from the last one. The kernel drops the lock when a command dies.
//   - Atomically: a temporary file .FILE<digits> in the same directory is written, synced,
//     given the old file's mode, owner and group, and renamed over the file; then the
//     directory is synced, so the rename survives a crash. A crash leaves the old file or the
//     new one and at worst the temporary file, which the next command removes under the lock.
//
// renameio (which this relies on) does not build on Windows, and neither does this file.

// newFilePerm is the mode of a file the commands create when there is no sibling file to copy
// it from: readable by the service's group, and by nobody else.
const newFilePerm fs.FileMode = 0o640

// lockWait is how long a command waits for another one's lock before giving up.
const lockWait = 30 * time.Second

// fileEditor locks, reads and atomically replaces htpasswd and groups files. The zero value
// is ready to use; an editor is not safe for concurrent use, but separate editors (and
// processes) are, through the locks.
type fileEditor struct {
	// beforeRename, when not nil, runs once the temporary file is written and before it is
	// renamed over the file; an error stops the write there, as a crash would, and the
	// temporary file is removed. Tests interrupt a write with it.
	beforeRename func(tempPath string) error
}

// fileState is a file as read under its lock.
type fileState struct {
	path string      // with symlinks resolved: the file that is replaced
	data []byte      // nil when the file does not exist
	info fs.FileInfo // nil when the file does not exist
}

// editPath is the file that path names: a symlink is followed, so that the file it points to
// is replaced and the link stays.
func editPath(path string) (string, error) {
	real, err := filepath.EvalSymlinks(path)
	if errors.Is(err, fs.ErrNotExist) {
		return path, nil
	}
	return real, err
}

// lockPath is the lock file of the file at path.
func lockPath(path string) string { return path + ".lock" }

// lock takes the lock of each path, in the order given (callers always give the htpasswd
// file first, so that two commands cannot wait on each other), and removes the temporary
// files that an interrupted command left beside them, which it returns. unlock releases
// every lock.
func (e *fileEditor) lock(ctx context.Context, paths ...string) (unlock func(), leftovers []string, err error) {
	var held []*flock.Flock
	unlock = func() {
		for _, l := range held {
			l.Unlock()
		}
	}
	ctx, cancel := context.WithTimeout(ctx, lockWait)
	defer cancel()
	for _, p := range paths {
		real, err := editPath(p)
		if err != nil {
			unlock()
			return nil, nil, err
		}
		// Whoever may read the file may take its lock: the lock file gets the file's mode.
		perm := newFilePerm
		if info, err := os.Stat(real); err == nil {
			perm = info.Mode().Perm()
		}
		l := flock.New(lockPath(real), flock.SetPermissions(perm))
		ok, err := l.TryLockContext(ctx, 10*time.Millisecond)
		if err != nil || !ok {
			unlock()
			if err == nil || errors.Is(err, context.DeadlineExceeded) {
				return nil, nil, fmt.Errorf("another command has held %s for %v: wait for it to finish (the lock goes with the process that holds it)", lockPath(real), lockWait)
			}
			return nil, nil, fmt.Errorf("locking %s (the directory must be writable to create it): %w", lockPath(real), err)
		}
		held = append(held, l)
		removed, err := removeLeftovers(real)
		if err != nil {
			unlock()
			return nil, nil, err
		}
		leftovers = append(leftovers, removed...)
	}
	return unlock, leftovers, nil
}

// removeLeftovers removes the temporary files of path that a command killed mid-write left:
// renameio names them "." + the file's name + decimal digits, and only a holder of the lock
// makes them, so while the lock is held every such file is stale.
func removeLeftovers(path string) ([]string, error) {
	dir, base := filepath.Split(path)
	entries, err := os.ReadDir(filepath.Clean(dir))
	if err != nil {
		return nil, fmt.Errorf("reading the directory of %s: %w", path, err)
	}
	var removed []string
	for _, ent := range entries {
		digits, ok := strings.CutPrefix(ent.Name(), "."+base)
		if !ok || digits == "" || strings.Trim(digits, "0123456789") != "" || !ent.Type().IsRegular() {
			continue
		}
		name := filepath.Join(dir, ent.Name())
		if err := os.Remove(name); err != nil {
			return removed, fmt.Errorf("removing %s, left by an interrupted edit: %w", name, err)
		}
		removed = append(removed, name)
	}
	return removed, nil
}

// read reads the file at path; call it with the file's lock held. A missing file is not an
// error: its state has no data and no info.
func (e *fileEditor) read(path string) (fileState, error) {
	real, err := editPath(path)
	if err != nil {
		return fileState{}, err
	}
	st := fileState{path: real}
	info, err := os.Stat(real)
	if errors.Is(err, fs.ErrNotExist) {
		return st, nil
	}
	if err != nil {
		return st, err
	}
	if !info.Mode().IsRegular() {
		return st, fmt.Errorf("%s is not a regular file", real)
	}
	if st.data, err = os.ReadFile(real); err != nil {
		return st, err
	}
	st.info = info
	return st, nil
}

// replace writes data to old's file atomically; call it with the file's lock held. The new
// file gets old's mode, owner and group, or, for a file that did not exist, those of like (a
// sibling file the service reads too) when like is not nil, else mode newFilePerm.
func (e *fileEditor) replace(old fileState, data []byte, like fs.FileInfo) (err error) {
	model := old.info
	if model == nil {
		model = like
	}
	perm := newFilePerm
	if model != nil {
		perm = model.Mode().Perm()
	}
	dir := filepath.Dir(old.path)
	// The temporary file must be in the same directory: a rename does not cross file
	// systems, and the service watches this directory.
	t, err := renameio.NewPendingFile(old.path, renameio.WithTempDir(dir), renameio.WithStaticPermissions(perm))
	if err != nil {
		return fmt.Errorf("creating a temporary file beside %s (the directory must be writable): %w", old.path, err)
	}
	defer t.Cleanup() // after a successful rename it does nothing
	if model != nil {
		if err := copyOwner(t.File, model); err != nil {
			return fmt.Errorf("%s: %w", old.path, err)
		}
	}
	if _, err := t.Write(data); err != nil {
		return fmt.Errorf("writing %s: %w", t.Name(), err)
	}
	if e.beforeRename != nil {
		if err := e.beforeRename(t.Name()); err != nil {
			return err
		}
	}
	if err := t.CloseAtomicallyReplace(); err != nil { // syncs, closes, renames
		return fmt.Errorf("replacing %s: %w", old.path, err)
	}
	if err := syncDir(dir); err != nil {
		return fmt.Errorf("%s is replaced, but syncing its directory failed, so a crash could still undo it: %w", old.path, err)
	}
	return nil
}

// copyOwner gives f the owner and group of model, where they differ.
func copyOwner(f *os.File, model fs.FileInfo) error {
	want, ok := model.Sys().(*syscall.Stat_t)
	if !ok {
		return nil
	}
	have, err := f.Stat()
	if err != nil {
		return err
	}
	got := have.Sys().(*syscall.Stat_t)
	uid, gid := -1, -1
	if got.Uid != want.Uid {
		uid = int(want.Uid)
	}
	if got.Gid != want.Gid {
		gid = int(want.Gid)
	}
	if uid == -1 && gid == -1 {
		return nil
	}
	if err := f.Chown(uid, gid); err != nil {
		return fmt.Errorf("cannot give the new file the owner %d and group %d of the old one, which the service may need to read it (%v): run the command as root, or as the file's owner and a member of group %d", want.Uid, want.Gid, err, want.Gid)
	}
	return nil
}

// syncDir flushes a directory's entries (a rename) to disk.
func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	if err := d.Sync(); err != nil && !errors.Is(err, syscall.EINVAL) { // EINVAL: the file system cannot sync a directory
		return err
	}
	return nil
}
