package e2e

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"time"
)

// secretVolume lays out a Secret's files in dir as kubelet's atomic writer does for a Secret
// volume (kubernetes pkg/volume/util/atomic_writer.go): the files in a directory named after
// the time, "..2026_12_05_18_00_00.123456789"; a symlink ..data to it; and for each file a
// symlink NAME -> ..data/NAME. An update writes a new timestamped directory, points
// ..data_tmp at it, renames ..data_tmp over ..data (the one atomic step: a reader sees the
// old files or the new ones), adds and removes the NAME links, and removes the old
// directory.
type secretVolume struct{ dir string }

// write makes the volume hold exactly files.
func (v secretVolume) write(files map[string][]byte) error {
	old, _ := os.Readlink(filepath.Join(v.dir, "..data"))
	data, err := os.MkdirTemp(v.dir, time.Now().UTC().Format("..2006_01_02_15_04_05."))
	if err != nil {
		return err
	}
	// kubelet gives the directory the volume's mode bits; the files defaultMode (0440 in the
	// base, readable by the pod's fsGroup).
	if err := os.Chmod(data, 0o755); err != nil {
		return err
	}
	for name, content := range files {
		if err := os.WriteFile(filepath.Join(data, name), content, 0o440); err != nil {
			return err
		}
	}
	tmp := filepath.Join(v.dir, "..data_tmp")
	if err := os.Symlink(filepath.Base(data), tmp); err != nil {
		return err
	}
	if err := os.Rename(tmp, filepath.Join(v.dir, "..data")); err != nil {
		return err
	}
	entries, err := os.ReadDir(v.dir)
	if err != nil {
		return err
	}
	for _, e := range entries {
		name := e.Name()
		if name[0] == '.' && len(name) > 1 && name[1] == '.' {
			continue // ..data and the timestamped directories
		}
		if _, keep := files[name]; !keep {
			if err := os.Remove(filepath.Join(v.dir, name)); err != nil {
				return err
			}
		}
	}
	for _, name := range sortedNames(files) {
		link := filepath.Join(v.dir, name)
		if _, err := os.Lstat(link); err == nil {
			continue
		}
		if err := os.Symlink(filepath.Join("..data", name), link); err != nil {
			return err
		}
	}
	if old != "" {
		if err := os.RemoveAll(filepath.Join(v.dir, old)); err != nil {
			return fmt.Errorf("removing the old data directory: %w", err)
		}
	}
	return nil
}

func sortedNames(files map[string][]byte) []string {
	names := make([]string, 0, len(files))
	for name := range files {
		names = append(names, name)
	}
	slices.Sort(names)
	return names
}
