package harness

import (
	"bufio"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// Memory is resident memory as /proc/PID/status reports it, in bytes: VmRSS
// now, VmHWM the peak since start (or since ResetPeak).
type Memory struct {
	RSS, HWM int64
}

// Memory returns the resident memory of the process and its live
// descendants, summed. The sum counts pages that the processes share once
// per process, so for a server of several processes (Apache) it is an upper
// bound. It fails if the process itself cannot be read (it has exited).
func (p *Process) Memory() (Memory, error) {
	var sum Memory
	for _, pid := range append([]int{p.Pid()}, Descendants(p.Pid())...) {
		m, err := readMemory(pid)
		if err != nil {
			if pid == p.Pid() {
				return Memory{}, err
			}
			continue // a child that exited meanwhile
		}
		sum.RSS += m.RSS
		sum.HWM += m.HWM
	}
	return sum, nil
}

// ResetPeak sets VmHWM of the process and its descendants back to their
// VmRSS (Linux >= 4.0, clear_refs value 5), so that a later Memory().HWM is
// the peak of what ran in between. It needs the right to write the
// processes' clear_refs (same user, or root); a caller that gets an error
// can sample Memory().RSS instead.
func (p *Process) ResetPeak() error {
	var firstErr error
	for _, pid := range append([]int{p.Pid()}, Descendants(p.Pid())...) {
		if err := os.WriteFile(fmt.Sprintf("/proc/%d/clear_refs", pid), []byte("5"), 0); err != nil && firstErr == nil {
			firstErr = err
		}
	}
	return firstErr
}

// clockTick is the unit of the CPU times in /proc/PID/stat (USER_HZ, 100
// on every Linux architecture Go supports).
const clockTick = 10 * time.Millisecond

// CPUTime returns the CPU time (user and system) used so far by the process
// and its live descendants; 0 once the process has exited.
func (p *Process) CPUTime() time.Duration {
	var ticks int64
	for _, pid := range append([]int{p.Pid()}, Descendants(p.Pid())...) {
		if st, err := readStat(pid); err == nil {
			ticks += st.utime + st.stime
		}
	}
	return time.Duration(ticks) * clockTick
}

// Descendants returns the live descendants of pid (children, their
// children...), read from /proc.
func Descendants(pid int) []int {
	children := map[int][]int{}
	dirs, _ := filepath.Glob("/proc/[0-9]*")
	for _, dir := range dirs {
		child, err := strconv.Atoi(filepath.Base(dir))
		if err != nil {
			continue
		}
		st, err := readStat(child)
		if err != nil {
			continue // it exited meanwhile
		}
		children[st.ppid] = append(children[st.ppid], child)
	}
	var tree []int
	for next := []int{pid}; len(next) > 0; {
		p := next[0]
		next = append(next[1:], children[p]...)
		tree = append(tree, children[p]...)
	}
	return tree
}

// stat is what the harness reads of /proc/PID/stat.
type stat struct {
	ppid         int
	utime, stime int64 // clock ticks
}

func readStat(pid int) (stat, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return stat{}, err
	}
	// "pid (comm) state ppid ... utime stime ...": comm may hold spaces and
	// parentheses, so the fields are counted from its closing parenthesis,
	// state being field 3 of proc(5).
	s := string(b)
	end := strings.LastIndexByte(s, ')')
	if end < 0 {
		return stat{}, fmt.Errorf("/proc/%d/stat: no command name in %q", pid, s)
	}
	f := strings.Fields(s[end+1:])
	if len(f) < 13 {
		return stat{}, fmt.Errorf("/proc/%d/stat: %d fields after the command name, want at least 13", pid, len(f))
	}
	var st stat
	var errs [3]error
	st.ppid, errs[0] = strconv.Atoi(f[1])               // field 4
	st.utime, errs[1] = strconv.ParseInt(f[11], 10, 64) // field 14
	st.stime, errs[2] = strconv.ParseInt(f[12], 10, 64) // field 15
	for _, err := range errs {
		if err != nil {
			return stat{}, fmt.Errorf("/proc/%d/stat: %w", pid, err)
		}
	}
	return st, nil
}

// readMemory reads VmRSS and VmHWM of pid.
func readMemory(pid int) (Memory, error) {
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return Memory{}, err
	}
	defer f.Close()
	var m Memory
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		key, rest, ok := strings.Cut(sc.Text(), ":")
		if !ok || (key != "VmRSS" && key != "VmHWM") {
			continue
		}
		fields := strings.Fields(rest) // "1234 kB"
		if len(fields) != 2 || fields[1] != "kB" {
			return Memory{}, fmt.Errorf("/proc/%d/status: unexpected %s line %q", pid, key, rest)
		}
		kb, err := strconv.ParseInt(fields[0], 10, 64)
		if err != nil {
			return Memory{}, fmt.Errorf("/proc/%d/status: %s: %w", pid, key, err)
		}
		if key == "VmRSS" {
			m.RSS = kb * 1024
		} else {
			m.HWM = kb * 1024
		}
	}
	if err := sc.Err(); err != nil {
		return Memory{}, err
	}
	if m.RSS == 0 && m.HWM == 0 {
		return Memory{}, fmt.Errorf("/proc/%d/status: no VmRSS/VmHWM (process gone or a kernel thread)", pid)
	}
	return m, nil
}
