package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/registry-auth/registry-auth/e2e/harness"
)

// authHeaders are the headers Traefik's forwardAuth sends with a GET of
// manifestPath, for requests straight to an auth server.
func authHeaders() map[string]string {
	return map[string]string{
		"X-Forwarded-Method": "GET",
		"X-Forwarded-Uri":    manifestPath,
		"X-Forwarded-Proto":  "https",
		"X-Forwarded-Host":   "127.0.0.1:5043",
		"X-Forwarded-For":    "127.0.0.1",
	}
}

// checkSetup asks the setup the questions whose answers show it is set up
// as described, before anything is measured, and returns what passed.
func (l *lab) checkSetup(ctx context.Context, s *stack) ([]string, error) {
	var passed []string
	u := s.files.pusher()
	cases := []struct {
		name, path, method, auth string
		want                     []int
		skip                     bool
	}{
		{"no credentials", manifestPath, http.MethodGet, "", []int{http.StatusUnauthorized}, !s.id.authenticates()},
		{"wrong password", manifestPath, http.MethodGet, credential{u.User, u.Password + "-wrong"}.basic(), []int{http.StatusUnauthorized}, !s.id.authenticates()},
		{"open without credentials", manifestPath, http.MethodGet, "", []int{http.StatusOK}, s.id.authenticates()},
		// Apache answers a user outside the group with 401 (its default),
		// registry-auth with 403.
		{"push refused outside pusher", "/v2/" + manifestRepo + "/blobs/uploads/", http.MethodPost, s.files.reader().basic(),
			[]int{http.StatusUnauthorized, http.StatusForbidden}, !s.id.enforcesPushGroup() || len(s.files.Users) < 2},
	}
	for _, c := range cases {
		if c.skip {
			continue
		}
		req, err := http.NewRequestWithContext(ctx, c.method, s.proxyURL(c.path), nil)
		if err != nil {
			return passed, err
		}
		if c.auth != "" {
			req.Header.Set("Authorization", c.auth)
		}
		resp, err := l.client.Do(req)
		if err != nil {
			return passed, fmt.Errorf("check %q: %w", c.name, err)
		}
		resp.Body.Close()
		if !slices.Contains(c.want, resp.StatusCode) {
			return passed, fmt.Errorf("check %q: %s %s answered %d, want %v", c.name, c.method, c.path, resp.StatusCode, c.want)
		}
		passed = append(passed, fmt.Sprintf("%s → %d", c.name, resp.StatusCode))
	}
	return passed, nil
}

// warmUp sends one request per user to url (8 at a time) and fails unless
// every one is answered 200: it fills caches, and proves every user works.
func (l *lab) warmUp(ctx context.Context, url string, users []credential, headers map[string]string) error {
	_, err := l.getEach(ctx, "warm-up GET", url, users, headers, 8)
	return err
}

// getEach sends one GET of url for each user, workers at a time, and returns
// the latencies. Any answer but 200 fails it; what names the request in errors.
func (l *lab) getEach(ctx context.Context, what, url string, users []credential, headers map[string]string, workers int) ([]time.Duration, error) {
	work := make(chan credential)
	var mu sync.Mutex
	var lat []time.Duration
	var errs []error
	var wg sync.WaitGroup
	for range workers {
		wg.Go(func() {
			for c := range work {
				start := time.Now()
				status, err := get(ctx, l.client, url, c.basic(), headers)
				d := time.Since(start)
				if err == nil && status != http.StatusOK {
					err = fmt.Errorf("%s %s as %s: status %d, want 200", what, url, c.User, status)
				}
				mu.Lock()
				lat = append(lat, d)
				if err != nil {
					errs = append(errs, err)
				}
				mu.Unlock()
			}
		})
	}
	for _, c := range users {
		work <- c
	}
	close(work)
	wg.Wait()
	if len(errs) > 3 {
		errs = append(errs[:3], fmt.Errorf("and %d more", len(errs)-3))
	}
	return lat, errors.Join(errs...)
}

// basics returns the Authorization values of users.
func basics(users []credential) []string {
	var out []string
	for _, u := range users {
		out = append(out, u.basic())
	}
	return out
}

// measurePush pushes the big layer through s and records the memory of the
// proxy and of the separate auth process around it.
func (l *lab) measurePush(ctx context.Context, s *stack, size int64) (*pushResult, error) {
	res := &pushResult{Size: size, AuthName: s.authName}
	if s.auth != nil {
		m, err := s.auth.Memory()
		if err != nil {
			return nil, err
		}
		res.AuthBefore = m.RSS
	}
	resetErr := s.proxy.ResetPeak()
	if s.auth != nil {
		resetErr = errors.Join(resetErr, s.auth.ResetPeak())
	}
	// Sampled peaks, in case clear_refs is not allowed here.
	var sampledProxy, sampledAuth int64
	stopSampling := make(chan struct{})
	sampled := make(chan struct{})
	go func() {
		defer close(sampled)
		tick := time.NewTicker(50 * time.Millisecond)
		defer tick.Stop()
		for {
			if m, err := s.proxy.Memory(); err == nil {
				sampledProxy = max(sampledProxy, m.RSS)
			}
			if s.auth != nil {
				if m, err := s.auth.Memory(); err == nil {
					sampledAuth = max(sampledAuth, m.RSS)
				}
			}
			select {
			case <-stopSampling:
				return
			case <-tick.C:
			}
		}
	}()
	rc := registryClient{proxyAddr: s.proxyAddr, roots: l.certs.Pool}
	wall, digest, err := rc.pushLayer(ctx, s.files.pusher(), size, uint64(s.id))
	close(stopSampling)
	<-sampled
	if err != nil {
		return nil, err
	}
	res.Wall = wall
	if derr := l.deleteBlob(digest.Hex); derr != nil {
		fmt.Fprintf(l.out, "  (could not remove the pushed blob from the registry's storage: %v)\n", derr)
	}
	if resetErr != nil {
		res.PeakSampled = true
		res.ProxyPeak, res.AuthPeak = sampledProxy, sampledAuth
		return res, nil
	}
	pm, err := s.proxy.Memory()
	if err != nil {
		return nil, err
	}
	res.ProxyPeak = pm.HWM
	if s.auth != nil {
		am, err := s.auth.Memory()
		if err != nil {
			return nil, err
		}
		res.AuthPeak = am.HWM
	}
	return res, nil
}

// measureReloads adds n new users to the running setup's htpasswd file, one
// at a time, and returns how long each took to be accepted through the
// proxy. Even-numbered writes are editor-style saves (temporary file renamed
// over), odd ones Apache's htpasswd rewriting the file in place.
func (l *lab) measureReloads(ctx context.Context, s *stack, n int) ([]reloadSample, error) {
	var samples []reloadSample
	for k := range n {
		c := credential{
			User:     fmt.Sprintf("new%d-%03d", s.id, k),
			Password: fmt.Sprintf("new-user-%d-%03d-secret", s.id, k),
		}
		method := "rename"
		if k%2 == 1 {
			method = "htpasswd"
		}
		// Each write's poller comes from its own loopback address: the
		// refusals before the reload are failed logins, which registry-auth
		// counts per client address (50 per 5 minutes by default); a real
		// new user arrives from their own machine too.
		source := net.IPv4(127, 0, 1, byte(1+k%250))
		lat, err := l.reloadOnce(ctx, s, c, method, source)
		if err != nil {
			return samples, fmt.Errorf("new user %d (%s): %w", k, method, err)
		}
		samples = append(samples, reloadSample{Method: method, Latency: lat})
	}
	return samples, nil
}

// reloadOnce writes c into the htpasswd file and polls until c is accepted.
func (l *lab) reloadOnce(ctx context.Context, s *stack, c credential, method string, source net.IP) (time.Duration, error) {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	tr := newTransport(l.certs.Pool, 2)
	dialer := &net.Dialer{Timeout: 5 * time.Second, LocalAddr: &net.TCPAddr{IP: source}}
	tr.DialContext = func(ctx context.Context, network, addr string) (net.Conn, error) {
		if err := loopbackOnly("http://" + addr); err != nil {
			return nil, err
		}
		return dialer.DialContext(ctx, network, addr)
	}
	defer tr.CloseIdleConnections()
	client := &http.Client{Transport: tr, Timeout: 10 * time.Second}

	var line string
	if method == "rename" {
		// Hashed before the clock starts: an editor saves a finished file.
		var err error
		if line, err = apacheHash(ctx, c, s.files.Cost); err != nil {
			return 0, err
		}
	}
	url := s.proxyURL(manifestPath)
	firstRefusal := make(chan error, 1)
	type accepted struct {
		at  time.Time
		err error
	}
	done := make(chan accepted, 1)
	go func() {
		first := true
		for {
			status, err := get(ctx, client, url, c.basic(), nil)
			at := time.Now()
			if first {
				first = false
				if err == nil && status != http.StatusUnauthorized {
					err = fmt.Errorf("before the write: status %d, want 401", status)
				}
				firstRefusal <- err
				if err != nil {
					return
				}
				continue
			}
			switch {
			case err != nil:
				done <- accepted{err: err}
				return
			case status == http.StatusOK:
				done <- accepted{at: at}
				return
			case status != http.StatusUnauthorized:
				done <- accepted{err: fmt.Errorf("status %d while waiting, want 401 then 200", status)}
				return
			}
		}
	}()
	if err := <-firstRefusal; err != nil {
		return 0, err
	}

	var written time.Time
	switch method {
	case "rename":
		old, err := os.ReadFile(s.files.Htpasswd)
		if err != nil {
			return 0, err
		}
		written = time.Now()
		if err := writeFileAtomic(s.files.Htpasswd, append(old, []byte(line+"\n")...)); err != nil {
			return 0, err
		}
	case "htpasswd":
		cmd := exec.CommandContext(ctx, "htpasswd", "-i", "-B", "-C", fmt.Sprint(s.files.Cost), s.files.Htpasswd, c.User)
		cmd.Stdin = strings.NewReader(c.Password)
		if out, err := cmd.CombinedOutput(); err != nil {
			return 0, fmt.Errorf("htpasswd: %w: %s", err, out)
		}
		fi, err := os.Stat(s.files.Htpasswd)
		if err != nil {
			return 0, err
		}
		written = fi.ModTime() // htpasswd hashes first, then writes
	}
	a := <-done
	if a.err != nil {
		return 0, a.err
	}
	return a.at.Sub(written), nil
}

// measureMemory starts registry-auth on an htpasswd file of many users and
// reads its resident memory once loaded and after logins distinct logins.
func (l *lab) measureMemory(ctx context.Context, files *userFiles, logins int) (_ *memoryResult, err error) {
	dir, err := os.MkdirTemp(l.dir, "memory-")
	if err != nil {
		return nil, err
	}
	s := &stack{dir: dir}
	if s.files, err = copyUserFiles(files, filepath.Join(dir, "auth")); err != nil {
		return nil, err
	}
	start := time.Now()
	defer func() { err = errors.Join(err, harness.StopTogether(s.auth)) }()
	if err := l.startRegistryAuth(ctx, s, s.files); err != nil {
		return nil, err
	}
	res := &memoryResult{Users: len(files.Users), Cost: files.Cost, Load: time.Since(start)}
	if res.AfterLoad, err = s.auth.Memory(); err != nil {
		return nil, err
	}
	logins = min(logins, len(files.Users))
	if err := l.warmUp(ctx, "http://"+s.authAddr+"/auth", files.Users[:logins], authHeaders()); err != nil {
		return nil, err
	}
	res.Logins = logins
	if res.AfterLogins, err = s.auth.Memory(); err != nil {
		return nil, err
	}
	return res, nil
}

// idleWindow and idleCPU define "idle": less than idleCPU of CPU time used
// in idleWindow, i.e. under 10% of one core.
const (
	idleWindow = 300 * time.Millisecond
	idleCPU    = 30 * time.Millisecond
)

// waitIdle waits until procs (and their children) stop using CPU: a proxy
// keeps working on requests queued before wrk closed its connections
// (Apache at bcrypt cost 10 has seconds of them), and the next measurement
// must not pay for them. It gives up after timeout and says so.
func waitIdle(ctx context.Context, timeout time.Duration, procs ...*harness.Process) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	tick := time.NewTicker(idleWindow)
	defer tick.Stop()
	cpu := func() time.Duration {
		var sum time.Duration
		for _, p := range procs {
			sum += p.CPUTime()
		}
		return sum
	}
	last := cpu()
	for {
		select {
		case <-ctx.Done():
			return fmt.Errorf("still busy after %s: %w", timeout, ctx.Err())
		case <-tick.C:
		}
		now := cpu()
		if now-last < idleCPU {
			return nil
		}
		last = now
	}
}

// procsOf returns the processes of s and the registry behind it, and the
// directory for setups 10 and 11.
func (l *lab) procsOf(s *stack) []*harness.Process {
	procs := []*harness.Process{l.registry.Process}
	if s.id.directory() && l.directory != nil {
		procs = append(procs, l.directory.proc)
	}
	for _, p := range []*harness.Process{s.proxy, s.auth} {
		if p != nil {
			procs = append(procs, p)
		}
	}
	return procs
}

// paced is a fixed-rate load: workers connections, each sending one
// request per interval (a ticker drops the ticks of a late request), so the
// server is measured below saturation, which wrk's closed loop never is.
type paced struct {
	URL      string
	Headers  map[string]string
	Auths    []string
	Workers  int
	Interval time.Duration // per worker: the rate is Workers/Interval
	Duration time.Duration
}

// runPaced runs p with the harness's own HTTP client (keep-alive, loopback
// only) and returns exact percentiles of the time from sending a request to
// reading its whole answer. Requests answered with a status other than 200
// count as status errors, other failures as read errors.
func (l *lab) runPaced(ctx context.Context, p paced) (loadResult, error) {
	if err := loopbackOnly(p.URL); err != nil {
		return loadResult{}, err
	}
	client := &http.Client{Transport: newTransport(nil, p.Workers), Timeout: 10 * time.Second}
	defer client.CloseIdleConnections()
	ctx, cancel := context.WithTimeout(ctx, p.Duration)
	defer cancel()
	type sample struct {
		lat time.Duration
		ok  bool
		err bool
	}
	results := make([][]sample, p.Workers)
	var wg sync.WaitGroup
	start := time.Now()
	for w := range p.Workers {
		wg.Go(func() {
			tick := time.NewTicker(p.Interval)
			defer tick.Stop()
			for i := w; ; i += p.Workers {
				select {
				case <-ctx.Done():
					return
				case <-tick.C:
				}
				t0 := time.Now()
				status, err := get(ctx, client, p.URL, p.Auths[i%len(p.Auths)], p.Headers)
				if ctx.Err() != nil {
					return // cut by the end of the run, not an answer
				}
				results[w] = append(results[w], sample{lat: time.Since(t0), ok: err == nil && status == http.StatusOK, err: err != nil})
			}
		})
	}
	wg.Wait()
	elapsed := time.Since(start)
	var lats []time.Duration
	var res loadResult
	for _, rs := range results {
		for _, s := range rs {
			lats = append(lats, s.lat)
			switch {
			case s.err:
				res.ReadErr++
			case !s.ok:
				res.StatusErr++
			}
		}
	}
	if len(lats) == 0 {
		return res, fmt.Errorf("paced load on %s: no request completed", p.URL)
	}
	slices.Sort(lats)
	pct := func(q float64) int64 {
		return lats[min(len(lats)-1, int(q*float64(len(lats))))].Microseconds()
	}
	res.Requests = int64(len(lats))
	res.DurationUS = elapsed.Microseconds()
	res.P50US, res.P90US, res.P99US, res.MaxUS = pct(0.50), pct(0.90), pct(0.99), lats[len(lats)-1].Microseconds()
	res.Elapsed = elapsed
	return res, nil
}
