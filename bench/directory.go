package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/registry-auth/registry-auth/e2e/harness"
	"github.com/registry-auth/registry-auth/internal/slapd"
)

// The directory of setups 10 and 11: one slapd for the whole run, its
// people under ou=people (the first of them in the group pusher) and the
// service account both setups search as.
const (
	directoryPeople        = 64
	serviceAccount         = "registry"
	serviceAccountPassword = "bench-registry-bind-secret"
	// modLDAPCacheTTL is mod_ldap's default LDAPCacheTTL (600 s), which
	// setup 10 leaves as it is.
	modLDAPCacheTTL = 600 * time.Second
)

// directory is the lab's slapd, run with stats logging so that its log
// counts every BIND.
type directory struct {
	srv   *slapd.Server
	proc  *harness.Process
	files *userFiles // the people: no files, Directory set
}

// startDirectory starts the lab's slapd the first time a directory setup
// needs it, loads its entries, and returns it; later calls return the same
// one. A missing slapd or ldap-utils is an error saying what to install.
func (l *lab) startDirectory(ctx context.Context) (*directory, error) {
	if l.directory != nil {
		return l.directory, nil
	}
	dir := filepath.Join(l.dir, "slapd")
	if err := os.Mkdir(dir, 0o700); err != nil {
		return nil, err
	}
	srv, err := slapd.New(dir)
	if err != nil {
		return nil, fmt.Errorf("directory for setups 10 and 11: %w", err)
	}
	p, err := l.procs.Start("slapd", srv.Bin, srv.Args(slapd.StatsLog), nil)
	if err != nil {
		return nil, err
	}
	if err := srv.Wait(ctx, p.Done()); err != nil {
		return nil, fmt.Errorf("%w\n--- slapd log ---\n%s", err, p.LogTail(4<<10))
	}
	d := &directory{srv: srv, proc: p, files: &userFiles{Directory: true}}
	ldif := slapd.Skeleton() + slapd.Account(serviceAccount, serviceAccountPassword)
	for i := range directoryPeople {
		c := benchUser("ldap", i)
		d.files.Users = append(d.files.Users, c)
		ldif += slapd.Person(c.User, c.Password)
	}
	ldif += slapd.Group(pushGroup, d.files.pusher().User)
	if err := srv.Add(ctx, ldif); err != nil {
		return nil, err
	}
	l.directory = d
	return d, nil
}

// userURL is the AuthLDAPURL of both setups: the people, found by uid, in
// the whole subtree.
func (d *directory) userURL() string {
	return strings.TrimSuffix(d.srv.URL, "/") + "/" + slapd.PeopleBase + "?uid?sub"
}

// registryAuthFlags returns registry-auth's flags for the directory (users
// from it alone, as Apache's AuthBasicProvider ldap) and writes the service
// account's password file into authDir.
func (d *directory) registryAuthFlags(authDir string) ([]string, error) {
	if err := os.MkdirAll(authDir, 0o755); err != nil {
		return nil, err
	}
	pwFile := filepath.Join(authDir, "ldap-bind-password")
	if err := os.WriteFile(pwFile, []byte(serviceAccountPassword+"\n"), 0o600); err != nil {
		return nil, err
	}
	return []string{
		"--htpasswd", "", "--groups", "",
		"--ldap-url", d.userURL(),
		"--ldap-bind-dn", slapd.AccountDN(serviceAccount),
		"--ldap-bind-password-file", pwFile,
		"--ldap-group-base", slapd.GroupBase,
		"--push-group", pushGroup,
	}, nil
}

// bindCount is slapd's count of BINDs so far, by who bound.
type bindCount struct{ user, service int }

// binds reads slapd's log and counts the BINDs of the people and of the
// service account. Anonymous binds (slapd.Wait's ldapwhoami) and the root
// DN's (ldapadd) are neither.
func (d *directory) binds() (bindCount, error) {
	f, err := os.Open(d.proc.LogFile)
	if err != nil {
		return bindCount{}, err
	}
	defer f.Close()
	counts, err := slapd.CountBinds(f)
	if err != nil {
		return bindCount{}, fmt.Errorf("slapd's log: %w", err)
	}
	var c bindCount
	service := strings.ToLower(slapd.AccountDN(serviceAccount))
	people := strings.ToLower("," + slapd.PeopleBase)
	for dn, n := range counts {
		switch dn = strings.ToLower(dn); {
		case dn == service:
			c.service += n
		case strings.HasSuffix(dn, people):
			c.user += n
		}
	}
	return c, nil
}

// cacheTTL returns how long setup s remembers a verified credential:
// mod_ldap's default for Apache, and for registry-auth the cache_ttl of its
// "listening" log line, so that the figure is the one in force.
func (l *lab) cacheTTL(s *stack) (time.Duration, error) {
	if s.id == apacheLDAP {
		return modLDAPCacheTTL, nil
	}
	for _, line := range strings.Split(s.auth.Logs(), "\n") {
		var entry struct {
			Msg      string `json:"msg"`
			CacheTTL string `json:"cache_ttl"`
		}
		if json.Unmarshal([]byte(line), &entry) == nil && entry.Msg == "listening" && entry.CacheTTL != "" {
			return time.ParseDuration(entry.CacheTTL)
		}
	}
	return 0, errors.New("registry-auth's log has no listening line with cache_ttl")
}

// measureDirectoryLoad is the manifest workload of setups 10 and 11: a
// warm-up (one request per user) and the 64-user load (load is runSetup's),
// with slapd's BINDs counted before the warm-up, between it and the load,
// and after the load once every process of the setup is idle.
func (l *lab) measureDirectoryLoad(ctx context.Context, s *stack, sr *setupResult, load func(*stack, manifestWorkload, []credential) error) error {
	d := l.directory
	ttl, err := l.cacheTTL(s)
	if err != nil {
		return err
	}
	before, err := d.binds()
	if err != nil {
		return err
	}
	start := time.Now()
	if err := l.warmUp(ctx, s.proxyURL(manifestPath), s.files.Users, nil); err != nil {
		return err
	}
	warm, err := d.binds()
	if err != nil {
		return err
	}
	if err := load(s, users64Directory, s.files.Users); err != nil {
		return err
	}
	session := time.Since(start)
	// A bind of a request still queued when wrk stopped is logged by now.
	if err := waitIdle(ctx, time.Minute, l.procsOf(s)...); err != nil {
		fmt.Fprintf(l.out, "  (counting anyway: %v)\n", err)
	}
	after, err := d.binds()
	if err != nil {
		return err
	}
	b := &bindResult{
		Credentials:   len(s.files.Users),
		CacheTTL:      ttl,
		Session:       session,
		WarmUpUser:    warm.user - before.user,
		WarmUpService: warm.service - before.service,
		RunUser:       after.user - warm.user,
		RunService:    after.service - warm.service,
		RunRequests:   sr.Manifest[users64Directory].Requests,
	}
	sr.Binds = b
	fmt.Fprintf(l.out, "  [%d] %-26s user %d in the warm-up, %d in the run (%.2f per 1,000 requests); service account %d, %d; %d credentials, cache TTL %s\n",
		s.id, "slapd's binds:", b.WarmUpUser, b.RunUser, b.perThousand(b.RunUser), b.WarmUpService, b.RunService, b.Credentials, b.CacheTTL)
	return nil
}
