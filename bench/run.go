package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/registry-auth/registry-auth/e2e/harness"
)

// Names of the /auth-alone servers; the targets are read from the second.
const (
	authAloneCeiling = "200-at-once server (setup 4's)"
	authAloneCached  = "registry-auth, cache on"
)

// allWorkloads are the names --workloads accepts.
var allWorkloads = []string{"manifest", "pull", "push", "reload", "edit", "auth", "memory"}

// options are the parsed command line.
type options struct {
	params
	mode    string
	docsDir string
	keep    bool
	command string
}

func parseOptions(args []string, stderr io.Writer) (*options, error) {
	fs := flag.NewFlagSet("bench", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprintf(stderr, "Usage: go run . [--quick | --full] [flags]\n\n"+
			"Benchmarks registry-auth against the registry docs' Apache recipe and Traefik's basicAuth\n"+
			"on loopback, and writes docs/BENCHMARKS.md and docs/%s.\n\nFlags:\n", chartName)
		fs.PrintDefaults()
	}
	quick := fs.Bool("quick", false, "short runs (the default): about 2 to 3 minutes once the programs are built")
	full := fs.Bool("full", false, "longer runs: 20 s per load, 10 pulls, a 1 GiB push, 20 reloads, 10,000 logins")
	duration := fs.Duration("duration", 0, "length of each wrk run (default 2s quick, 20s full)")
	connections := fs.Int("connections", 32, "wrk connections")
	threads := fs.Int("threads", 2, "wrk threads")
	setups := fs.String("setups", "1,2,3,4,5,6,7,8,9,10,11", "setups to run, by number (see docs/BENCHMARKS.md)")
	workloads := fs.String("workloads", strings.Join(allWorkloads, ","), "workloads to run")
	pulls := fs.Int("pulls", 0, "pulls of the 20-layer image per setup (default 2 quick, 10 full)")
	pushMiB := fs.Int64("push-mib", 0, "size of the pushed layer in MiB (default 1024: 1 GiB)")
	reloads := fs.Int("reloads", 0, "new users written per registry-auth setup (default 4 quick, 20 full)")
	memoryUsers := fs.Int("memory-users", 10000, "users in the htpasswd file of the memory workload")
	logins := fs.Int("logins", 0, "distinct users logging in during the memory workload (default 1000 quick, all full)")
	docs := fs.String("docs", "", "directory for BENCHMARKS.md and the chart (default: the repository's docs/)")
	minCycles := fs.Int("min-cycles", -1, "requests per wrk connection below which a run is repeated longer (default 5 quick, 10 full; 0: never)")
	keep := fs.Bool("keep", false, "keep the run directory (configurations and logs) after a successful run")
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	if fs.NArg() > 0 {
		return nil, fmt.Errorf("unexpected arguments %q (flags start with --)", fs.Args())
	}
	if *quick && *full {
		return nil, errors.New("--quick and --full exclude each other")
	}
	o := &options{mode: "quick", docsDir: *docs, keep: *keep}
	o.Duration, o.Pulls, o.PushSize, o.Reloads, o.Logins = 2*time.Second, 2, 1<<30, 4, 1000
	o.MinCycles, o.MaxDuration = 5, 15*time.Second
	if *full {
		o.mode = "full"
		o.Duration, o.Pulls, o.Reloads, o.Logins = 20*time.Second, 10, 20, *memoryUsers
		o.MinCycles, o.MaxDuration = 10, 90*time.Second
	}
	if *duration > 0 {
		o.Duration = *duration
		o.MaxDuration = max(o.MaxDuration, o.Duration)
	}
	if *pulls > 0 {
		o.Pulls = *pulls
	}
	if *minCycles >= 0 {
		o.MinCycles = *minCycles
	}
	if *pushMiB > 0 {
		o.PushSize = *pushMiB << 20
	}
	if *reloads > 0 {
		o.Reloads = *reloads
	}
	if *logins > 0 {
		o.Logins = *logins
	}
	o.Connections, o.Threads, o.MemoryUsers = *connections, *threads, *memoryUsers
	if o.Connections < 1 || o.Threads < 1 || o.Threads > o.Connections {
		return nil, fmt.Errorf("--connections %d --threads %d: want at least one connection per thread", o.Connections, o.Threads)
	}
	if o.MemoryUsers < 1 {
		return nil, fmt.Errorf("--memory-users %d: want at least 1", o.MemoryUsers)
	}
	for _, f := range strings.Split(*setups, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || n < 1 || n > len(allSetups) {
			return nil, fmt.Errorf("--setups %q: want numbers from 1 to %d", *setups, len(allSetups))
		}
		if !slices.Contains(o.Setups, setupID(n)) {
			o.Setups = append(o.Setups, setupID(n))
		}
	}
	slices.Sort(o.Setups)
	o.Workloads = map[string]bool{}
	for _, w := range strings.Split(*workloads, ",") {
		w = strings.TrimSpace(w)
		if !slices.Contains(allWorkloads, w) {
			return nil, fmt.Errorf("--workloads: unknown %q, want some of %s", w, strings.Join(allWorkloads, ","))
		}
		o.Workloads[w] = true
	}
	o.command = "cd bench && go run ."
	if len(args) > 0 {
		o.command += " " + strings.Join(args, " ")
	}
	return o, nil
}

// run is the whole program: flags, builds, the setups, the report.
func run(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	if addr := getenv(ceilingEnv); addr != "" {
		return serveCeiling(ctx, addr, getenv(ceilingTLSEnv), stdout)
	}
	o, err := parseOptions(args, stderr)
	if err != nil {
		return err
	}
	_, err = bench(ctx, o, stdout)
	return err
}

// bench runs the benchmarks o selects, writes the report, and returns what
// it measured. A measurement that fails is recorded in the report and makes
// the returned error non-nil; the other measurements still run.
func bench(ctx context.Context, o *options, stdout io.Writer) (res *results, err error) {
	started := time.Now()
	say := func(format string, a ...any) { fmt.Fprintf(stdout, format+"\n", a...) }

	repoRoot, err := harness.RepoRoot()
	if err != nil {
		return res, err
	}
	if o.docsDir == "" {
		o.docsDir = filepath.Join(repoRoot, "docs")
	}
	cacheDir, err := harness.CacheDir()
	if err != nil {
		return res, err
	}
	bins := map[string]string{}
	say("building (or reusing the cache in %s): Traefik %s, registry %s, registry-auth", cacheDir, harness.TraefikVersion, harness.RegistryVersion)
	for name, build := range map[string]func(context.Context) (string, error){
		"traefik":       harness.BuildTraefik,
		"registry":      harness.BuildRegistry,
		"registry-auth": harness.BuildRegistryAuth,
	} {
		if bins[name], err = build(ctx); err != nil {
			return res, fmt.Errorf("build %s: %w", name, err)
		}
	}
	if bins["self"], err = os.Executable(); err != nil {
		return res, err
	}
	buildTime := time.Since(started)

	dir, err := os.MkdirTemp("", "registry-auth-bench-")
	if err != nil {
		return res, err
	}
	if err := os.Chmod(dir, 0o755); err != nil { // Apache's workers read files in here
		return res, err
	}
	l := &lab{dir: dir, repoRoot: repoRoot, bins: bins, procs: harness.NewProcesses(filepath.Join(dir, "logs")), out: stdout, started: started}
	defer func() {
		if serr := l.procs.StopAll(); serr != nil {
			err = errors.Join(err, serr)
		}
		if err != nil || o.keep {
			say("run directory kept, with every configuration and log: %s", dir)
		} else {
			os.RemoveAll(dir)
		}
	}()
	say("run directory %s", dir)
	if err := os.MkdirAll(filepath.Join(dir, "certs"), 0o755); err != nil {
		return res, err
	}
	if l.certs, err = harness.NewCerts(filepath.Join(dir, "certs")); err != nil {
		return res, err
	}
	l.client = newClient(l.certs.Pool, 16)
	l.hopClient = newHopClient(l.certs, 4)

	res = &results{Mode: o.mode, Command: o.command, Started: started, Params: o.params, OthersCPU: -1}
	cpuStart, cpuErr := takeCPUSnapshot()
	res.Machine = describeMachine(ctx, repoRoot, bins)

	say("making htpasswd files (cached in %s)", filepath.Join(cacheDir, "bench"))
	usersDir := filepath.Join(dir, "users")
	if err := os.MkdirAll(usersDir, 0o755); err != nil {
		return res, err
	}
	benchCache := filepath.Join(cacheDir, "bench")
	cost10, err := makeUserFiles(ctx, benchCache, usersDir, 64, 10)
	if err != nil {
		return res, err
	}
	cost5, err := makeUserFiles(ctx, benchCache, usersDir, 64, 5)
	if err != nil {
		return res, err
	}
	if o.Workloads["edit"] {
		if l.editFiles, err = makeUserFiles(ctx, benchCache, usersDir, editUsers, 10); err != nil {
			return res, err
		}
	}

	// The registry:3 image's configuration and docker-compose.yml's
	// environment, as e2e's Stack runs it (without its debug server).
	if l.registry, err = harness.StartRegistry(ctx, l.procs, harness.RegistryOptions{Bin: bins["registry"], RepoRoot: repoRoot, Dir: dir}); err != nil {
		return res, err
	}
	if err := seedRegistry(ctx, l.registry.Addr); err != nil {
		return res, err
	}
	say("registry on %s, seeded with %s:%s and the %d-layer %s:%s", l.registry.Addr, manifestRepo, manifestTag, pullLayers, pullRepo, pullTag)

	var failures int
	setupWork := o.Workloads["manifest"] || o.Workloads["pull"] || o.Workloads["push"] || o.Workloads["reload"] || o.Workloads["edit"]
	for _, id := range o.Setups {
		if !setupWork {
			break
		}
		sr := l.runSetup(ctx, id, cost10, cost5, o)
		res.Setups = append(res.Setups, sr)
		failures += len(sr.Errors)
		if ctx.Err() != nil {
			return res, ctx.Err()
		}
	}
	if o.Workloads["auth"] {
		rows, err := l.runAuthAlone(ctx, cost10, o)
		res.AuthAlone = rows
		if err != nil {
			failures++
			res.Notes = append(res.Notes, "The /auth-alone workload failed: "+err.Error())
			say("  /auth alone FAILED: %v", err)
		}
	}
	if ctx.Err() != nil {
		return res, ctx.Err()
	}
	if o.Workloads["memory"] {
		say("memory: registry-auth with %d users  [at %s]", o.MemoryUsers, time.Since(started).Round(time.Second))
		many, err := makeUserFiles(ctx, benchCache, usersDir, o.MemoryUsers, 5)
		if err == nil {
			res.Memory, err = l.measureMemory(ctx, many, o.Logins)
		}
		if err != nil {
			failures++
			res.Notes = append(res.Notes, "The memory workload failed: "+err.Error())
			say("  memory FAILED: %v", err)
		} else {
			m := res.Memory
			say("  ready after %s; RSS %s loaded, %s after %d logins", ms(m.Load), mib(m.AfterLoad.RSS), mib(m.AfterLogins.RSS), m.Logins)
		}
	}
	if ctx.Err() != nil {
		return res, ctx.Err()
	}

	res.Elapsed = time.Since(started)
	res.LoadAfter = loadAvg()
	// Every program of the lab has exited and been waited for: their CPU
	// time is now counted in the harness's own.
	if serr := l.procs.StopAll(); serr != nil {
		failures++
		res.Notes = append(res.Notes, "Stopping the programs failed: "+serr.Error())
	}
	if cpuEnd, err := takeCPUSnapshot(); err == nil && cpuErr == nil {
		res.OthersCPU = othersShare(cpuStart, cpuEnd)
	}
	res.Notes = append(res.Notes, fmt.Sprintf("Building or finding the programs took %s of the run's %s.",
		buildTime.Round(time.Second), res.Elapsed.Round(time.Second)))
	if err := writeReport(ctx, o.docsDir, res); err != nil {
		return res, err
	}
	say("wrote %s and %s (%s)", filepath.Join(o.docsDir, "BENCHMARKS.md"), filepath.Join(o.docsDir, chartName), res.Elapsed.Round(time.Second))
	if failures > 0 {
		return res, fmt.Errorf("%d measurement(s) failed; the report says which", failures)
	}
	return res, nil
}

// runSetup measures every selected workload on setup id: a first session
// on the cost-10 files (both 64-user and one-user loads, for registry-auth
// then 64 robot tokens written into its tokens file, pulls, the push, the
// reloads), a second on the cost-5 files. Setups 10 and 11 have one
// session, on the directory's users (their 64-user load with slapd's binds
// counted, pulls, the push). A failure is recorded and ends that session,
// not the run.
func (l *lab) runSetup(ctx context.Context, id setupID, cost10, cost5 *userFiles, o *options) *setupResult {
	sr := &setupResult{Setup: id, Manifest: map[manifestWorkload]*loadResult{}, Connections: map[manifestWorkload]int64{}}
	say := func(format string, a ...any) { fmt.Fprintf(l.out, "  [%d] "+format+"\n", append([]any{id}, a...)...) }
	fail := func(what string, err error) {
		sr.Errors = append(sr.Errors, fmt.Sprintf("%s: %v", what, err))
		say("%s FAILED: %v", what, err)
	}
	fmt.Fprintf(l.out, "setup %d: %s  [at %s]\n", id, id, time.Since(l.started).Round(time.Second))

	var sessionDuration time.Duration
	session := func(files *userFiles, body func(s *stack) error) {
		if ctx.Err() != nil {
			return
		}
		sessionDuration = 0
		s, err := l.startSetup(ctx, id, files)
		if err != nil {
			fail(fmt.Sprintf("start (%s)", files), err)
			return
		}
		checks, err := l.checkSetup(ctx, s)
		if len(sr.Checks) == 0 {
			sr.Checks = checks
		}
		if err == nil {
			err = body(s)
		}
		if s.proxy.Unexpected() {
			err = errors.Join(err, fmt.Errorf("%s exited during the measurements:\n%s", s.proxy.Name, s.proxy.LogTail(4<<10)))
		}
		if s.auth != nil && s.auth.Unexpected() {
			err = errors.Join(err, fmt.Errorf("%s exited during the measurements:\n%s", s.auth.Name, s.auth.LogTail(4<<10)))
		}
		if d := l.directory; files.Directory && d.proc.Unexpected() {
			err = errors.Join(err, fmt.Errorf("slapd exited during the measurements:\n%s", d.proc.LogTail(4<<10)))
		}
		// Without the harness's idle keep-alive connections, Traefik's
		// graceful shutdown has nothing to wait for.
		l.client.CloseIdleConnections()
		if serr := s.stop(l.out); serr != nil {
			err = errors.Join(err, serr)
		}
		if err != nil && ctx.Err() == nil {
			fail(fmt.Sprintf("%s session", files), err)
		}
	}

	// A run that had to be repeated longer tells how long the next load of
	// the same session needs: it starts at that length at once
	// (sessionDuration, reset when a session starts).
	load := func(s *stack, w manifestWorkload, users []credential) error {
		conns, err := l.authConnections(ctx, s)
		if err != nil {
			return fmt.Errorf("%s: connections before: %w", w, err)
		}
		res, err := l.measureLoad(ctx, s.dir, loadSpec{
			URL:         s.proxyURL(manifestPath),
			Auths:       basics(users),
			Connections: o.Connections,
			Threads:     o.Threads,
			Duration:    max(o.Duration, sessionDuration),
		}, o, l.procsOf(s))
		if err != nil {
			return fmt.Errorf("%s: %w", w, err)
		}
		sessionDuration = res.duration().Round(time.Second)
		sr.Manifest[w] = &res
		accepted := ""
		if conns >= 0 {
			after, err := l.authConnections(ctx, s)
			if err != nil {
				return fmt.Errorf("%s: connections after: %w", w, err)
			}
			sr.Connections[w] = after - conns
			accepted = fmt.Sprintf(", %d auth connections", after-conns)
		}
		say("%-26s %8s req/s  p50 %-9s p99 %-9s failed %s  (%s run%s)", w.String()+":", rps(res.RPS()), ms(res.P50()), ms(res.P99()), res.failures(), res.duration().Round(100*time.Millisecond), accepted)
		return nil
	}

	wantReload := o.Workloads["reload"] && id.measuresReload()
	first := cost10
	if id.directory() {
		d, err := l.startDirectory(ctx)
		if err != nil {
			fail("start the directory", err)
			return sr
		}
		first = d.files
	}
	if o.Workloads["manifest"] || o.Workloads["pull"] || o.Workloads["push"] || wantReload {
		session(first, func(s *stack) error {
			if o.Workloads["manifest"] && id.directory() {
				if err := l.measureDirectoryLoad(ctx, s, sr, load); err != nil {
					return err
				}
			} else if o.Workloads["manifest"] {
				if err := l.warmUp(ctx, s.proxyURL(manifestPath), s.files.Users, nil); err != nil {
					return err
				}
				if err := load(s, users64Cost10, s.files.Users); err != nil {
					return err
				}
				if err := load(s, oneUserCost10, s.files.Users[:1]); err != nil {
					return err
				}
				if id.measuresTokens() {
					creds, err := l.addTokens(ctx, s, benchTokens)
					if err == nil {
						err = l.warmUp(ctx, s.proxyURL(manifestPath), creds, nil)
					}
					if err != nil {
						return fmt.Errorf("%s: %w", tokens64, err)
					}
					if err := load(s, tokens64, creds); err != nil {
						return err
					}
				}
			}
			// Let the proxy finish what the last load left queued.
			if err := waitIdle(ctx, time.Minute, l.procsOf(s)...); err != nil {
				say("(going on anyway: %v)", err)
			}
			if o.Workloads["pull"] {
				rc := registryClient{proxyAddr: s.proxyAddr, roots: l.certs.Pool}
				for range o.Pulls {
					d, err := rc.pull(ctx, s.files.reader())
					if err != nil {
						return fmt.Errorf("pull: %w", err)
					}
					sr.Pulls = append(sr.Pulls, d)
				}
				say("%-26s median %s over %d pulls", "pull 20 layers:", ms(median(slices.Clone(sr.Pulls))), len(sr.Pulls))
			}
			if o.Workloads["push"] {
				pr, err := l.measurePush(ctx, s, o.PushSize)
				if err != nil {
					return fmt.Errorf("push: %w", err)
				}
				sr.Push = pr
				auth := ""
				if pr.AuthName != "" {
					auth = fmt.Sprintf(", %s RSS %s before, peak %s", pr.AuthName, mib(pr.AuthBefore), mib(pr.AuthPeak))
				}
				say("%-26s %s, proxy peak %s%s", "push "+sizeName(pr.Size)+":", ms(pr.Wall), mib(pr.ProxyPeak), auth)
			}
			if wantReload {
				samples, err := l.measureReloads(ctx, s, o.Reloads)
				sr.Reload = samples
				if err != nil {
					return fmt.Errorf("reload: %w", err)
				}
				var all []time.Duration
				for _, x := range samples {
					all = append(all, x.Latency)
				}
				say("%-26s mean %s, max %s over %d writes", "new user accepted:", ms(mean(all)), ms(slices.Max(all)), len(all))
			}
			return nil
		})
	}
	if o.Workloads["manifest"] && !id.directory() {
		session(cost5, func(s *stack) error {
			if err := l.warmUp(ctx, s.proxyURL(manifestPath), s.files.Users, nil); err != nil {
				return err
			}
			return load(s, users64Cost5, s.files.Users)
		})
	}
	if o.Workloads["edit"] && id.measuresEdit() && ctx.Err() == nil {
		e, err := l.measureEdit(ctx, id, l.editFiles)
		if err != nil {
			fail("edit under load", err)
		} else {
			sr.Edit = e
			say("%-26s %d hash computations for %d cached users; p99 %s after the edit, %s warm before", "edit under load:", e.AfterEditHashes, e.Users, ms(e.AfterEditP99), ms(e.WarmP99))
		}
	}
	return sr
}

// The paced /auth-alone load: pacedWorkers connections sending
// pacedRate requests per second in all, well below what either server can
// answer, so that the latency measured is the server's and not the queue's.
const (
	pacedWorkers = 4
	pacedRate    = 2000
)

// runAuthAlone loads auth servers directly, without Traefik: the ceiling
// server (what the load generator and Go's HTTP server can do on this
// machine), then registry-auth with its cache; each with wrk as fast as it
// goes, then at a fixed rate below saturation.
func (l *lab) runAuthAlone(ctx context.Context, files *userFiles, o *options) ([]authAloneResult, error) {
	fmt.Fprintf(l.out, "/auth alone, no Traefik  [at %s]\n", time.Since(l.started).Round(time.Second))
	servers := []struct {
		name  string
		start func(s *stack) error
	}{
		{authAloneCeiling, func(s *stack) error { return l.startCeiling(ctx, s) }},
		{authAloneCached, func(s *stack) error { return l.startRegistryAuth(ctx, s, s.files) }},
	}
	var out []authAloneResult
	for _, srv := range servers {
		dir, err := os.MkdirTemp(l.dir, "auth-alone-")
		if err != nil {
			return out, err
		}
		s := &stack{dir: dir}
		if s.files, err = copyUserFiles(files, filepath.Join(dir, "auth")); err != nil {
			return out, err
		}
		err = srv.start(s)
		url := "http://" + s.authAddr + "/auth"
		if err == nil {
			err = l.warmUp(ctx, url, s.files.Users, authHeaders())
		}
		if err == nil {
			var res loadResult
			res, err = l.measureLoad(ctx, dir, loadSpec{
				URL:         url,
				Auths:       basics(s.files.Users),
				Headers:     authHeaders(),
				Connections: o.Connections,
				Threads:     o.Threads,
				Duration:    o.Duration,
			}, o, []*harness.Process{s.auth})
			if err == nil {
				out = append(out, authAloneResult{Name: srv.name, Connections: o.Connections, Res: res})
				fmt.Fprintf(l.out, "  %-28s wrk, %d conns  %8s decisions/s  p50 %-9s p99 %-9s failed %s\n", srv.name+":", o.Connections, rps(res.RPS()), ms(res.P50()), ms(res.P99()), res.failures())
			}
		}
		if err == nil {
			var res loadResult
			if err = waitIdle(ctx, time.Minute, s.auth); err == nil {
				res, err = l.runPaced(ctx, paced{
					URL:      url,
					Headers:  authHeaders(),
					Auths:    basics(s.files.Users),
					Workers:  pacedWorkers,
					Interval: time.Second * pacedWorkers / pacedRate,
					Duration: o.Duration,
				})
			}
			if err == nil {
				out = append(out, authAloneResult{Name: srv.name, Connections: pacedWorkers, Rate: pacedRate, Res: res})
				fmt.Fprintf(l.out, "  %-28s %d/s, %d conns  %8s decisions/s  p50 %-9s p99 %-9s failed %s\n", srv.name+":", pacedRate, pacedWorkers, rps(res.RPS()), ms(res.P50()), ms(res.P99()), res.failures())
			}
		}
		if s.auth != nil && s.auth.Unexpected() {
			err = errors.Join(err, fmt.Errorf("%s exited:\n%s", s.auth.Name, s.auth.LogTail(4<<10)))
		}
		err = errors.Join(err, harness.StopTogether(s.auth))
		if err != nil {
			return out, fmt.Errorf("%s: %w", srv.name, err)
		}
	}
	return out, nil
}

// measureLoad runs wrk once procs are idle. A run in which
// each connection completed fewer than o.MinCycles requests (a setup whose
// answers take seconds: the Apache recipe at bcrypt cost 10) counts too few
// request cycles to be a rate, so it is repeated, long enough for
// o.MinCycles cycles at the rate just seen, up to o.MaxDuration.
func (l *lab) measureLoad(ctx context.Context, dir string, spec loadSpec, o *options, procs []*harness.Process) (loadResult, error) {
	idle := func() {
		if err := waitIdle(ctx, time.Minute, procs...); err != nil {
			fmt.Fprintf(l.out, "  (measuring anyway: %v)\n", err)
		}
	}
	idle()
	res, err := runLoad(ctx, dir, spec)
	if err != nil {
		return res, err
	}
	cycles := float64(res.Requests) / float64(spec.Connections)
	if cycles >= float64(o.MinCycles) || spec.Duration >= o.MaxDuration {
		return res, nil
	}
	want := o.MaxDuration
	if res.Requests > 0 {
		want = time.Duration(float64(o.MinCycles) / cycles * float64(res.duration()))
	}
	spec.Duration = min(o.MaxDuration, max(want.Round(time.Second), spec.Duration+time.Second))
	idle()
	return runLoad(ctx, dir, spec)
}
