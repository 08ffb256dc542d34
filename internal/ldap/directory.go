// Package ldap authenticates users against an LDAP directory or Active Directory as Apache's
// mod_authnz_ldap does (search the entry as a service account, bind as it with the password,
// then its groups), behind the authn seam, and diagnoses a directory for `registry-auth check`.
// No other package of the service imports go-ldap.
package ldap

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	goldap "github.com/go-ldap/ldap/v3"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/registry-auth/registry-auth/internal/authn"
)

// Directory authenticates the users the htpasswd file does not know against an LDAP
// directory, as Apache's mod_authnz_ldap: search the user's entry as the service account,
// bind as that entry with the client's password on a connection of its own, then search its
// groups. It is safe for concurrent use.
type Directory struct {
	cfg    Config
	tls    *tls.Config
	logger *slog.Logger
	up     prometheus.Gauge // registry_auth_ldap_up
	// idle holds service-account connections for searches. A user's bind never runs on one:
	// a bind changes the identity of the whole connection.
	idle chan *goldap.Conn
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

// poolSize is how many idle search connections are kept.
const poolSize = 4

// New prepares a directory for c, validating it and reading --ldap-ca. It does not dial.
// Its gauge registry_auth_ldap_up is registered with reg, unless reg is nil.
func New(c Config, logger *slog.Logger, reg prometheus.Registerer) (*Directory, error) {
	if err := c.Validate(); err != nil {
		return nil, err
	}
	d := &Directory{cfg: c, logger: logger, idle: make(chan *goldap.Conn, poolSize),
		up: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "registry_auth_ldap_up",
			Help: "1 while the LDAP directory answers, 0 during an outage (users the htpasswd file lacks then get 503 unless cached).",
		})}
	if c.parsed.scheme == "ldaps" || c.StartTLS {
		d.tls = &tls.Config{MinVersion: tls.VersionTLS12}
		if c.CAFile != "" {
			pem, err := os.ReadFile(c.CAFile)
			if err != nil {
				return nil, fmt.Errorf("--ldap-ca: %w", err)
			}
			d.tls.RootCAs = x509.NewCertPool()
			if !d.tls.RootCAs.AppendCertsFromPEM(pem) {
				return nil, fmt.Errorf("--ldap-ca %s holds no PEM certificate: give the CA that signs the directory's certificate", c.CAFile)
			}
		}
	} else if c.CAFile != "" {
		return nil, errors.New("--ldap-ca without TLS: use an ldaps:// URL or --ldap-starttls, or remove --ldap-ca")
	}
	// Registered here, so that it exists only with a directory.
	if reg != nil {
		reg.MustRegister(d.up)
	}
	d.up.Set(1)
	return d, nil
}

func (d *Directory) Claims(user string) (string, bool) {
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
func (d *Directory) NameKey(user string) string { return nameKey(user) }

// Forget drops every remembered directory verdict (SIGHUP).
func (d *Directory) Forget() { d.generation.Add(1) }

// entry is a user's entry as found.
type entry struct {
	dn, user string   // the entry found and its name as the directory spells it
	groups   []string // group keys: names and DNs
}

func (d *Directory) Check(_ context.Context, c authn.Credential) (authn.Outcome, error) {
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
		// The decision line that follows names the user (cut, as every logged name is).
		d.logger.Warn("the directory has several entries for this name: refused; make --ldap-url's attribute and filter match one entry per user", "entries", found)
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
func (d *Directory) absentDN() string {
	dn := d.cfg.parsed.attribute + "=registry-auth-absent-user"
	if d.cfg.parsed.baseDN != "" {
		dn += "," + d.cfg.parsed.baseDN
	}
	return dn
}

// findUser searches the user's entry; found is the number of entries (at most 2 are asked).
func (d *Directory) findUser(name string) (entry entry, found int, err error) {
	u := d.cfg.parsed
	res, err := d.search(&goldap.SearchRequest{
		BaseDN: u.baseDN, Scope: u.scope, DerefAliases: goldap.NeverDerefAliases,
		SizeLimit: 2, TimeLimit: d.timeLimit(), Filter: u.userFilter(name), Attributes: []string{u.attribute},
	})
	if goldap.IsErrorWithCode(err, goldap.LDAPResultSizeLimitExceeded) {
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

// Lookup is the identity the directory gives name without a password, for explain: the
// entry found as a login would find it, its spelling of the name and its groups (keys). An
// unknown name, or one with several entries, is an error saying that a login is refused; a
// directory that cannot be asked is authn.ErrUnavailable.
func (d *Directory) Lookup(name string) (user string, groups []string, err error) {
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

// unavailable records an outage (logged once at its start) and returns authn.ErrUnavailable.
func (d *Directory) unavailable(cause error) error {
	d.stateMu.Lock()
	if !d.down {
		d.down, d.downSince = true, time.Now()
		d.up.Set(0)
		d.logger.Error("the LDAP directory cannot be asked: users the htpasswd file lacks get 503 until it answers (cached verdicts still work)", "url", d.cfg.URL, "error", cause)
	}
	d.stateMu.Unlock()
	return fmt.Errorf("%w: %v", authn.ErrUnavailable, cause)
}

// reachable ends an outage, logging it once.
func (d *Directory) reachable() {
	d.stateMu.Lock()
	if d.down {
		d.down = false
		d.up.Set(1)
		d.logger.Info("the LDAP directory answers again", "url", d.cfg.URL, "outage", time.Since(d.downSince).Round(time.Millisecond).String())
	}
	d.stateMu.Unlock()
}

// Ping connects and binds as the service account (or searches anonymously), at start.
func (d *Directory) Ping() error {
	conn, _, err := d.searchConn()
	if err != nil {
		d.unavailable(err)
		return err
	}
	d.release(conn)
	d.reachable()
	return nil
}

// Close closes the idle connections.
func (d *Directory) Close() { d.drain() }
