package harness

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"time"
)

// stopGrace is how long Stop waits after SIGTERM before it sends SIGKILL.
const stopGrace = 10 * time.Second

// Process is a program started by the harness. Its standard output and error
// both go to LogFile. If the test binary dies, the kernel kills the process
// (Pdeathsig), so no program outlives a crashed or timed-out test.
type Process struct {
	Name    string // a short label used in messages, e.g. "traefik"
	LogFile string

	cmd      *exec.Cmd
	done     chan struct{} // closed when the process has exited
	waitErr  error         // the exit status; read only after done is closed
	stopping atomic.Bool   // set by Stop and Kill: an exit after it is expected
	stopErr  error         // Stop's error, kept by Stack for its report
}

// StartProcess starts bin with args, its output appended to
// logDir/<name>.log. The environment holds only PATH, HOME and TMPDIR from
// the test's environment plus env, so a developer's REGISTRY_AUTH_* or
// TRAEFIK_* variables cannot change what is tested.
func StartProcess(name, logDir, bin string, args, env []string) (*Process, error) {
	logFile := filepath.Join(logDir, name+".log")
	f, err := os.OpenFile(logFile, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, err
	}
	defer f.Close() // the child holds its own copy of the descriptor

	cmd := exec.Command(bin, args...)
	cmd.Env = append(baseEnv(), env...)
	cmd.Stdout = f
	cmd.Stderr = f
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL, Setpgid: true}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	p := &Process{Name: name, LogFile: logFile, cmd: cmd, done: make(chan struct{})}
	go func() {
		p.waitErr = cmd.Wait()
		close(p.done)
	}()
	return p, nil
}

func baseEnv() []string {
	var env []string
	for _, k := range []string{"PATH", "HOME", "TMPDIR"} {
		if v, ok := os.LookupEnv(k); ok {
			env = append(env, k+"="+v)
		}
	}
	return env
}

// Pid returns the process id.
func (p *Process) Pid() int { return p.cmd.Process.Pid }

// Done is closed when the process has exited, for whatever reason.
func (p *Process) Done() <-chan struct{} { return p.done }

// Unexpected reports whether the process exited without being asked to by
// Stop or Kill: the sign of a program that misbehaved.
func (p *Process) Unexpected() bool {
	select {
	case <-p.done:
		return !p.stopping.Load()
	default:
		return false
	}
}

// ExitErr returns the exit status once the process has exited, or nil while
// it runs.
func (p *Process) ExitErr() error {
	select {
	case <-p.done:
		return p.waitErr
	default:
		return nil
	}
}

// Stop sends SIGTERM, waits up to 10 seconds for the process to exit, then
// kills it. It returns an error if the process had to be killed or exited
// with a failure of its own (not the SIGTERM). Calling Stop again is safe.
func (p *Process) Stop() error {
	p.stopping.Store(true)
	select {
	case <-p.done:
		return p.exitError()
	default:
	}
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	timer := time.NewTimer(stopGrace)
	defer timer.Stop()
	select {
	case <-p.done:
		return p.exitError()
	case <-timer.C:
		p.Kill()
		return fmt.Errorf("%s (pid %d) ignored SIGTERM for %v and was killed", p.Name, p.Pid(), stopGrace)
	}
}

// Kill sends SIGKILL to the process and waits for it to exit.
func (p *Process) Kill() {
	p.stopping.Store(true)
	_ = p.cmd.Process.Kill()
	<-p.done
}

// exitError reports a failing exit status, ignoring death by SIGTERM or
// SIGKILL, which Stop itself causes.
func (p *Process) exitError() error {
	var exit *exec.ExitError
	if !errors.As(p.waitErr, &exit) {
		return p.waitErr
	}
	if ws, ok := exit.Sys().(syscall.WaitStatus); ok && ws.Signaled() &&
		(ws.Signal() == syscall.SIGTERM || ws.Signal() == syscall.SIGKILL) {
		return nil
	}
	return fmt.Errorf("%s exited: %w", p.Name, p.waitErr)
}

// Logs returns everything the process has written so far.
func (p *Process) Logs() string {
	b, err := os.ReadFile(p.LogFile)
	if err != nil {
		return fmt.Sprintf("(cannot read %s: %v)", p.LogFile, err)
	}
	return string(b)
}

// LogTail returns at most the last max bytes of the log, cut at a line start.
func (p *Process) LogTail(max int) string {
	logs := p.Logs()
	if len(logs) <= max {
		return logs
	}
	logs = logs[len(logs)-max:]
	if i := strings.IndexByte(logs, '\n'); i >= 0 {
		logs = logs[i+1:]
	}
	return "[...]\n" + logs
}

// RSS returns the process's resident set size in bytes (VmRSS in
// /proc/PID/status).
func (p *Process) RSS() (int64, error) {
	m, err := ReadMemory(p.Pid())
	return m.RSS, err
}

// Memory is a process's resident memory as /proc/PID/status reports it, in
// bytes: VmRSS now, VmHWM the peak since start (or since the peak was reset
// through /proc/PID/clear_refs).
type Memory struct {
	RSS, HWM int64
}

// ReadMemory reads VmRSS and VmHWM of pid.
func ReadMemory(pid int) (Memory, error) {
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

// WaitReady polls check until it succeeds, the timeout passes, ctx ends or
// the process exits; in the last three cases the error includes the tail of
// the process's log.
func (p *Process) WaitReady(ctx context.Context, timeout time.Duration, check func() error) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	go func() {
		select {
		case <-p.done:
			cancel()
		case <-ctx.Done():
		}
	}()
	err := WaitFor(ctx, timeout, check)
	if err == nil {
		return nil
	}
	if ee := p.ExitErr(); ee != nil || p.Unexpected() {
		err = fmt.Errorf("%s exited (%v) before it was ready: %w", p.Name, ee, err)
	}
	return fmt.Errorf("%w\n--- %s log ---\n%s", err, p.Name, p.LogTail(8<<10))
}
