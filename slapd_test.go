package main

// A real OpenLDAP slapd for the LDAP tests: Debian's slapd and ldap-utils, started as a
// plain process on a loopback port with a configuration written here. The e2e module cannot
// share this file (a root package test cannot import another module's test code, nor the
// other way round), so e2e/harness has its own starter for the end-to-end tests.

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
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

// lookTool finds a program in PATH or in the sbin directories Debian puts slapd in.
func lookTool(t testing.TB, name, pkg string) string {
	t.Helper()
	if p, err := exec.LookPath(name); err == nil {
		return p
	}
	for _, dir := range []string{"/usr/sbin", "/sbin", "/usr/local/sbin"} {
		if p := filepath.Join(dir, name); isExecutable(p) {
			return p
		}
	}
	unavailable(t, name+" is not installed", "apt-get install "+pkg)
	return ""
}

func isExecutable(p string) bool {
	fi, err := os.Stat(p)
	return err == nil && !fi.IsDir() && fi.Mode()&0o111 != 0
}

const (
	testBaseDN     = "dc=example,dc=com"
	testRootDN     = "cn=admin,dc=example,dc=com"
	testRootPW     = "admin-secret"
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
	t                testing.TB
	slapd, conf, dir string
	url, ldapsURL    string
	caFile           string
	cmd              *exec.Cmd
	exited           chan struct{}
}

// startSlapd starts a slapd loaded with testDirectoryLDIF; t.Cleanup stops it.
func startSlapd(t testing.TB) *slapdServer {
	t.Helper()
	slapd := lookTool(t, "slapd", "slapd (preseed slapd/no_configuration true)")
	lookTool(t, "ldapadd", "ldap-utils")
	lookTool(t, "ldapwhoami", "ldap-utils")
	if _, err := os.Stat("/usr/lib/ldap/back_mdb.so"); err != nil {
		unavailable(t, "slapd's mdb backend is not in /usr/lib/ldap", "apt-get install slapd")
	}
	dir := t.TempDir()
	s := &slapdServer{t: t, slapd: slapd, dir: dir, conf: filepath.Join(dir, "slapd.conf"), caFile: filepath.Join(dir, "ca.pem")}
	writeTestCertificates(t, dir)
	if err := os.Mkdir(filepath.Join(dir, "db"), 0o700); err != nil {
		t.Fatal(err)
	}
	conf := fmt.Sprintf(`include /etc/ldap/schema/core.schema
include /etc/ldap/schema/cosine.schema
include /etc/ldap/schema/nis.schema
include /etc/ldap/schema/inetorgperson.schema
modulepath /usr/lib/ldap
moduleload back_mdb
moduleload memberof
pidfile %[1]s/slapd.pid
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
`, dir, testBaseDN, testRootDN, testRootPW)
	writeFile(t, s.conf, conf)
	s.url, s.ldapsURL = "ldap://"+freeLoopbackAddr(t)+"/", "ldaps://"+freeLoopbackAddr(t)+"/"
	s.start()
	t.Cleanup(s.stop)
	ldif := filepath.Join(dir, "directory.ldif")
	writeFile(t, ldif, testDirectoryLDIF)
	s.ldap("ldapadd", "-f", ldif)
	return s
}

// ldap runs an ldap-utils command as the root DN against s.
func (s *slapdServer) ldap(tool string, args ...string) {
	s.t.Helper()
	args = append([]string{"-x", "-H", s.url, "-D", testRootDN, "-w", testRootPW}, args...)
	if out, err := exec.Command(tool, args...).CombinedOutput(); err != nil {
		s.t.Fatalf("%s %v: %v\n%s", tool, args, err, out)
	}
}

// modify applies an LDIF change as the root DN.
func (s *slapdServer) modify(ldif string) {
	s.t.Helper()
	p := filepath.Join(s.dir, fmt.Sprintf("change-%d.ldif", time.Now().UnixNano()))
	writeFile(s.t, p, ldif)
	s.ldap("ldapmodify", "-f", p)
}

// start runs slapd on s's addresses and waits until it answers.
func (s *slapdServer) start() {
	s.t.Helper()
	s.cmd = exec.Command(s.slapd, "-f", s.conf, "-h", s.url+" "+s.ldapsURL, "-d", "0")
	logs := &lockedBuffer{}
	s.cmd.Stdout, s.cmd.Stderr = logs, logs
	if err := s.cmd.Start(); err != nil {
		s.t.Fatalf("starting slapd: %v", err)
	}
	s.exited = make(chan struct{})
	go func(cmd *exec.Cmd, exited chan struct{}) { cmd.Wait(); close(exited) }(s.cmd, s.exited)
	waitFor(s.t, 20*time.Second, "slapd to answer ldapwhoami", func() bool {
		select {
		case <-s.exited:
			s.t.Fatalf("slapd exited: %s", logs.String())
		default:
		}
		return exec.Command("ldapwhoami", "-x", "-H", s.url).Run() == nil
	})
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

// writeTestCertificates writes ca.pem, server.pem and server.key (for 127.0.0.1 and
// localhost) into dir.
func writeTestCertificates(t testing.TB, dir string) {
	t.Helper()
	caKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	ca := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "registry-auth test CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, ca, ca, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	caCert, _ := x509.ParseCertificate(caDER)
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	leaf := &x509.Certificate{
		SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: "127.0.0.1"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)}, DNSNames: []string{"localhost"},
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	leafDER, err := x509.CreateCertificate(rand.Reader, leaf, caCert, &key.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, _ := x509.MarshalPKCS8PrivateKey(key)
	for name, block := range map[string]*pem.Block{
		"ca.pem": {Type: "CERTIFICATE", Bytes: caDER}, "server.pem": {Type: "CERTIFICATE", Bytes: leafDER},
		"server.key": {Type: "PRIVATE KEY", Bytes: keyDER},
	} {
		writeFile(t, filepath.Join(dir, name), string(pem.EncodeToMemory(block)))
	}
}

// hostPort is the host:port of an ldap:// or ldaps:// URL of s.
func hostPort(u string) string {
	_, rest, _ := strings.Cut(u, "://")
	return strings.TrimSuffix(rest, "/")
}
