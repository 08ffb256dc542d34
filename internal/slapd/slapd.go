// Package slapd prepares a real OpenLDAP slapd for tests and benchmarks: Debian's slapd
// and ldap-utils, run as a plain process on loopback ports with a configuration written
// here (the mdb backend and the memberof overlay from /usr/lib/ldap, schemas from
// /etc/ldap/schema, a test CA and server certificate for StartTLS and ldaps).
//
// The package does not start the process: each caller runs Bin with Args under its own
// process management (exec.Cmd in the root tests, harness.Processes in e2e and bench), and
// captures the output, which CountBinds can read. It then waits with Wait and loads entries
// with Add and Modify.
package slapd

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// The directory's suffix and its root DN, which Add and Modify bind as.
const (
	BaseDN       = "dc=example,dc=com"
	RootDN       = "cn=admin," + BaseDN
	RootPassword = "admin-secret"
)

// Debug levels for Args: Quiet logs nothing; StatsLog logs every operation, one line per
// connection, BIND and RESULT, which CountBinds reads.
const (
	Quiet    = 0
	StatsLog = 256
)

// waitTimeout bounds Wait when its context has no earlier deadline.
const waitTimeout = 30 * time.Second

// modules and schemas are what slapd.conf loads; New checks that they are installed.
var (
	modulePath = "/usr/lib/ldap"
	modules    = []string{"back_mdb", "memberof"}
	schemaDir  = "/etc/ldap/schema"
	schemas    = []string{"core", "cosine", "nis", "inetorgperson"}
)

// MissingError is New's error when slapd, ldap-utils or one of the files slapd.conf loads
// is not installed. What says what is missing and How how to install it, for a test to
// skip or fail with (harness.Unavailable, the root tests' unavailable).
type MissingError struct {
	What, How string
}

func (e *MissingError) Error() string { return e.What + "; " + e.How }

// Server is a slapd prepared in a directory of its own, not yet running. Its fields are
// set by New and must not be changed. Its methods are safe for concurrent use.
type Server struct {
	Bin      string // the slapd program
	Dir      string // slapd.conf, db/, ca.pem, server.pem, server.key
	Conf     string // Dir/slapd.conf
	URL      string // plain LDAP with StartTLS offered: ldap://127.0.0.1:PORT/
	LDAPSURL string // TLS from the first byte: ldaps://127.0.0.1:PORT/
	CAFile   string // PEM of the CA that signed the server certificate (for 127.0.0.1 and localhost)

	tools map[string]string // ldap-utils program -> path
}

// New writes a configuration, a CA, a server certificate and an empty database into dir
// (which must exist; a test's t.TempDir()) and picks two free loopback ports. The directory
// is empty, not even the BaseDN entry: load one with Add (Skeleton). It returns a
// *MissingError when something slapd needs is not installed.
func New(dir string) (*Server, error) {
	s := &Server{Dir: dir, Conf: filepath.Join(dir, "slapd.conf"), CAFile: filepath.Join(dir, "ca.pem"), tools: map[string]string{}}
	var err error
	if s.Bin, err = lookTool("slapd"); err != nil {
		return nil, &MissingError{What: "slapd is not installed", How: "apt-get install slapd (preseed slapd/no_configuration true)"}
	}
	for _, tool := range []string{"ldapadd", "ldapmodify", "ldapwhoami"} {
		if s.tools[tool], err = lookTool(tool); err != nil {
			return nil, &MissingError{What: tool + " is not installed", How: "apt-get install ldap-utils"}
		}
	}
	for _, m := range modules {
		if _, err := os.Stat(filepath.Join(modulePath, m+".so")); err != nil {
			return nil, &MissingError{What: "slapd's " + m + " module is not in " + modulePath, How: "apt-get install slapd"}
		}
	}
	for _, sc := range schemas {
		if _, err := os.Stat(filepath.Join(schemaDir, sc+".schema")); err != nil {
			return nil, &MissingError{What: "the " + sc + " schema is not in " + schemaDir, How: "apt-get install slapd"}
		}
	}
	if err := writeCertificates(dir); err != nil {
		return nil, err
	}
	if err := os.Mkdir(filepath.Join(dir, "db"), 0o700); err != nil {
		return nil, err
	}
	if err := os.WriteFile(s.Conf, []byte(s.config()), 0o600); err != nil {
		return nil, err
	}
	plain, err := freeLoopbackAddr()
	if err != nil {
		return nil, err
	}
	tls, err := freeLoopbackAddr()
	if err != nil {
		return nil, err
	}
	s.URL, s.LDAPSURL = "ldap://"+plain+"/", "ldaps://"+tls+"/"
	return s, nil
}

// config is slapd.conf: anyone may read everything but passwords, which serve only to bind.
func (s *Server) config() string {
	var b strings.Builder
	for _, sc := range schemas {
		fmt.Fprintf(&b, "include %s/%s.schema\n", schemaDir, sc)
	}
	fmt.Fprintf(&b, "modulepath %s\n", modulePath)
	for _, m := range modules {
		fmt.Fprintf(&b, "moduleload %s\n", m)
	}
	fmt.Fprintf(&b, `pidfile %[1]s/slapd.pid
TLSCACertificateFile %[1]s/ca.pem
TLSCertificateFile %[1]s/server.pem
TLSCertificateKeyFile %[1]s/server.key
access to attrs=userPassword by self write by anonymous auth by * none
access to * by * read
database mdb
maxsize 16777216
directory %[1]s/db
suffix "%[2]s"
rootdn "%[3]s"
rootpw %[4]s
overlay memberof
`, s.Dir, BaseDN, RootDN, RootPassword)
	return b.String()
}

// Args is slapd's command line after the program name: the configuration, both URLs and
// the debug level (Quiet or StatsLog), which also keeps slapd in the foreground, logging to
// its standard error. The database survives a stop, so the same Args start it again.
func (s *Server) Args(debugLevel int) []string {
	return []string{"-f", s.Conf, "-h", s.URL + " " + s.LDAPSURL, "-d", strconv.Itoa(debugLevel)}
}

// Wait polls ldapwhoami on URL until slapd answers. It gives up with an error when ctx
// ends, after 30 seconds, or when exited is closed (the caller's sign that the process
// ended; nil when there is none).
func (s *Server) Wait(ctx context.Context, exited <-chan struct{}) error {
	ctx, cancel := context.WithTimeout(ctx, waitTimeout)
	defer cancel()
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for {
		out, err := exec.CommandContext(ctx, s.tools["ldapwhoami"], "-x", "-H", s.URL).CombinedOutput()
		if err == nil {
			return nil
		}
		select {
		case <-exited:
			return errors.New("slapd exited before it answered")
		case <-ctx.Done():
			return fmt.Errorf("slapd did not answer ldapwhoami -H %s: %w (last: %v: %s)", s.URL, ctx.Err(), err, bytes.TrimSpace(out))
		case <-tick.C:
		}
	}
}

// Add adds the entries of an LDIF text, binding as RootDN.
func (s *Server) Add(ctx context.Context, ldif string) error {
	return s.ldap(ctx, "ldapadd", ldif)
}

// Modify applies an LDIF text of changes (changetype: modify, add, delete...), binding as
// RootDN.
func (s *Server) Modify(ctx context.Context, ldif string) error {
	return s.ldap(ctx, "ldapmodify", ldif)
}

// ldap runs an ldap-utils program as RootDN over URL with ldif on its standard input.
func (s *Server) ldap(ctx context.Context, tool, ldif string) error {
	cmd := exec.CommandContext(ctx, s.tools[tool], "-x", "-H", s.URL, "-D", RootDN, "-w", RootPassword)
	cmd.Stdin = strings.NewReader(ldif)
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("%s -H %s: %w\n%s", tool, s.URL, err, bytes.TrimSpace(out))
	}
	return nil
}

// lookTool finds a program in PATH or in the sbin directories Debian puts slapd in.
func lookTool(name string) (string, error) {
	if p, err := exec.LookPath(name); err == nil {
		return p, nil
	}
	for _, dir := range []string{"/usr/sbin", "/sbin", "/usr/local/sbin"} {
		p := filepath.Join(dir, name)
		if fi, err := os.Stat(p); err == nil && !fi.IsDir() && fi.Mode()&0o111 != 0 {
			return p, nil
		}
	}
	return "", exec.ErrNotFound
}

// freeLoopbackAddr is a loopback address with a port nothing listens on right now.
func freeLoopbackAddr() (string, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer ln.Close()
	return ln.Addr().String(), nil
}
