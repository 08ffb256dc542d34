package main

import (
	"slices"
	"time"

	"github.com/registry-auth/registry-auth/e2e/harness"
)

// setupID names the eleven setups, in the order the report lists them.
type setupID int

const (
	apacheRecipe         setupID = 1 // the registry docs' Apache recipe
	traefikBasicAuth     setupID = 2 // Traefik's basicAuth middleware, same htpasswd
	traefikNoAuth        setupID = 3 // no authentication: the chain's upper bound
	traefikCeiling       setupID = 4 // forwardAuth to a server that answers 200 at once
	traefikRegistryAuth  setupID = 5 // forwardAuth to registry-auth, cache on
	traefikRegistryNoTTL setupID = 6 // forwardAuth to registry-auth --cache-ttl 0
	// Over the compose file's HTTPS hop (HTTP/2, Traefik's client certificate);
	// setups 4 to 6 use the plain-HTTP hop a user may still configure.
	traefikCeilingTLS      setupID = 7 // forwardAuth over TLS to the 200-at-once server
	traefikRegistryAuthTLS setupID = 8 // forwardAuth over TLS to registry-auth, cache on
	// Setup 8 with an access policy of 200 rules (policy.go): the cost of
	// a long policy in the chain.
	traefikRegistryAuthPolicy setupID = 9
	// Users from a directory (the lab's one slapd, directory.go) instead of
	// an htpasswd file: the Apache recipe with mod_authnz_ldap, and
	// registry-auth with --ldap-url over setup 8's HTTPS hop.
	apacheLDAP              setupID = 10
	traefikRegistryAuthLDAP setupID = 11
)

var allSetups = []setupID{apacheRecipe, traefikBasicAuth, traefikNoAuth, traefikCeiling, traefikRegistryAuth, traefikRegistryNoTTL, traefikCeilingTLS, traefikRegistryAuthTLS, traefikRegistryAuthPolicy, apacheLDAP, traefikRegistryAuthLDAP}

func (s setupID) String() string {
	switch s {
	case apacheRecipe:
		return "Apache recipe"
	case traefikBasicAuth:
		return "Traefik basicAuth"
	case traefikNoAuth:
		return "Traefik, no auth"
	case traefikCeiling:
		return "Traefik + forwardAuth 200 at once"
	case traefikRegistryAuth:
		return "Traefik + registry-auth"
	case traefikRegistryNoTTL:
		return "Traefik + registry-auth --cache-ttl 0"
	case traefikCeilingTLS:
		return "Traefik + forwardAuth 200 at once, TLS/HTTP/2"
	case traefikRegistryAuthTLS:
		return "Traefik + registry-auth, TLS/HTTP/2 + client cert"
	case traefikRegistryAuthPolicy:
		return "Traefik + registry-auth, TLS/HTTP/2, 200-rule policy"
	case apacheLDAP:
		return "Apache recipe with mod_authnz_ldap"
	case traefikRegistryAuthLDAP:
		return "Traefik + registry-auth with LDAP, TLS/HTTP/2"
	}
	return "unknown setup"
}

// tlsHop reports whether Traefik asks the auth server over HTTPS (HTTP/2).
func (s setupID) tlsHop() bool {
	return s == traefikCeilingTLS || s == traefikRegistryAuthTLS || s == traefikRegistryAuthPolicy || s == traefikRegistryAuthLDAP
}

// ceiling reports whether the auth server is the 200-at-once server.
func (s setupID) ceiling() bool {
	return s == traefikCeiling || s == traefikCeilingTLS
}

// authenticates reports whether the setup refuses requests without valid
// credentials.
func (s setupID) authenticates() bool {
	return s != traefikNoAuth && !s.ceiling()
}

// usesRegistryAuth reports whether registry-auth makes the decisions.
func (s setupID) usesRegistryAuth() bool {
	return s == traefikRegistryAuth || s == traefikRegistryNoTTL || s == traefikRegistryAuthTLS || s == traefikRegistryAuthPolicy || s == traefikRegistryAuthLDAP
}

// directory reports whether the users come from the lab's slapd rather
// than an htpasswd file.
func (s setupID) directory() bool {
	return s == apacheLDAP || s == traefikRegistryAuthLDAP
}

// measuresReload reports whether the reload workload (a user written into
// the htpasswd file) runs on the setup: registry-auth with a file.
func (s setupID) measuresReload() bool {
	return s.usesRegistryAuth() && !s.directory()
}

// measuresEdit reports whether the edit-under-load workload runs on the
// setup: registry-auth with its cache (--cache-ttl 0 has no verdicts to
// keep), an htpasswd file to edit, and without the long policy, which
// decides nothing about hashing.
func (s setupID) measuresEdit() bool {
	return s.measuresReload() && s != traefikRegistryNoTTL && s != traefikRegistryAuthPolicy
}

// enforcesPushGroup reports whether the setup refuses a push by a user
// outside the push group (Traefik's basicAuth has no groups).
func (s setupID) enforcesPushGroup() bool {
	return s == apacheRecipe || s == apacheLDAP || s.usesRegistryAuth()
}

// measuresTokens reports whether the tokens workload (64 robot tokens)
// runs on the setup: registry-auth with an htpasswd file, whose users'
// loads it is compared with.
func (s setupID) measuresTokens() bool {
	return s.usesRegistryAuth() && !s.directory()
}

// workloads returns the manifest workloads the setup runs: the directory's
// users for setups 10 and 11, the htpasswd files' for the others, and for
// registry-auth's the tokens too.
func (s setupID) workloads() []manifestWorkload {
	switch {
	case s.directory():
		return []manifestWorkload{users64Directory}
	case s.measuresTokens():
		return append(slices.Clone(manifestWorkloads), tokens64)
	}
	return manifestWorkloads
}

// manifestWorkload is one of the wrk workloads.
type manifestWorkload int

const (
	users64Cost10 manifestWorkload = iota
	users64Cost5
	oneUserCost10
	users64Directory // 64 users of the directory, for setups 10 and 11 only
	tokens64         // 64 robot tokens, for registry-auth's htpasswd setups only
)

// manifestWorkloads are the htpasswd setups' workloads.
var manifestWorkloads = []manifestWorkload{users64Cost10, users64Cost5, oneUserCost10}

func (w manifestWorkload) String() string {
	switch w {
	case users64Cost10:
		return "64 users, bcrypt cost 10"
	case users64Cost5:
		return "64 users, bcrypt cost 5"
	case oneUserCost10:
		return "1 user, bcrypt cost 10"
	case users64Directory:
		return "64 directory users"
	case tokens64:
		return "64 tokens"
	}
	return "unknown workload"
}

// setupResult holds everything measured on one setup. A nil or empty field
// was not measured; Errors says why when something failed.
type setupResult struct {
	Setup    setupID
	Manifest map[manifestWorkload]*loadResult
	Pulls    []time.Duration
	Push     *pushResult
	Reload   []reloadSample
	// Connections is how many TCP connections the auth server accepted
	// during each manifest load (its own count), by workload.
	Connections map[manifestWorkload]int64
	Edit        *editResult
	// Binds is what slapd saw around the directory workload (setups 10
	// and 11 only).
	Binds  *bindResult
	Checks []string // the sanity checks that passed
	Errors []string
}

// pushResult is one big-layer push and the memory around it.
type pushResult struct {
	Size        int64
	Wall        time.Duration
	ProxyPeak   int64  // proxy's VmHWM during the push (all processes for Apache)
	AuthName    string // the separate auth process, "" when the proxy decides
	AuthBefore  int64  // its VmRSS before the push
	AuthPeak    int64  // its VmHWM during the push
	PeakSampled bool   // true when clear_refs failed and the peak was sampled instead
}

// bindResult counts the BIND operations slapd logged around the manifest
// load of the directory's users: during the warm-up (one request per user,
// from the first request after the setup's checks) and during the measured
// run. Users are the directory's people binding with their passwords; the
// service account is the one both setups search as, and it is counted apart.
type bindResult struct {
	Credentials   int           // distinct user:password pairs of the load
	CacheTTL      time.Duration // how long the setup remembers a verified credential
	Session       time.Duration // from the warm-up's start to the end of the run
	WarmUpUser    int
	WarmUpService int
	RunUser       int
	RunService    int
	RunRequests   int64 // requests wrk completed in the run
}

// userBinds returns the user binds from the warm-up's start to the end of the run.
func (b *bindResult) userBinds() int { return b.WarmUpUser + b.RunUser }

// perThousand returns n binds per 1,000 of the run's requests.
func (b *bindResult) perThousand(n int) float64 {
	if b.RunRequests == 0 {
		return 0
	}
	return 1000 * float64(n) / float64(b.RunRequests)
}

// allowedUserBinds is the target's bound: one bind per credential per cache
// TTL begun during the session.
func (b *bindResult) allowedUserBinds() int {
	if b.CacheTTL <= 0 {
		return 0
	}
	return b.Credentials * int((b.Session+b.CacheTTL-1)/b.CacheTTL)
}

// editResult is the "edit under load" workload: every user once (hashed),
// every user again (warm, from the cache), one unrelated user added to the
// htpasswd file, every user once more.
type editResult struct {
	Users           int
	WarmP99         time.Duration // the first warm pass
	AfterEditP99    time.Duration // the pass after the edit
	AfterEditHashes int64         // hash computations during that pass
}

// reloadSample is one "write a new user, wait until it is accepted".
type reloadSample struct {
	Method  string // "rename" (editor-style save) or "htpasswd" (in place)
	Latency time.Duration
}

// authAloneResult is wrk against an auth server directly.
type authAloneResult struct {
	Name        string
	Connections int
	Rate        int // requests per second of a paced load; 0 for wrk's as-fast-as-it-goes
	Res         loadResult
}

// memoryResult is registry-auth's memory with many users loaded.
type memoryResult struct {
	Users       int
	Cost        int
	Load        time.Duration // from start to /readyz answering 200
	AfterLoad   harness.Memory
	Logins      int
	AfterLogins harness.Memory
}

// results is one run of the harness.
type results struct {
	Mode      string
	Command   string
	Started   time.Time
	Elapsed   time.Duration
	Machine   machine
	LoadAfter string
	// OthersCPU is the share of the machine's CPU time that other
	// processes used while the harness ran (-1: unknown).
	OthersCPU float64
	Params    params
	Setups    []*setupResult
	AuthAlone []authAloneResult
	Memory    *memoryResult
	Notes     []string
}

// setup returns the result of id, or nil if it did not run.
func (r *results) setup(id setupID) *setupResult {
	i := slices.IndexFunc(r.Setups, func(s *setupResult) bool { return s.Setup == id })
	if i < 0 {
		return nil
	}
	return r.Setups[i]
}

// params are the knobs of a run, fixed by the mode and flags.
type params struct {
	Duration    time.Duration // each wrk run
	MinCycles   int           // requests per connection below which a run is repeated longer
	MaxDuration time.Duration // the longest a repeated run may be
	Connections int
	Threads     int
	Pulls       int
	PushSize    int64
	Reloads     int
	MemoryUsers int
	Logins      int
	Setups      []setupID
	Workloads   map[string]bool
}
