package harness

import (
	"os"
	"strconv"
	"sync"
)

// Processes starts programs and stops them: every process of one Stack or
// of one benchmark run. Each program's standard output and error go to
// <logDir>/<name>.log; a name started again gets a number, so that every
// run of a program keeps its own log (registry-auth.log, registry-auth-2.log).
// Its methods are safe for concurrent use.
type Processes struct {
	logDir string

	mu      sync.Mutex
	started []*Process
	uses    map[string]int // name -> how many times it was started
}

// NewProcesses returns an empty set whose logs go to logDir, which Start
// creates if needed.
func NewProcesses(logDir string) *Processes {
	return &Processes{logDir: logDir, uses: map[string]int{}}
}

// Start starts bin with args in a process group of its own and remembers it
// for StopAll. The environment holds only PATH, HOME and TMPDIR of the
// harness's environment plus env, so a developer's REGISTRY_AUTH_* or
// TRAEFIK_* variables cannot change what is measured. It does not wait for
// the program to be ready: see Process.WaitHTTP.
func (ps *Processes) Start(name, bin string, args, env []string) (*Process, error) {
	if err := os.MkdirAll(ps.logDir, 0o755); err != nil {
		return nil, err
	}
	ps.mu.Lock()
	ps.uses[name]++
	if n := ps.uses[name]; n > 1 {
		name += "-" + strconv.Itoa(n)
	}
	ps.mu.Unlock()
	p, err := startProcess(name, ps.logDir, bin, args, env)
	if err != nil {
		return nil, err
	}
	ps.mu.Lock()
	ps.started = append(ps.started, p)
	ps.mu.Unlock()
	return p, nil
}

// all returns the processes started so far, oldest first.
func (ps *Processes) all() []*Process {
	ps.mu.Lock()
	defer ps.mu.Unlock()
	return append([]*Process(nil), ps.started...)
}

// StopAll stops every process started here, all at the same time (see
// StopTogether), and returns the errors of those that did not stop cleanly.
// Processes stopped before are waited for and not reported again. It may
// be called more than once.
func (ps *Processes) StopAll() error {
	return StopTogether(ps.all()...)
}
