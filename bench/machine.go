package main

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"strings"
	"time"

	"github.com/registry-auth/registry-auth/e2e/harness"
)

// machine describes where the figures were measured.
type machine struct {
	CPUs     int
	CPUModel string
	Memory   string
	Kernel   string
	Versions [][2]string // program, version line
	LoadAvg  string      // 1, 5, 15 minute load averages when the run started
}

// describeMachine reads /proc and asks each program for its version.
func describeMachine(ctx context.Context, repoRoot string, bins map[string]string) machine {
	m := machine{CPUs: runtime.NumCPU()}
	m.CPUModel = procField("/proc/cpuinfo", "model name")
	if kb := procField("/proc/meminfo", "MemTotal"); kb != "" {
		var n int64
		if _, err := fmt.Sscanf(kb, "%d kB", &n); err == nil {
			m.Memory = fmt.Sprintf("%.1f GiB", float64(n)/(1<<20))
		}
	}
	if b, err := os.ReadFile("/proc/sys/kernel/osrelease"); err == nil {
		m.Kernel = "Linux " + strings.TrimSpace(string(b))
	}
	m.LoadAvg = loadAvg()
	version := func(label string, name string, args ...string) {
		ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		defer cancel()
		out, err := exec.CommandContext(ctx, name, args...).CombinedOutput()
		line := firstLine(string(out))
		if err != nil && line == "" {
			line = "unknown (" + err.Error() + ")"
		}
		m.Versions = append(m.Versions, [2]string{label, line})
	}
	m.Versions = append(m.Versions, [2]string{"Go (harness)", runtime.Version()})
	version("registry-auth", bins["registry-auth"], "--version")
	version("registry-auth checkout", "git", "-C", repoRoot, "describe", "--always", "--dirty", "--abbrev=12")
	version("Traefik", bins["traefik"], "version")
	m.Versions[len(m.Versions)-1][1] = harness.TraefikVersion + " built from its module source (" + m.Versions[len(m.Versions)-1][1] + ")"
	version("registry", bins["registry"], "--version")
	if _, v, ok := strings.Cut(m.Versions[len(m.Versions)-1][1], " "); ok {
		m.Versions[len(m.Versions)-1][1] = v // drop the binary's path
	}
	version("Apache httpd", "apache2", "-v")
	version("wrk", "wrk", "-v")
	if slapd, err := harness.LookTool("slapd"); err == nil {
		version("OpenLDAP slapd (setups 10 and 11)", slapd, "-VV")
	}
	return m
}

// loadAvg returns the first three fields of /proc/loadavg.
func loadAvg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "unknown"
	}
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return "unknown"
	}
	return strings.Join(f[:3], " ")
}

// procField returns the value of the first "key: value" line of a /proc file.
func procField(path, key string) string {
	f, err := os.Open(path)
	if err != nil {
		return ""
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), ":")
		if ok && strings.TrimSpace(k) == key {
			return strings.TrimSpace(v)
		}
	}
	return ""
}

// firstLine returns the first non-empty line of s, with Traefik's
// multi-line "version" output folded into one line.
func firstLine(s string) string {
	var parts []string
	for _, line := range strings.Split(s, "\n") {
		line = strings.Join(strings.Fields(line), " ")
		if line == "" {
			continue
		}
		if strings.HasPrefix(line, "Version:") || strings.HasPrefix(line, "Go version:") {
			parts = append(parts, line) // Traefik: "Version: 3.6.12", "Go version: go1.26"
			continue
		}
		if len(parts) == 0 {
			return line
		}
	}
	return strings.Join(parts, ", ")
}

// cpuSnapshot is the machine's CPU time and the part of it this process and
// its reaped descendants used, in clock ticks.
type cpuSnapshot struct {
	busy, total, ours int64
}

// takeCPUSnapshot reads /proc/stat and /proc/self/stat. Every program the
// harness starts is waited for, so once they have all exited their CPU time
// (and that of their own children, such as Apache's workers) is in ours.
func takeCPUSnapshot() (cpuSnapshot, error) {
	var s cpuSnapshot
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return s, err
	}
	line, _, _ := strings.Cut(string(b), "\n")
	f := strings.Fields(line)
	if len(f) < 9 || f[0] != "cpu" {
		return s, fmt.Errorf("/proc/stat: unexpected first line %q", line)
	}
	var v [8]int64 // user nice system idle iowait irq softirq steal
	for i := range v {
		if v[i], err = strconv.ParseInt(f[i+1], 10, 64); err != nil {
			return s, fmt.Errorf("/proc/stat: %w", err)
		}
	}
	s.busy = v[0] + v[1] + v[2] + v[5] + v[6] + v[7]
	s.total = s.busy + v[3] + v[4]
	b, err = os.ReadFile("/proc/self/stat")
	if err != nil {
		return s, err
	}
	st := string(b)
	rest := strings.Fields(st[strings.LastIndexByte(st, ')')+1:])
	// After "(comm)": utime, stime, cutime, cstime are fields 12 to 15.
	if len(rest) < 15 {
		return s, fmt.Errorf("/proc/self/stat: too few fields")
	}
	for _, x := range rest[11:15] {
		n, err := strconv.ParseInt(x, 10, 64)
		if err != nil {
			return s, fmt.Errorf("/proc/self/stat: %w", err)
		}
		s.ours += n
	}
	return s, nil
}

// othersShare returns the fraction of the machine's CPU time between a and b
// that went to processes other than the harness and what it started
// (including time the hypervisor stole), or -1 if unknown.
func othersShare(a, b cpuSnapshot) float64 {
	total := b.total - a.total
	if total <= 0 || b.busy < a.busy {
		return -1
	}
	others := (b.busy - a.busy) - (b.ours - a.ours)
	return max(0, float64(others)/float64(total))
}
