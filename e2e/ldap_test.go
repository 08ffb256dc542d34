package e2e

import (
	"context"
	"errors"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/remote/transport"

	"github.com/registry-auth/registry-auth/e2e/harness"
	"github.com/registry-auth/registry-auth/internal/slapd"
)

// The directory's people and the htpasswd file's robot of TestLDAP.
var (
	dirMember = account{"dana", "dana-in-the-directory"} // in the directory group payments
	dirOther  = account{"erin", "erin-in-the-directory"} // in the directory, in no group
	fileRobot = account{"ci-robot", "ci-robot-token-3"}  // in the htpasswd file only
)

// The service account registry-auth searches the directory as.
const (
	directoryReader   = "registry"
	directoryReaderPW = "registry-reads-the-directory"
)

// ldapPolicy grants push by a directory group (and to the robot by name), pull to everyone
// authenticated.
const ldapPolicy = `rules:
  - subjects: [group:payments, user:ci-robot]
    repositories: ["payments/**"]
    actions: [pull, push]
  - subjects: [authenticated]
    repositories: ["**"]
    actions: [pull]
`

// startDirectory starts slapd (internal/slapd) with stats logging through harness.Processes,
// loads ldif and stops it when the test ends.
func startDirectory(t *testing.T, ctx context.Context, ldif string) (*slapd.Server, *harness.Process) {
	t.Helper()
	dir := t.TempDir()
	srv, err := slapd.New(dir)
	if missing := (*slapd.MissingError)(nil); errors.As(err, &missing) {
		harness.Unavailable(t, missing.What, missing.How)
	}
	if err != nil {
		t.Fatal(err)
	}
	ps := harness.NewProcesses(filepath.Join(dir, "logs"))
	p, err := ps.Start("slapd", srv.Bin, srv.Args(slapd.StatsLog), nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := ps.StopAll(); err != nil {
			t.Error(err)
		}
		if t.Failed() {
			t.Logf("--- slapd log (tail) ---\n%s", p.LogTail(4<<10))
		}
	})
	if err := srv.Wait(ctx, p.Done()); err != nil {
		t.Fatalf("%v\n--- slapd log ---\n%s", err, p.LogTail(4<<10))
	}
	if err := srv.Add(ctx, ldif); err != nil {
		t.Fatal(err)
	}
	return srv, p
}

// bindsAs counts the BIND operations as dn in slapd's log so far.
func bindsAs(t *testing.T, p *harness.Process, dn string) int {
	t.Helper()
	binds, err := slapd.CountBinds(strings.NewReader(p.Logs()))
	if err != nil {
		t.Fatal(err)
	}
	return binds[dn]
}

// TestLDAP: users from a real slapd (over ldaps, trusting its CA with --ldap-ca) beside a
// robot of the htpasswd file, through Traefik and the registry with go-containerregistry.
// A member of the directory group the policy names pushes and pulls; another directory
// user pulls and is refused a push; a wrong password is unauthorized; the robot works.
func TestLDAP(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	srv, slapdProc := startDirectory(t, ctx, slapd.Skeleton()+
		slapd.Account(directoryReader, directoryReaderPW)+
		slapd.Person(dirMember.name, dirMember.password)+
		slapd.Person(dirOther.name, dirOther.password)+
		slapd.Group("payments", dirMember.name))

	dir := t.TempDir()
	secrets := filepath.Join(dir, "secrets")
	if err := os.Mkdir(secrets, 0o700); err != nil {
		t.Fatal(err)
	}
	policyFile, passwordFile := filepath.Join(secrets, "policy.yaml"), filepath.Join(secrets, "ldap-password")
	for path, content := range map[string]string{policyFile: ldapPolicy, passwordFile: directoryReaderPW + "\n"} {
		if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	s := harness.StartStack(t, harness.StackOptions{
		Dir:      dir,
		HTPasswd: htpasswdFor(t, fileRobot),
		AuthArgs: []string{
			"--policy", policyFile,
			"--ldap-url", srv.LDAPSURL + slapd.PeopleBase + "?uid?sub?(objectClass=inetOrgPerson)",
			"--ldap-ca", srv.CAFile,
			"--ldap-bind-dn", slapd.AccountDN(directoryReader),
			"--ldap-bind-password-file", passwordFile,
			"--ldap-group-base", slapd.GroupBase,
		},
	})

	img := randomOCIImage(t, 2, 64<<10)
	want, err := img.Digest()
	if err != nil {
		t.Fatal(err)
	}
	pushed := imageRef(t, s.Addr, "payments/api:1")

	t.Run("a member of the directory group pushes and pulls", func(t *testing.T) {
		if err := remote.Write(pushed, img, ggcrOptions(ctx, s, &dirMember)...); err != nil {
			t.Fatalf("push as %s: %v", dirMember.name, err)
		}
		got, err := remote.Image(pushed, ggcrOptions(ctx, s, &dirMember)...)
		if err != nil {
			t.Fatalf("pull as %s: %v", dirMember.name, err)
		}
		verifyImage(t, got, img, want)
		// The push and the pull are dozens of checks: one search and one bind, then the cache.
		if n := bindsAs(t, slapdProc, slapd.PersonDN(dirMember.name)); n != 1 {
			t.Errorf("slapd saw %d binds as %s for a push and a pull, want 1", n, dirMember.name)
		}
	})

	t.Run("another directory user pulls and is refused a push", func(t *testing.T) {
		got, err := remote.Image(pushed, ggcrOptions(ctx, s, &dirOther)...)
		if err != nil {
			t.Fatalf("pull as %s: %v", dirOther.name, err)
		}
		verifyImage(t, got, img, want)
		registryUnchanged(t, s, func() {
			err := remote.Write(imageRef(t, s.Addr, "payments/api:by-"+dirOther.name), randomOCIImage(t, 1, 1<<10), ggcrOptions(ctx, s, &dirOther)...)
			wantRegistryError(t, err, http.StatusForbidden, transport.DeniedErrorCode)
		})
	})

	t.Run("a wrong directory password is unauthorized", func(t *testing.T) {
		wrong := account{dirMember.name, "not-" + dirMember.password}
		_, err := remote.Image(pushed, ggcrOptions(ctx, s, &wrong)...)
		wantRegistryError(t, err, http.StatusUnauthorized, transport.UnauthorizedErrorCode)
	})

	t.Run("the robot of the htpasswd file pushes beside them", func(t *testing.T) {
		robotRef := imageRef(t, s.Addr, "payments/api:by-robot")
		if err := remote.Write(robotRef, randomOCIImage(t, 1, 4<<10), ggcrOptions(ctx, s, &fileRobot)...); err != nil {
			t.Fatalf("push as %s: %v", fileRobot.name, err)
		}
		if _, err := remote.Image(pushed, ggcrOptions(ctx, s, &fileRobot)...); err != nil {
			t.Fatalf("pull as %s: %v", fileRobot.name, err)
		}
	})
}
