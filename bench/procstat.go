package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/registry-auth/registry-auth/e2e/harness"
)

// resetPeak sets pid's VmHWM back to its current VmRSS (Linux >= 4.0,
// clear_refs value 5), so that a later VmHWM is the peak of what ran in
// between. It needs the rights to write the process's clear_refs (same user
// or root); the caller falls back to sampling when it fails.
func resetPeak(pid int) error {
	return os.WriteFile(fmt.Sprintf("/proc/%d/clear_refs", pid), []byte("5"), 0)
}

// processTree returns pid and all its descendants (Apache's workers are
// children of the process we started), read from /proc/*/stat.
func processTree(pid int) []int {
	parents := map[int][]int{}
	stats, _ := filepath.Glob("/proc/[0-9]*/stat")
	for _, path := range stats {
		b, err := os.ReadFile(path)
		if err != nil {
			continue // the process exited meanwhile
		}
		// Format: pid (comm) state ppid ...; comm may hold spaces and parentheses.
		s := string(b)
		end := strings.LastIndexByte(s, ')')
		if end < 0 {
			continue
		}
		fields := strings.Fields(s[end+1:])
		if len(fields) < 2 {
			continue
		}
		child, err1 := strconv.Atoi(strings.Fields(s)[0])
		ppid, err2 := strconv.Atoi(fields[1])
		if err1 != nil || err2 != nil {
			continue
		}
		parents[ppid] = append(parents[ppid], child)
	}
	tree := []int{pid}
	for i := 0; i < len(tree); i++ {
		tree = append(tree, parents[tree[i]]...)
	}
	return tree
}

// treeMem sums harness.ReadMemory over pid and its descendants. The sum counts pages
// shared between the processes once per process, so for a multi-process
// server it is an upper bound.
func treeMem(pid int) (harness.Memory, error) {
	var sum harness.Memory
	var firstErr error
	for _, p := range processTree(pid) {
		m, err := harness.ReadMemory(p)
		if err != nil {
			if p == pid && firstErr == nil {
				firstErr = err
			}
			continue
		}
		sum.RSS += m.RSS
		sum.HWM += m.HWM
	}
	return sum, firstErr
}

// resetTreePeak calls resetPeak on pid and its descendants.
func resetTreePeak(pid int) error {
	var firstErr error
	for _, p := range processTree(pid) {
		if err := resetPeak(p); err != nil && firstErr == nil {
			firstErr = err
		}
	}
	return firstErr
}

// mib formats bytes as MiB with one decimal.
func mib(b int64) string {
	return fmt.Sprintf("%.1f MiB", float64(b)/(1<<20))
}

// cpuTicks returns the CPU time (user + system, in clock ticks) used so far
// by the live processes of the trees rooted at pids.
func cpuTicks(pids ...int) int64 {
	var sum int64
	for _, root := range pids {
		for _, p := range processTree(root) {
			b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", p))
			if err != nil {
				continue
			}
			s := string(b)
			end := strings.LastIndexByte(s, ')')
			if end < 0 {
				continue
			}
			// After "(comm)": state(3) ppid(4) ... utime(14) stime(15).
			f := strings.Fields(s[end+1:])
			if len(f) < 13 {
				continue
			}
			u, err1 := strconv.ParseInt(f[11], 10, 64)
			st, err2 := strconv.ParseInt(f[12], 10, 64)
			if err1 == nil && err2 == nil {
				sum += u + st
			}
		}
	}
	return sum
}
