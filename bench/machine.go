package main

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"os/exec"
	"runtime"
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
