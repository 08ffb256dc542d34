package main

// A real OpenLDAP slapd for the LDAP tests, prepared by internal/slapd (which e2e and bench
// share) and run here as a plain exec.Cmd.

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/registry-auth/registry-auth/internal/slapd"
)

// unavailable stops t because a program it needs is missing: a failure when CI is set, a
// skip with how to enable the test otherwise (as e2e/harness.Unavailable).
func unavailable(t testing.TB, what, how string) {
	t.Helper()
	if os.Getenv("CI") != "" {
		t.Fatalf("%s; %s (CI is set, so this is a failure, not a skip; scripts/test.sh installs it)", what, how)
	}
	t.Skipf("%s; %s to run this test (scripts/test.sh does it)", what, how)
}

const (
	testBaseDN     = slapd.BaseDN
	testRootDN     = slapd.RootDN
	testRootPW     = slapd.RootPassword
	testReaderDN   = "cn=reader,dc=example,dc=com"
	testReaderPW   = "reader-secret"
	testPeopleBase = "ou=people,dc=example,dc=com"
	testGroupBase  = "ou=groups,dc=example,dc=com"
)

// testDirectoryLDIF is the directory of the tests: alice in pusher; bob in devs, itself in
// builders (nested); Dave spelt with a capital; robot, also a user of the htpasswd file;
// two entries named twin; a service account for searches.
var testDirectoryLDIF = `dn: dc=example,dc=com
objectClass: dcObject
objectClass: organization
o: Example
dc: example

dn: cn=reader,dc=example,dc=com
objectClass: organizationalRole
objectClass: simpleSecurityObject
cn: reader
userPassword: reader-secret

dn: ou=people,dc=example,dc=com
objectClass: organizationalUnit
ou: people

dn: ou=others,dc=example,dc=com
objectClass: organizationalUnit
ou: others

dn: ou=groups,dc=example,dc=com
objectClass: organizationalUnit
ou: groups
` + testPerson("alice") + testPerson("bob") + testPerson("Dave") + testPerson("robot") + testPerson("twin") + `
dn: uid=twin,ou=others,dc=example,dc=com
objectClass: inetOrgPerson
uid: twin
cn: twin
sn: twin
userPassword: twin-secret

dn: cn=pusher,ou=groups,dc=example,dc=com
objectClass: groupOfNames
cn: pusher
member: uid=alice,ou=people,dc=example,dc=com

dn: cn=devs,ou=groups,dc=example,dc=com
objectClass: groupOfNames
cn: devs
member: uid=bob,ou=people,dc=example,dc=com

dn: cn=builders,ou=groups,dc=example,dc=com
objectClass: groupOfNames
cn: builders
member: cn=devs,ou=groups,dc=example,dc=com
`

// testPerson is an entry uid=NAME under ou=people with the password NAME-dir-secret.
func testPerson(name string) string {
	return fmt.Sprintf(`
dn: uid=%[1]s,ou=people,dc=example,dc=com
objectClass: inetOrgPerson
uid: %[1]s
cn: %[1]s
sn: %[1]s
userPassword: %[1]s-dir-secret
`, name)
}

// slapdServer is a running slapd: url is plain LDAP (StartTLS offered), ldapsURL TLS from
// the first byte, both signed by the CA in caFile.
type slapdServer struct {
	t             testing.TB
	srv           *slapd.Server
	dir           string
	url, ldapsURL string
	caFile        string
	cmd           *exec.Cmd
	exited        chan struct{}
}

// startSlapd starts a slapd loaded with testDirectoryLDIF; t.Cleanup stops it.
func startSlapd(t testing.TB) *slapdServer {
	t.Helper()
	dir := t.TempDir()
	srv, err := slapd.New(dir)
	if missing := (*slapd.MissingError)(nil); errors.As(err, &missing) {
		unavailable(t, missing.What, missing.How)
	}
	if err != nil {
		t.Fatal(err)
	}
	s := &slapdServer{t: t, srv: srv, dir: dir, url: srv.URL, ldapsURL: srv.LDAPSURL, caFile: srv.CAFile}
	s.start()
	t.Cleanup(s.stop)
	if err := srv.Add(context.Background(), testDirectoryLDIF); err != nil {
		t.Fatal(err)
	}
	return s
}

// modify applies an LDIF change as the root DN.
func (s *slapdServer) modify(ldif string) {
	s.t.Helper()
	if err := s.srv.Modify(context.Background(), ldif); err != nil {
		s.t.Fatal(err)
	}
}

// start runs slapd on s's addresses and waits until it answers.
func (s *slapdServer) start() {
	s.t.Helper()
	s.cmd = exec.Command(s.srv.Bin, s.srv.Args(slapd.Quiet)...)
	logs := &lockedBuffer{}
	s.cmd.Stdout, s.cmd.Stderr = logs, logs
	if err := s.cmd.Start(); err != nil {
		s.t.Fatalf("starting slapd: %v", err)
	}
	s.exited = make(chan struct{})
	go func(cmd *exec.Cmd, exited chan struct{}) { cmd.Wait(); close(exited) }(s.cmd, s.exited)
	if err := s.srv.Wait(context.Background(), s.exited); err != nil {
		s.t.Fatalf("%v\n%s", err, logs.String())
	}
}

// stop ends slapd by its pid and waits for it to exit.
func (s *slapdServer) stop() {
	if s.cmd == nil {
		return
	}
	s.cmd.Process.Signal(os.Interrupt)
	select {
	case <-s.exited:
	case <-time.After(10 * time.Second):
		s.cmd.Process.Kill()
		<-s.exited
	}
	s.cmd = nil
}

// hostPort is the host:port of an ldap:// or ldaps:// URL of s.
func hostPort(u string) string {
	_, rest, _ := strings.Cut(u, "://")
	return strings.TrimSuffix(rest, "/")
}

// freeLoopbackAddr is a loopback address with a port nothing listens on right now.
func freeLoopbackAddr(t testing.TB) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}
