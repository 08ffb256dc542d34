package ldap

import (
	"bytes"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"os"
	"strings"
	"time"

	goldap "github.com/go-ldap/ldap/v3"
)

// timeLimit is the limit, in whole seconds, that a search asks the directory to keep.
func (d *Directory) timeLimit() int { return max(1, int(d.cfg.Timeout/time.Second)) }

// search runs req on an idle service-account connection, or a new one. A connection the
// directory dropped (a restart) is replaced and the search tried once more.
func (d *Directory) search(req *goldap.SearchRequest) (*goldap.SearchResult, error) {
	for attempt := 0; ; attempt++ {
		conn, fresh, err := d.searchConn()
		if err != nil {
			return nil, err
		}
		res, err := conn.Search(req)
		if err == nil || goldap.IsErrorWithCode(err, goldap.LDAPResultSizeLimitExceeded) || goldap.IsErrorWithCode(err, goldap.LDAPResultNoSuchObject) {
			d.release(conn)
			if goldap.IsErrorWithCode(err, goldap.LDAPResultNoSuchObject) {
				return &goldap.SearchResult{}, nil // the base does not exist: nobody is there
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
func (d *Directory) searchConn() (conn *goldap.Conn, fresh bool, err error) {
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
func (d *Directory) serviceConn(secret []byte) (conn *goldap.Conn, host string, err error) {
	conn, host, err = d.dial()
	if err != nil {
		return nil, "", err
	}
	if d.cfg.BindDN != "" {
		if err := conn.Bind(d.cfg.BindDN, string(secret)); err != nil {
			conn.Close()
			if goldap.IsErrorWithCode(err, goldap.LDAPResultInvalidCredentials) {
				return nil, host, fmt.Errorf("the service account %s cannot bind: check --ldap-bind-dn and the password in --ldap-bind-password-file: %w", d.cfg.BindDN, err)
			}
			return nil, host, fmt.Errorf("the service account %s cannot bind on %s: %w", d.cfg.BindDN, host, err)
		}
	}
	return conn, host, nil
}

func (d *Directory) release(conn *goldap.Conn) {
	select {
	case d.idle <- conn:
	default:
		conn.Close()
	}
}

func (d *Directory) drain() {
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
func (d *Directory) bindSecret() (secret []byte, changed bool, err error) {
	if d.cfg.BindPasswordFile == "" {
		return nil, false, nil
	}
	d.secretMu.Lock()
	defer d.secretMu.Unlock()
	info, err := os.Stat(d.cfg.BindPasswordFile)
	if err != nil {
		return nil, false, fmt.Errorf("--ldap-bind-password-file: %w", err)
	}
	if d.secretStat != nil && os.SameFile(info, d.secretStat) && info.ModTime().Equal(d.secretStat.ModTime()) && info.Size() == d.secretStat.Size() {
		return d.secret, false, nil
	}
	data, err := os.ReadFile(d.cfg.BindPasswordFile)
	if err != nil {
		return nil, false, fmt.Errorf("--ldap-bind-password-file: %w", err)
	}
	changed = d.secretStat != nil
	d.secret, d.secretStat = bytes.TrimRight(data, "\r\n"), info
	return d.secret, changed, nil
}

// dial connects to the first of the URL's hosts that answers, with StartTLS if asked, and
// says which it was. The error names every host tried.
func (d *Directory) dial() (*goldap.Conn, string, error) {
	var errs []error
	for _, host := range d.cfg.parsed.hosts {
		opts := []goldap.DialOpt{goldap.DialWithDialer(&net.Dialer{Timeout: d.cfg.Timeout})}
		if d.tls != nil {
			cfg := d.tls.Clone()
			cfg.ServerName, _, _ = net.SplitHostPort(host)
			cfg.ServerName = strings.Trim(cfg.ServerName, "[]")
			opts = append(opts, goldap.DialWithTLSConfig(cfg))
		}
		conn, err := goldap.DialURL(d.cfg.parsed.scheme+"://"+host, opts...)
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", host, untrustedHint(err)))
			continue
		}
		conn.SetTimeout(d.cfg.Timeout)
		if d.cfg.StartTLS {
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
func (d *Directory) bind(dn string, password []byte) (ok bool, err error) {
	conn, _, err := d.dial()
	if err != nil {
		return false, err
	}
	defer conn.Close()
	err = conn.Bind(dn, string(password))
	switch {
	case err == nil:
		return true, nil
	case goldap.IsErrorWithCode(err, goldap.LDAPResultInvalidCredentials):
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
	var e *goldap.Error
	return errors.As(err, &e) && e.ResultCode != 0 && e.ResultCode < goldap.ErrorNetwork
}
