package e2e

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/v1/remote"
	"golang.org/x/crypto/bcrypt"

	"github.com/registry-auth/registry-auth/e2e/harness"
)

const (
	reloadDuration    = 30 * time.Second // how long the load and the rewrites last at least
	reloadMinChanges  = 100              // changes (each 2 or 3 file writes) to make at least...
	reloadMaxDuration = 90 * time.Second // ...unless this much time has passed
	reloadHTTPClients = 28               // plain HTTP pullers (manifest and blob GETs)
	reloadGGCRClients = 4                // go-containerregistry pullers: 32 clients in all
	// Each client's pace: the machine has 2 cores shared by the clients,
	// Traefik, the registry and the service; unpaced clients would queue
	// every request (the probes too) behind seconds of backlog.
	httpPullInterval  = 100 * time.Millisecond // 10 requests/s per HTTP client
	ggcrPullInterval  = 500 * time.Millisecond // 2 pulls/s per go-containerregistry client
	reloadVisible     = time.Second            // a change must show within this of the write
	reloadGiveUp      = 5 * time.Second        // stop waiting for a change after this
	churnHashCost     = 4                      // bcrypt cost of the users added and removed
	maxReportedErrors = 20
)

// ociManifest is the media type of the test image's manifest: without it in
// Accept, the registry answers 404 to a manifest GET.
const ociManifest = "application/vnd.oci.image.manifest.v1+json"

// stableUsers are in every version of the files; the load runs as them.
var stableUsers = []account{
	pusher, reader,
	{"carol", "carol-reads-too"}, {"dave", "dave-reads-too"},
	{"erin", "erin-reads-too"}, {"frank", "frank-reads-too"},
}

// TestReloadUnderLoad rewrites the htpasswd and groups files a few hundred
// times, in every way docs/registry-protocol.md ("How files change on
// disk") lists, while 32 clients pull
// through Traefik as several users for 30 seconds (longer if the machine
// is too slow for 100 changes in that time). Each change removes the
// previous "churn" user and adds a new one (every other one in the push
// group). Users present in both old and new files must never see a 401; the
// removed user must be refused, and the new one accepted (and allowed to
// push when in the group), within one second of the write; the chain must
// never answer 5xx.
//
// "Within one second" is checked as users see it: no request sent one
// second or more after the write may get the old answer. Requests are
// probed one after another every few milliseconds, so the check does not
// depend on how long answers queue on a busy machine.
//
// The failed-login throttle is turned off: the probes of removed users are
// hundreds of failures from 127.0.0.1, which it would rightly answer with 429.
func TestReloadUnderLoad(t *testing.T) {
	if testing.Short() {
		t.Skip("runs 30 s of load; skipped with -short")
	}
	s := harness.StartStack(t, harness.StackOptions{
		HTPasswd: htpasswdFor(t, stableUsers...),
		Groups:   groupsFor(pusher),
		AuthArgs: []string{"--throttle-per-client", "0", "--throttle-per-user", "0"},
	})
	ctx := context.Background()
	img := randomOCIImage(t, 3, 4<<10)
	target := imageRef(t, s.Addr, "e2e/reload:v1")
	if err := remote.Write(target, img, ggcrOptions(ctx, s, &pusher)...); err != nil {
		t.Fatal(err)
	}
	layers, _ := img.Layers()
	var blobPaths []string
	for _, l := range layers {
		d, _ := l.Digest()
		blobPaths = append(blobPaths, "/v2/e2e/reload/blobs/"+d.String())
	}
	manifestPath := "/v2/e2e/reload/manifests/v1"

	stats := &loadStats{}
	loadCtx, stopLoad := context.WithCancel(ctx)
	defer stopLoad()
	var wg sync.WaitGroup
	for i := range reloadHTTPClients {
		wg.Go(func() { httpPuller(loadCtx, s, i, manifestPath, blobPaths, stats) })
	}
	for i := range reloadGGCRClients {
		wg.Go(func() { ggcrPuller(loadCtx, s, i, stats) })
	}

	w := newFileRewriter(t, s)
	start := time.Now()
	w.run()
	stopLoad()
	wg.Wait()
	t.Logf("ran %v", time.Since(start).Round(time.Millisecond))

	stats.report(t)
	w.report(t)
	reportDecisions(t, s)
	for _, e := range append(stats.errors, w.errors...) {
		t.Error(e)
	}
	if n := stats.dropped + w.dropped; n > 0 {
		t.Errorf("and %d more errors like these", n)
	}
	if w.fileWrites < 200 {
		t.Errorf("the files were rewritten %d times, want a few hundred", w.fileWrites)
	}
}

// loadStats collects what the pulling clients saw.
type loadStats struct {
	mu        sync.Mutex
	requests  int
	byStatus  map[int]int
	latencies []time.Duration
	pulls     int // complete go-containerregistry pulls
	errors    []string
	dropped   int // errors beyond maxReportedErrors
}

func (st *loadStats) record(status int, latency time.Duration) {
	st.mu.Lock()
	defer st.mu.Unlock()
	if st.byStatus == nil {
		st.byStatus = map[int]int{}
	}
	st.requests++
	st.byStatus[status]++
	st.latencies = append(st.latencies, latency)
}

func (st *loadStats) fail(format string, args ...any) {
	st.mu.Lock()
	defer st.mu.Unlock()
	if len(st.errors) < maxReportedErrors {
		st.errors = append(st.errors, fmt.Sprintf("%s: ", time.Now().Format("15:04:05.000"))+fmt.Sprintf(format, args...))
	} else {
		st.dropped++
	}
}

func (st *loadStats) report(t *testing.T) {
	t.Logf("load: %d HTTP requests by %d clients, statuses %v, latency p50 %v p99 %v; %d complete go-containerregistry pulls by %d clients",
		st.requests, reloadHTTPClients, st.byStatus, percentile(st.latencies, 50), percentile(st.latencies, 99), st.pulls, reloadGGCRClients)
}

// httpPuller GETs the manifest and the blobs through Traefik as the stable
// users in turn until ctx ends. Every answer must be 200.
func httpPuller(ctx context.Context, s *harness.Stack, id int, manifestPath string, blobPaths []string, st *loadStats) {
	client := s.HTTPClient()
	paced(ctx, httpPullInterval, id, func(n int) bool {
		u := stableUsers[n%len(stableUsers)]
		path := manifestPath
		if n%2 == 1 {
			path = blobPaths[n%len(blobPaths)]
		}
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, s.URL()+path, nil)
		req.Header.Set("Accept", ociManifest)
		req.SetBasicAuth(u.name, u.password)
		start := time.Now()
		resp, err := client.Do(req)
		if err != nil {
			if ctx.Err() == nil {
				st.fail("GET %s as %s: %v", path, u.name, err)
			}
			return false
		}
		_, err = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if ctx.Err() != nil {
			return false // cut by the end of the test: not counted
		}
		st.record(resp.StatusCode, time.Since(start))
		if resp.StatusCode != http.StatusOK || err != nil {
			st.fail("GET %s as %s (in every version of the files): got %s (body error %v), want 200", path, u.name, resp.Status, err)
		}
		return true
	})
}

// paced calls step with n = first, first+1, ... once per interval until ctx ends or step
// returns false.
func paced(ctx context.Context, interval time.Duration, first int, step func(n int) bool) {
	pace := time.NewTicker(interval)
	defer pace.Stop()
	for n := first; ; n++ {
		select {
		case <-ctx.Done():
			return
		case <-pace.C:
		}
		if !step(n) {
			return
		}
	}
}

// ggcrPuller pulls the image with go-containerregistry, layers included,
// as the stable users in turn until ctx ends. Retries are off, so that a
// 5xx is seen, not retried away.
func ggcrPuller(ctx context.Context, s *harness.Stack, id int, st *loadStats) {
	target, err := imageRefErr(s.Addr, "e2e/reload:v1")
	if err != nil {
		st.fail("%v", err)
		return
	}
	noRetry := []remote.Option{remote.WithRetryBackoff(remote.Backoff{Steps: 1}), remote.WithRetryStatusCodes()}
	paced(ctx, ggcrPullInterval, id, func(n int) bool {
		u := stableUsers[n%len(stableUsers)]
		err := harness.PullImage(target, ggcrOptions(ctx, s, &u, noRetry...)...)
		if ctx.Err() != nil {
			return false
		}
		if err != nil {
			st.fail("go-containerregistry pull as %s (in every version of the files): %v", u.name, err)
			return true
		}
		st.mu.Lock()
		st.pulls++
		st.mu.Unlock()
		return true
	})
}

// rewriteMethod is one way of replacing the files' content
// (docs/registry-protocol.md, "How files change on disk").
type rewriteMethod struct {
	name  string
	write func(w *fileRewriter, htpasswd, groups string, added, removed account) error
}

var rewriteMethods = []rewriteMethod{
	{"rename over (editors)", (*fileRewriter).renameOver},
	{"in place, several writes (htpasswd-style)", (*fileRewriter).inPlace},
	{"Apache htpasswd -b then -D", (*fileRewriter).apacheTool},
	{"delete then recreate", (*fileRewriter).deleteRecreate},
	{"Kubernetes ..data symlink swap", (*fileRewriter).kubernetesSwap},
}

// fileRewriter rewrites the stack's htpasswd and groups files and checks
// how soon the service sees each change.
type fileRewriter struct {
	t          *testing.T
	dir        string // the directory holding both files
	htpasswd   string // file names in dir
	groups     string
	stable     string // htpasswd lines of the stable users
	client     *http.Client
	url        string
	authURL    string       // registry-auth itself, for its reload timestamp
	authClient *http.Client // with Traefik's client certificate: /metrics needs one
	iterations map[string]int
	fileWrites int
	changes    int
	// Per kind of check, how long after the write the last old answer was
	// sent and the first new answer arrived.
	lastOld, firstNew map[string][]time.Duration
	serviceReload     []time.Duration // write to the service's own reload timestamp
	k8sVersion        int
	errors            []string
	dropped           int
}

func newFileRewriter(t *testing.T, s *harness.Stack) *fileRewriter {
	dir := filepath.Dir(s.HTPasswdFile)
	if filepath.Dir(s.GroupsFile) != dir {
		t.Fatalf("htpasswd %s and groups %s are in different directories", s.HTPasswdFile, s.GroupsFile)
	}
	return &fileRewriter{
		t: t, dir: dir,
		htpasswd: filepath.Base(s.HTPasswdFile), groups: filepath.Base(s.GroupsFile),
		stable:     htpasswdFor(t, stableUsers...),
		client:     s.HTTPClient(),
		url:        s.URL(),
		authURL:    s.AuthURL(),
		authClient: s.AuthClient(),
		iterations: map[string]int{},
		lastOld:    map[string][]time.Duration{},
		firstNew:   map[string][]time.Duration{},
	}
}

func (w *fileRewriter) fail(format string, args ...any) {
	if len(w.errors) < maxReportedErrors {
		w.errors = append(w.errors, fmt.Sprintf("%s: ", time.Now().Format("15:04:05.000"))+fmt.Sprintf(format, args...))
	} else {
		w.dropped++
	}
}

// The checks made after each change.
const (
	checkAdded    = "new user accepted"
	checkPushable = "new push-group member may push"
	checkRemoved  = "removed user refused"
)

// run makes changes for reloadDuration and at least reloadMinChanges (but
// stops at reloadMaxDuration), each adding a new user and removing the one
// added before, and checks how soon the service shows them.
func (w *fileRewriter) run() {
	start := time.Now()
	previous := account{}
	for i := 0; ; i++ {
		if since := time.Since(start); since >= reloadMaxDuration {
			w.fail("only %d changes in %v: the machine is too busy for this test", i, since.Round(time.Second))
			return
		} else if since >= reloadDuration && i >= reloadMinChanges {
			return
		}
		added := account{fmt.Sprintf("churn%03d", i), fmt.Sprintf("churn-password-%d", i)}
		inGroup := i%2 == 0
		hash, err := bcrypt.GenerateFromPassword([]byte(added.password), churnHashCost)
		if err != nil {
			w.t.Fatal(err)
		}
		htpasswd := fmt.Sprintf("# version %d\n%s%s:%s\n", i, w.stable, added.name, hash)
		groups := fmt.Sprintf("# version %d\npusher: %s", i, pusher.name)
		if inGroup {
			groups += " " + added.name
		}
		groups += "\nreaders: " + reader.name + "\n"

		m := rewriteMethods[i%len(rewriteMethods)]
		if err := m.write(w, htpasswd, groups, added, previous); err != nil {
			w.t.Fatalf("rewrite %d (%s): %v", i, m.name, err)
		}
		written := time.Now()
		w.iterations[m.name]++
		w.changes++

		w.waitFor(written, m.name, checkAdded, added, http.MethodGet, "/v2/e2e/reload/manifests/v1", http.StatusOK)
		if inGroup {
			w.waitFor(written, m.name, checkPushable, added, http.MethodPost, "/v2/e2e/reload/blobs/uploads/", http.StatusAccepted)
		}
		if previous.name != "" {
			w.waitFor(written, m.name, checkRemoved, previous, http.MethodGet, "/v2/e2e/reload/manifests/v1", http.StatusUnauthorized)
		}
		w.recordServiceReload(written)
		previous = added
	}
}

// waitFor sends a request as a, one after another, until one gets want.
// Any request sent reloadVisible or more after the write that gets another
// answer is an error, and so is a 5xx.
func (w *fileRewriter) waitFor(written time.Time, method, check string, a account, httpMethod, path string, want int) {
	var lastOld time.Duration = -1
	var last int
	err := harness.WaitFor(context.Background(), reloadGiveUp, func() error {
		ctx, cancel := context.WithTimeout(context.Background(), reloadGiveUp)
		defer cancel()
		req, _ := http.NewRequestWithContext(ctx, httpMethod, w.url+path, nil)
		req.Header.Set("Accept", ociManifest)
		req.SetBasicAuth(a.name, a.password)
		sent := time.Since(written)
		resp, err := w.client.Do(req)
		if err != nil {
			return err
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if last = resp.StatusCode; last >= 500 {
			w.fail("%s (%s, user %s): got %s", check, method, a.name, resp.Status)
		}
		if last != want {
			lastOld = sent
			return fmt.Errorf("got %d", last)
		}
		return nil
	})
	firstNew := time.Since(written)
	switch {
	case err != nil:
		w.fail("%s (%s, user %s): %s %s still got %d %v after the write, want %d within %v", check, method, a.name, httpMethod, path, last, reloadGiveUp, want, reloadVisible)
		return
	case lastOld >= reloadVisible:
		w.fail("%s (%s, user %s): %s %s sent %v after the write got %d, want %d from %v on", check, method, a.name, httpMethod, path, lastOld.Round(time.Millisecond), last, want, reloadVisible)
	}
	w.lastOld[check] = append(w.lastOld[check], max(lastOld, 0))
	w.firstNew[check] = append(w.firstNew[check], firstNew)
}

// recordServiceReload reads registry-auth's own time of its last reload
// (registry_auth_last_reload_success_timestamp_seconds), for the report.
func (w *fileRewriter) recordServiceReload(written time.Time) {
	lines, err := authMetricLines(w.authClient, w.authURL)
	if err != nil {
		w.fail("%v", err)
		return
	}
	if secs, ok, _ := metricSample(lines, "registry_auth_last_reload_success_timestamp_seconds"); ok {
		w.serviceReload = append(w.serviceReload, time.Unix(0, int64(secs*1e9)).Sub(written))
	}
}

func (w *fileRewriter) path(name string) string { return filepath.Join(w.dir, name) }

// renameOver writes each file under a temporary name and renames it over
// the original, as editors save.
func (w *fileRewriter) renameOver(htpasswd, groups string, _, _ account) error {
	for _, f := range []struct{ name, content string }{{w.htpasswd, htpasswd}, {w.groups, groups}} {
		tmp := w.path("." + f.name + ".swp")
		if err := os.WriteFile(tmp, []byte(f.content), 0o640); err != nil {
			return err
		}
		if err := os.Rename(tmp, w.path(f.name)); err != nil {
			return err
		}
		w.fileWrites++
	}
	return nil
}

// inPlace truncates each file and writes the new content in three writes
// cut in the middle of lines, so the file holds partial content between
// them, as Apache's htpasswd does with bigger files.
func (w *fileRewriter) inPlace(htpasswd, groups string, _, _ account) error {
	for _, f := range []struct{ name, content string }{{w.htpasswd, htpasswd}, {w.groups, groups}} {
		if err := writeInPlace(w.path(f.name), f.content); err != nil {
			return err
		}
		w.fileWrites++
	}
	return nil
}

func writeInPlace(path, content string) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_TRUNC, 0)
	if err != nil {
		return err
	}
	third := len(content) / 3
	for _, part := range []string{content[:third], content[third : 2*third], content[2*third:]} {
		if _, err := f.WriteString(part); err != nil {
			f.Close()
			return err
		}
	}
	return f.Close()
}

// apacheTool adds the new user and deletes the old one with Apache's own
// htpasswd (two in-place rewrites), and rewrites groups in place.
func (w *fileRewriter) apacheTool(_, groups string, added, removed account) error {
	runs := [][]string{{"-b", "-B", "-C", fmt.Sprint(churnHashCost), w.path(w.htpasswd), added.name, added.password}}
	if removed.name != "" {
		runs = append(runs, []string{"-D", w.path(w.htpasswd), removed.name})
	}
	for _, args := range runs {
		if out, err := exec.Command("htpasswd", args...).CombinedOutput(); err != nil {
			return fmt.Errorf("htpasswd %s: %v: %s", args[0], err, out)
		}
		w.fileWrites++
	}
	if err := writeInPlace(w.path(w.groups), groups); err != nil {
		return err
	}
	w.fileWrites++
	return nil
}

// deleteRecreate removes each file and creates it again.
func (w *fileRewriter) deleteRecreate(htpasswd, groups string, _, _ account) error {
	for _, f := range []struct{ name, content string }{{w.htpasswd, htpasswd}, {w.groups, groups}} {
		if err := os.Remove(w.path(f.name)); err != nil {
			return err
		}
		if err := os.WriteFile(w.path(f.name), []byte(f.content), 0o640); err != nil {
			return err
		}
		w.fileWrites++
	}
	return nil
}

// kubernetesSwap updates the files as the kubelet updates a Secret volume:
// both live in a new timestamped directory, the ..data symlink is swapped
// to it atomically by rename, and the files themselves are symlinks
// through ..data, so no event names them.
func (w *fileRewriter) kubernetesSwap(htpasswd, groups string, _, _ account) error {
	w.k8sVersion++
	version := fmt.Sprintf("..2026_01_01_00_00_%02d.%06d", w.k8sVersion%60, w.k8sVersion)
	if err := os.Mkdir(w.path(version), 0o755); err != nil {
		return err
	}
	for _, f := range []struct{ name, content string }{{w.htpasswd, htpasswd}, {w.groups, groups}} {
		if err := os.WriteFile(filepath.Join(w.path(version), f.name), []byte(f.content), 0o640); err != nil {
			return err
		}
	}
	old, _ := os.Readlink(w.path("..data"))
	if err := os.Symlink(version, w.path("..data_tmp")); err != nil {
		return err
	}
	if err := os.Rename(w.path("..data_tmp"), w.path("..data")); err != nil {
		return err
	}
	// The first swap turns the plain files into symlinks through ..data
	// (atomically, by rename); later swaps leave them alone.
	for _, name := range []string{w.htpasswd, w.groups} {
		if target, err := os.Readlink(w.path(name)); err == nil && target == filepath.Join("..data", name) {
			continue
		}
		if err := os.Symlink(filepath.Join("..data", name), w.path(name+".link")); err != nil {
			return err
		}
		if err := os.Rename(w.path(name+".link"), w.path(name)); err != nil {
			return err
		}
	}
	w.fileWrites += 2
	if old != "" {
		return os.RemoveAll(w.path(old))
	}
	return nil
}

func (w *fileRewriter) report(t *testing.T) {
	var methods []string
	for name, n := range w.iterations {
		methods = append(methods, fmt.Sprintf("%s: %d", name, n))
	}
	slices.Sort(methods)
	t.Logf("rewrites: %d file writes in %d changes (%s)", w.fileWrites, w.changes, strings.Join(methods, ", "))
	for _, check := range []string{checkAdded, checkPushable, checkRemoved} {
		old, fresh := w.lastOld[check], w.firstNew[check]
		t.Logf("%s: last old answer sent after the write p50 %v, p99 %v, max %v; first new answer received p50 %v, p99 %v, max %v (%d changes)",
			check, percentile(old, 50), percentile(old, 99), percentile(old, 100), percentile(fresh, 50), percentile(fresh, 99), percentile(fresh, 100), len(fresh))
	}
	r := w.serviceReload
	t.Logf("registry-auth's own reload timestamp after the write: p50 %v, p99 %v, max %v", percentile(r, 50), percentile(r, 99), percentile(r, 100))
}

// reportDecisions logs registry-auth's decision counters by result and
// reason (the registry_auth_decisions_total metric).
func reportDecisions(t *testing.T, s *harness.Stack) {
	all, err := authMetricLines(s.AuthClient(), s.AuthURL())
	if err != nil {
		t.Error(err)
		return
	}
	var lines []string
	for _, line := range all {
		if strings.HasPrefix(line, "registry_auth_decisions_total{") {
			lines = append(lines, strings.TrimPrefix(line, "registry_auth_decisions_total"))
		}
	}
	t.Logf("registry-auth decisions (result, reason):\n  %s", strings.Join(lines, "\n  "))
}

// percentile returns the p-th percentile (nearest rank) of ds.
func percentile(ds []time.Duration, p int) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	sorted := slices.Clone(ds)
	slices.Sort(sorted)
	i := (p*len(sorted)+99)/100 - 1
	return sorted[max(0, min(i, len(sorted)-1))].Round(10 * time.Microsecond)
}
