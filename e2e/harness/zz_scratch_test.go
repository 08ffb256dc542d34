package harness

import (
	"os"
	"path/filepath"
	"testing"
	"time"
)

func TestZZScratchStop(t *testing.T) {
	bin, _ := BuildKubeAPIServer(t.Context())
	for _, together := range []bool{false, true} {
		dir, _ := os.MkdirTemp("", "kstop-")
		ps := NewProcesses(filepath.Join(dir, "logs"))
		k, err := StartKubeAPIServer(t.Context(), ps, KubeOptions{Bin: bin, Etcd: "/usr/bin/etcd", Dir: dir})
		if err != nil {
			t.Fatal(err)
		}
		start := time.Now()
		if together {
			err = ps.StopAll()
		} else {
			err = k.Stop()
			t.Logf("apiserver alone: %v %v", time.Since(start), err)
			err = ps.StopAll()
		}
		t.Logf("together=%v: %v %v; logs in %s", together, time.Since(start), err, dir)
	}
}
