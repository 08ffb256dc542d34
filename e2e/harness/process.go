package harness

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// stopGrace is how long Stop waits after SIGTERM before it kills a process
// group: more than Traefik's default graceTimeOut (10 s) and Go's
// http.Server.Shutdown wait for new connections (5 s).
const stopGrace = 15 * time.Second

// startTimeout bounds how long a program may take to become ready.
const startTimeout = 30 * time.Second

// ErrKilled marks a process group that had to be killed: its leader did not
// exit within the grace period after SIGTERM, or processes of its group
// outlived the leader.
var ErrKilled = errors.New("did not exit after SIGTERM and was killed")

// Process is a program started by Processes.Start, the leader of a process
// group of its own (its children, such as Apache's workers, stay in that
// group). Its standard output and error both go to LogFile. If the harness
// dies, the kernel kills the process (Pdeathsig), so no program outlives a
// crashed or timed-out test. Its methods are safe for concurrent use.
type Process struct {
	Name    string // a short label used in messages and for the log, e.g. "traefik" or "registry-auth-2"
	LogFile string

	cmd      *exec.Cmd
	done     chan struct{} // closed when the process has exited
	waitErr  error         // the exit status; read only after done is closed
	stopping atomic.Bool   // set by Stop: an exit after it is expected
	stopOnce sync.Once
	stopErr  error // Stop's result; read only after stopOnce has run
}

// startProcess starts bin with args, its output appended to
// logDir/<name>.log. The environment holds only PATH, HOME and TMPDIR from
// the harness's environment plus env, so a developer's REGISTRY_AUTH_* or
// TRAEFIK_* variables cannot change what is tested.
func startProcess(name, logDir, bin string, args, env []string) (*Process, error) {
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

// Done returns a channel closed when the process has exited, for whatever reason.
func (p *Process) Done() <-chan struct{} { return p.done }

// Pid returns the process id, which is also its process group's id.
func (p *Process) Pid() int { return p.cmd.Process.Pid }

// Unexpected reports whether the process exited without being asked to by
// Stop: the sign of a program that misbehaved.
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

// Stop sends SIGTERM to the process's whole group, waits up to 15 seconds
// for the process to exit, then kills the group; once the process has
// exited it also kills whatever of its group is left. The whole group gets
// the signal because Apache's parent otherwise waits for a busy worker for
// 11 s before it kills it. Stop returns an error wrapping ErrKilled if it
// had to kill anything, or else the process's own failure (death by the
// SIGTERM is none). Stop does nothing on a nil *Process; calling it again,
// from any goroutine, waits for the first call and returns its result.
func (p *Process) Stop() error {
	if p == nil {
		return nil
	}
	_, err := p.stop()
	return err
}

// stop is Stop, and reports whether this call was the one that stopped the
// process.
func (p *Process) stop() (first bool, err error) {
	p.stopOnce.Do(func() {
		first = true
		p.stopping.Store(true)
		p.stopErr = p.stopGroup()
	})
	return first, p.stopErr
}

func (p *Process) stopGroup() error {
	pgid := p.Pid()
	var killed error
	select {
	case <-p.done:
	default:
		_ = syscall.Kill(-pgid, syscall.SIGTERM)
		timer := time.NewTimer(stopGrace)
		select {
		case <-p.done:
		case <-timer.C:
			_ = syscall.Kill(-pgid, syscall.SIGKILL)
			<-p.done
			killed = fmt.Errorf("%s (pid %d) %w after %v", p.Name, pgid, ErrKilled, stopGrace)
		}
		timer.Stop()
	}
	if syscall.Kill(-pgid, syscall.SIGKILL) == nil {
		// Something of the group outlived its leader.
		return errors.Join(killed, fmt.Errorf("%s (pid %d): leftover processes of its group %w", p.Name, pgid, ErrKilled))
	}
	if killed != nil {
		return killed
	}
	return p.exitError()
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

// StopTogether stops procs (nil ones are skipped) at the same time and
// waits until all have exited: Traefik's graceful shutdown waits for its
// connections to the auth server, which stopping the auth server ends. It
// returns the errors of those it stopped that did not stop cleanly; a
// process some earlier call had stopped is waited for, and its error not
// reported again (that call returned it).
func StopTogether(procs ...*Process) error {
	errs := make([]error, len(procs))
	var wg sync.WaitGroup
	for i, p := range procs {
		if p == nil {
			continue
		}
		wg.Go(func() {
			if first, err := p.stop(); first && err != nil {
				errs[i] = fmt.Errorf("stop %s: %w", p.Name, err)
			}
		})
	}
	wg.Wait()
	return errors.Join(errs...)
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

// WaitHTTP waits until a GET of url (no credentials) through client answers
// one of the statuses want. It gives up after 30 seconds, when ctx ends or
// when the process exits; the error then includes the tail of the process's
// log.
func (p *Process) WaitHTTP(ctx context.Context, client *http.Client, url string, want ...int) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	go func() {
		select {
		case <-p.done:
			cancel()
		case <-ctx.Done():
		}
	}()
	err := WaitFor(ctx, startTimeout, func() error {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		if err != nil {
			return err
		}
		resp, err := client.Do(req)
		if err != nil {
			return err
		}
		resp.Body.Close()
		if !slices.Contains(want, resp.StatusCode) {
			return fmt.Errorf("GET %s: got %s, want %v", url, resp.Status, want)
		}
		return nil
	})
	if err == nil {
		return nil
	}
	if ee := p.ExitErr(); ee != nil || p.Unexpected() {
		err = fmt.Errorf("%s exited (%v) before it was ready: %w", p.Name, ee, err)
	}
	return fmt.Errorf("%w\n--- %s log ---\n%s", err, p.Name, p.LogTail(8<<10))
}
