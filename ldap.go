package main

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unicode"

	"github.com/registry-auth/registry-auth/internal/authn"
	"github.com/registry-auth/registry-auth/internal/policy"

	"github.com/go-ldap/ldap/v3"
	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/text/cases"
	"golang.org/x/text/unicode/norm"
)

// directory authenticates the users the htpasswd file does not know against an LDAP
// directory, as Apache's mod_authnz_ldap: search the user's entry as the service account,
// bind as that entry with the client's password on a connection of its own, then search its
// groups. It is safe for concurrent use.
type directory struct {
	cfg    ldapConfig
	tls    *tls.Config
	logger *slog.Logger
	up     prometheus.Gauge // registry_auth_ldap_up
	// idle holds service-account connections for searches. A user's bind never runs on one:
	// a bind changes the identity of the whole connection.
	idle chan *ldap.Conn
	// generation is part of every cache stamp: forget bumps it, so SIGHUP drops every
	// remembered directory verdict at once.
	generation atomic.Uint64

	secretMu   sync.Mutex
	secret     []byte      // the service account's password, as last read
	secretStat os.FileInfo // of bindPasswordFile when it was read

	stateMu   sync.Mutex
	down      bool      // an outage is going on (logged once at its start and end)
	downSince time.Time // when it started
}

// directoryPoolSize is how many idle search connections are kept.
const directoryPoolSize = 4

// newDirectory prepares a directory for c (validated), reading --ldap-ca. It does not dial.
func newDirectory(c ldapConfig, logger *slog.Logger, m *metrics) (*directory, error) {
	d := &directory{cfg: c, logger: logger, idle: make(chan *ldap.Conn, directoryPoolSize),
		up: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "registry_auth_ldap_up",
			Help: "1 while the LDAP directory answers, 0 during an outage (users the htpasswd file lacks then get 503 unless cached).",
		})}
	if c.parsed.scheme == "ldaps" || c.startTLS {
		d.tls = &tls.Config{MinVersion: tls.VersionTLS12}
		if c.caFile != "" {
			pem, err := os.ReadFile(c.caFile)
			if err != nil {
				return nil, fmt.Errorf("--ldap-ca: %w", err)
			}
			d.tls.RootCAs = x509.NewCertPool()
			if !d.tls.RootCAs.AppendCertsFromPEM(pem) {
				return nil, fmt.Errorf("--ldap-ca %s holds no PEM certificate: give the CA that signs the directory's certificate", c.caFile)
			}
		}
	} else if c.caFile != "" {
		return nil, errors.New("--ldap-ca without TLS: use an ldaps:// URL or --ldap-starttls, or remove --ldap-ca")
	}
	// Registered here, so that it exists only with a directory.
	m.registry.MustRegister(d.up)
	d.up.Set(1)
	return d, nil
}

func (d *directory) Claims(user string) (string, bool) {
	// Every user the file does not know is the directory's to decide (AuthBasicProvider file
	// ldap). The stamp never holds anything of the user: the cache key already does.
	return "ldap\x00" + strconv.FormatUint(d.generation.Load(), 10), true
}

// NameKey is user as the directory compares names: the equality rule of uid, cn and
// sAMAccountName is caseIgnoreMatch, which prepares both strings as RFC 4518 says (drop
// invisible characters, map every kind of space to one, case fold, NFKC, and ignore leading,
// trailing and repeated spaces), so "dave", "DAVE", " dave" and "da\u00ADve" all find the
// same entry and must share one per-name count. Where a directory compares more finely the
// key is only more cautious: names it tells apart count together.
func (d *directory) NameKey(user string) string { return directoryNameKey(user) }

// directoryNameKey is name prepared for caseIgnoreMatch (RFC 4518, sections 2.2 to 2.6).
func directoryNameKey(name string) string {
	mapped := strings.Map(func(r rune) rune {
		switch {
		case r == '\t' || r == '\n' || r == '\v' || r == '\f' || r == '\r' || r == 0x85:
			return ' '
		case r == 0x00AD || r == 0x1806 || r == 0x034F || r == 0x200B || r == 0xFFFC,
			r >= 0x180B && r <= 0x180D, unicode.Is(unicode.Variation_Selector, r),
			unicode.IsControl(r), unicode.Is(unicode.Cf, r):
			return -1
		case unicode.In(r, unicode.Zs, unicode.Zl, unicode.Zp):
			return ' '
		}
		return r
	}, name)
	prepared := norm.NFKC.String(cases.Fold().String(mapped))
	return strings.Join(strings.Fields(prepared), " ")
}

// Forget drops every remembered directory verdict (SIGHUP).
func (d *directory) Forget() { d.generation.Add(1) }

// directoryAnswer is a user's entry as found.
type directoryAnswer struct {
	dn, user string   // the entry found and its name as the directory spells it
	groups   []string // group keys: names and DNs
}

func (d *directory) Check(_ context.Context, c authn.Credential) (authn.Outcome, error) {
	if len(c.Password) == 0 {
		// A simple bind with an empty password is an anonymous bind, which succeeds.
		return authn.Outcome{Forget: true, Reason: "empty_password"}, nil
	}
	entry, found, err := d.findUser(c.User)
	if err != nil {
		return authn.Outcome{}, d.unavailable(err)
	}
	switch {
	case found > 1:
		d.logger.Warn("the directory has several entries for this name: refused; make --ldap-url's attribute and filter match one entry per user", "user", cutForLog(c.User, maxLoggedUser), "entries", found)
		return authn.Outcome{Forget: true, Known: true, Reason: "ambiguous_user"}, nil
	case found == 0:
		// Bind all the same, as a DN that does not exist, so that an unknown name costs what a
		// wrong password does.
		if _, err := d.bind(d.absentDN(), c.Password); err != nil {
			return authn.Outcome{}, d.unavailable(err)
		}
		d.reachable()
		return authn.Outcome{Forget: true}, nil
	}
	ok, err := d.bind(entry.dn, c.Password)
	if err != nil {
		return authn.Outcome{}, d.unavailable(err)
	}
	if !ok {
		d.reachable()
		return authn.Outcome{Known: true, Forget: true}, nil
	}
	groups, err := d.groupsOf(entry.dn, entry.user)
	if err != nil {
		return authn.Outcome{}, d.unavailable(err)
	}
	d.reachable()
	return authn.Outcome{OK: true, Known: true, User: entry.user, Groups: groups}, nil
}

// absentDN is a DN under the base that no entry has.
func (d *directory) absentDN() string {
	dn := d.cfg.parsed.attribute + "=registry-auth-absent-user"
	if d.cfg.parsed.baseDN != "" {
		dn += "," + d.cfg.parsed.baseDN
	}
	return dn
}

// findUser searches the user's entry; found is the number of entries (at most 2 are asked).
func (d *directory) findUser(name string) (entry directoryAnswer, found int, err error) {
	u := d.cfg.parsed
	res, err := d.search(&ldap.SearchRequest{
		BaseDN: u.baseDN, Scope: u.scope, DerefAliases: ldap.NeverDerefAliases,
		SizeLimit: 2, TimeLimit: d.timeLimit(), Filter: u.userFilter(name), Attributes: []string{u.attribute},
	})
	if ldap.IsErrorWithCode(err, ldap.LDAPResultSizeLimitExceeded) {
		return entry, 2, nil
	}
	if err != nil {
		return entry, 0, err
	}
	if len(res.Entries) != 1 {
		return entry, len(res.Entries), nil
	}
	e := res.Entries[0]
	entry.dn, entry.user = e.DN, e.GetAttributeValue(u.attribute)
	if entry.user == "" {
		entry.user = name // an attribute the directory does not return to us
	}
	return entry, 1, nil
}

// lookup is the identity the directory gives name without a password, for explain: the
// entry found as a login would find it, its spelling of the name and its groups (keys). An
// unknown name, or one with several entries, is an error saying that a login is refused; a
// directory that cannot be asked is authn.ErrUnavailable.
func (d *directory) lookup(name string) (user string, groups []string, err error) {
	entry, found, err := d.findUser(name)
	switch {
	case err != nil:
		return "", nil, fmt.Errorf("%w: %v", authn.ErrUnavailable, err)
	case found == 0:
		return "", nil, fmt.Errorf("%q is in neither the htpasswd file nor the directory: a login with this name is refused (401)", name)
	case found > 1:
		return "", nil, fmt.Errorf("%q matches several directory entries: a login with this name is refused (401)", name)
	}
	groups, err = d.groupsOf(entry.dn, entry.user)
	if err != nil {
		return "", nil, fmt.Errorf("%w: %s's groups: %v", authn.ErrUnavailable, entry.dn, err)
	}
	return entry.user, groups, nil
}

// groupsOf is the keys (groupKey) of the groups of the user with dn and name: each group's
// DN and name.
func (d *directory) groupsOf(dn, user string) ([]string, error) {
	groups, err := d.groupEntries(dn, user)
	if err != nil {
		return nil, err
	}
	var keys []string
	for _, g := range groups {
		keys = append(keys, policy.GroupKey(g.dn))
		if g.name != "" {
			keys = append(keys, policy.GroupKey(g.name))
		}
	}
	return keys, nil
}

// directoryGroup is a group of a user as the directory spells it; depth 0 holds the user
// directly, depth n through n nested groups.
type directoryGroup struct {
	dn, name string
	depth    int
}

// groupEntries is the groups of the user with dn and name: those --ldap-group-filter finds
// under --ldap-group-base, then, up to --ldap-group-depth levels, the groups holding those
// through member and uniqueMember.
func (d *directory) groupEntries(dn, user string) ([]directoryGroup, error) {
	if d.cfg.groupBase == "" {
		return nil, nil
	}
	var groups []directoryGroup
	seen := map[string]bool{}
	filter := groupFilterFor(d.cfg.groupFilter, dn, user)
	for level := 0; level <= d.cfg.groupDepth && filter != ""; level++ {
		res, err := d.search(&ldap.SearchRequest{
			BaseDN: d.cfg.groupBase, Scope: ldap.ScopeWholeSubtree, DerefAliases: ldap.NeverDerefAliases,
			TimeLimit: d.timeLimit(), Filter: filter, Attributes: []string{d.cfg.groupNameAttr},
		})
		if err != nil {
			return nil, err
		}
		var next []string
		for _, e := range res.Entries {
			key := policy.GroupKey(e.DN)
			if seen[key] {
				continue // a cycle, or a group reached twice
			}
			seen[key] = true
			groups = append(groups, directoryGroup{dn: e.DN, name: e.GetAttributeValue(d.cfg.groupNameAttr), depth: level})
			esc := ldap.EscapeFilter(e.DN)
			next = append(next, "(member="+esc+")(uniqueMember="+esc+")")
		}
		filter = ""
		if len(next) > 0 {
			filter = "(|" + strings.Join(next, "") + ")"
		}
	}
	return groups, nil
}

func (d *directory) timeLimit() int { return max(1, int(d.cfg.timeout/time.Second)) }

// search runs req on an idle service-account connection, or a new one. A connection the
// directory dropped (a restart) is replaced and the search tried once more.
func (d *directory) search(req *ldap.SearchRequest) (*ldap.SearchResult, error) {
	for attempt := 0; ; attempt++ {
		conn, fresh, err := d.searchConn()
		if err != nil {
			return nil, err
		}
		res, err := conn.Search(req)
		if err == nil || ldap.IsErrorWithCode(err, ldap.LDAPResultSizeLimitExceeded) || ldap.IsErrorWithCode(err, ldap.LDAPResultNoSuchObject) {
			d.release(conn)
			if ldap.IsErrorWithCode(err, ldap.LDAPResultNoSuchObject) {
				return &ldap.SearchResult{}, nil // the base does not exist: nobody is there
			}
			return res, err
		}
		conn.Close()
		if fresh || attempt > 0 {
			return nil, err
		}
	}
}

// searchConn returns an idle connection, or dials and binds a new one as the service
// account; fresh says which. When the password file changed, idle connections are closed
// first, so searches run as the new password says.
func (d *directory) searchConn() (conn *ldap.Conn, fresh bool, err error) {
	secret, changed, err := d.bindSecret()
	if err != nil {
		return nil, false, err
	}
	if changed {
		d.drain()
	}
	select {
	case conn = <-d.idle:
		if !conn.IsClosing() {
			return conn, false, nil
		}
		conn.Close()
	default:
	}
	conn, _, err = d.serviceConn(secret)
	return conn, true, err
}

// serviceConn dials the first host that answers and binds there as the service account
// with secret (no bind without --ldap-bind-dn: anonymous searches); host is the one that
// answered.
func (d *directory) serviceConn(secret []byte) (conn *ldap.Conn, host string, err error) {
	conn, host, err = d.dial()
	if err != nil {
		return nil, "", err
	}
	if d.cfg.bindDN != "" {
		if err := conn.Bind(d.cfg.bindDN, string(secret)); err != nil {
			conn.Close()
			if ldap.IsErrorWithCode(err, ldap.LDAPResultInvalidCredentials) {
				return nil, host, fmt.Errorf("the service account %s cannot bind: check --ldap-bind-dn and the password in --ldap-bind-password-file: %w", d.cfg.bindDN, err)
			}
			return nil, host, fmt.Errorf("the service account %s cannot bind on %s: %w", d.cfg.bindDN, host, err)
		}
	}
	return conn, host, nil
}

func (d *directory) release(conn *ldap.Conn) {
	select {
	case d.idle <- conn:
	default:
		conn.Close()
	}
}

func (d *directory) drain() {
	for {
		select {
		case conn := <-d.idle:
			conn.Close()
		default:
			return
		}
	}
}

// bindSecret returns the service account's password, read again when the file changed.
func (d *directory) bindSecret() (secret []byte, changed bool, err error) {
	if d.cfg.bindPasswordFile == "" {
		return nil, false, nil
	}
	d.secretMu.Lock()
	defer d.secretMu.Unlock()
	info, err := os.Stat(d.cfg.bindPasswordFile)
	if err != nil {
		return nil, false, fmt.Errorf("--ldap-bind-password-file: %w", err)
	}
	if d.secretStat != nil && os.SameFile(info, d.secretStat) && info.ModTime().Equal(d.secretStat.ModTime()) && info.Size() == d.secretStat.Size() {
		return d.secret, false, nil
	}
	data, err := os.ReadFile(d.cfg.bindPasswordFile)
	if err != nil {
		return nil, false, fmt.Errorf("--ldap-bind-password-file: %w", err)
	}
	changed = d.secretStat != nil
	d.secret, d.secretStat = bytes.TrimRight(data, "\r\n"), info
	return d.secret, changed, nil
}

// dial connects to the first of the URL's hosts that answers, with StartTLS if asked, and
// says which it was. The error names every host tried.
func (d *directory) dial() (*ldap.Conn, string, error) {
	var errs []error
	for _, host := range d.cfg.parsed.hosts {
		opts := []ldap.DialOpt{ldap.DialWithDialer(&net.Dialer{Timeout: d.cfg.timeout})}
		if d.tls != nil {
			cfg := d.tls.Clone()
			cfg.ServerName, _, _ = net.SplitHostPort(host)
			cfg.ServerName = strings.Trim(cfg.ServerName, "[]")
			opts = append(opts, ldap.DialWithTLSConfig(cfg))
		}
		conn, err := ldap.DialURL(d.cfg.parsed.scheme+"://"+host, opts...)
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", host, untrustedHint(err)))
			continue
		}
		conn.SetTimeout(d.cfg.timeout)
		if d.cfg.startTLS {
			cfg := d.tls.Clone()
			cfg.ServerName, _, _ = net.SplitHostPort(host)
			cfg.ServerName = strings.Trim(cfg.ServerName, "[]")
			if err := conn.StartTLS(cfg); err != nil {
				conn.Close()
				errs = append(errs, fmt.Errorf("StartTLS with %s: %w", host, untrustedHint(err)))
				continue
			}
		}
		return conn, host, nil
	}
	return nil, "", errors.Join(errs...)
}

// untrustedHint adds to a TLS verification failure what to do about it.
func untrustedHint(err error) error {
	var unknownCA x509.UnknownAuthorityError
	var invalid x509.CertificateInvalidError
	var hostname x509.HostnameError
	switch {
	// go-ldap's StartTLS formats the handshake's error with %v, so only its text is left.
	case errors.As(err, &unknownCA), strings.Contains(err.Error(), "certificate signed by unknown authority"):
		return fmt.Errorf("the directory's certificate is signed by a CA not trusted here: give --ldap-ca the PEM of that CA: %w", err)
	case errors.As(err, &hostname):
		return fmt.Errorf("the directory's certificate does not name the host of --ldap-url: use a name it holds: %w", err)
	case errors.As(err, &invalid):
		return fmt.Errorf("the directory's certificate is not valid: %w", err)
	}
	return err
}

// bind checks password for dn on a connection of its own, closed after: ok false is a wrong
// password (or a DN without one); an error means the directory could not answer.
func (d *directory) bind(dn string, password []byte) (ok bool, err error) {
	conn, _, err := d.dial()
	if err != nil {
		return false, err
	}
	defer conn.Close()
	err = conn.Bind(dn, string(password))
	switch {
	case err == nil:
		return true, nil
	case ldap.IsErrorWithCode(err, ldap.LDAPResultInvalidCredentials):
		return false, nil
	case isLDAPResult(err):
		// Refused for another reason (account locked, password expired...): a refusal,
		// with the directory's word in the log.
		d.logger.Info("the directory refused a bind", "dn", dn, "error", err)
		return false, nil
	}
	return false, err
}

// isLDAPResult reports whether err is the directory's answer rather than a failure to get one.
func isLDAPResult(err error) bool {
	var e *ldap.Error
	return errors.As(err, &e) && e.ResultCode != 0 && e.ResultCode < ldap.ErrorNetwork
}

// unavailable records an outage (logged once at its start) and returns authn.ErrUnavailable.
func (d *directory) unavailable(cause error) error {
	d.stateMu.Lock()
	if !d.down {
		d.down, d.downSince = true, time.Now()
		d.up.Set(0)
		d.logger.Error("the LDAP directory cannot be asked: users the htpasswd file lacks get 503 until it answers (cached verdicts still work)", "url", d.cfg.url, "error", cause)
	}
	d.stateMu.Unlock()
	return fmt.Errorf("%w: %v", authn.ErrUnavailable, cause)
}

// reachable ends an outage, logging it once.
func (d *directory) reachable() {
	d.stateMu.Lock()
	if d.down {
		d.down = false
		d.up.Set(1)
		d.logger.Info("the LDAP directory answers again", "url", d.cfg.url, "outage", time.Since(d.downSince).Round(time.Millisecond).String())
	}
	d.stateMu.Unlock()
}

// isUp reports whether the last attempt reached the directory, for /readyz.
func (d *directory) isUp() bool {
	d.stateMu.Lock()
	defer d.stateMu.Unlock()
	return !d.down
}

// ping connects and binds as the service account (or searches anonymously), at start.
func (d *directory) ping() error {
	conn, _, err := d.searchConn()
	if err != nil {
		d.unavailable(err)
		return err
	}
	d.release(conn)
	d.reachable()
	return nil
}

// close closes the idle connections.
func (d *directory) close() { d.drain() }
