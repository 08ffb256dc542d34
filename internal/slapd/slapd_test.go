package slapd

import (
	"bytes"
	"errors"
	"os"
	"os/exec"
	"strings"
	"sync"
	"testing"
)

// newServer is New in t.TempDir(); a missing slapd fails the test in CI and skips it
// elsewhere, as the root tests' unavailable does.
func newServer(t *testing.T) *Server {
	t.Helper()
	s, err := New(t.TempDir())
	var missing *MissingError
	if errors.As(err, &missing) {
		if os.Getenv("CI") != "" {
			t.Fatalf("%v (CI is set, so this is a failure, not a skip; scripts/test.sh installs it)", err)
		}
		t.Skipf("%v to run this test (scripts/test.sh does it)", err)
	}
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// lockedBuffer is a bytes.Buffer for a process's output, read while it runs.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// TestServer starts slapd as a caller would, loads a person in a group and counts the
// binds of ldapwhoami as that person over plain LDAP, StartTLS and ldaps.
func TestServer(t *testing.T) {
	s := newServer(t)
	logs := &lockedBuffer{}
	cmd := exec.Command(s.Bin, s.Args(StatsLog)...)
	cmd.Stdout, cmd.Stderr = logs, logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan struct{})
	go func() { cmd.Wait(); close(exited) }()
	t.Cleanup(func() { cmd.Process.Signal(os.Interrupt); <-exited })
	if err := s.Wait(t.Context(), exited); err != nil {
		t.Fatalf("%v\n%s", err, logs.String())
	}
	if err := s.Add(t.Context(), Skeleton()+Person("alice", "alice-secret")+Group("pusher", "alice")+Account("reader", "reader-secret")); err != nil {
		t.Fatal(err)
	}
	if err := s.Modify(t.Context(), "dn: "+PersonDN("alice")+"\nchangetype: modify\nreplace: sn\nsn: Liddell\n"); err != nil {
		t.Fatal(err)
	}
	if err := s.Add(t.Context(), Person("alice", "again")); err == nil {
		t.Error("adding alice twice: got no error, want one")
	}

	whoami := func(env []string, args ...string) error {
		cmd := exec.Command("ldapwhoami", append([]string{"-x"}, args...)...)
		cmd.Env = append(os.Environ(), env...)
		out, err := cmd.CombinedOutput()
		if err != nil {
			return errors.New(strings.TrimSpace(string(out)))
		}
		return nil
	}
	ca := []string{"LDAPTLS_CACERT=" + s.CAFile, "LDAPTLS_REQCERT=demand"}
	for _, c := range []struct {
		name    string
		env     []string
		args    []string
		wantErr bool
	}{
		{"plain", nil, []string{"-H", s.URL, "-D", PersonDN("alice"), "-w", "alice-secret"}, false},
		{"wrong password", nil, []string{"-H", s.URL, "-D", PersonDN("alice"), "-w", "nope"}, true},
		{"StartTLS", ca, []string{"-ZZ", "-H", s.URL, "-D", PersonDN("alice"), "-w", "alice-secret"}, false},
		{"ldaps", ca, []string{"-H", s.LDAPSURL, "-D", PersonDN("alice"), "-w", "alice-secret"}, false},
		{"service account", nil, []string{"-H", s.URL, "-D", AccountDN("reader"), "-w", "reader-secret"}, false},
	} {
		if err := whoami(c.env, c.args...); (err != nil) != c.wantErr {
			t.Errorf("%s: got error %v, want error %v", c.name, err, c.wantErr)
		}
	}
	// memberof: the group added the attribute to alice.
	search := exec.Command("ldapsearch", "-x", "-LLL", "-H", s.URL, "-b", PersonDN("alice"), "memberOf")
	if out, err := search.CombinedOutput(); err != nil || !strings.Contains(string(out), "memberOf: "+GroupDN("pusher")) {
		t.Errorf("ldapsearch memberOf of alice: got %v\n%s, want memberOf: %s", err, out, GroupDN("pusher"))
	}

	binds, err := CountBinds(strings.NewReader(logs.String()))
	if err != nil {
		t.Fatal(err)
	}
	// Add, Modify and the failed Add bind as the root DN; ldapwhoami as alice four times.
	if got := binds[PersonDN("alice")]; got != 4 {
		t.Errorf("binds as alice: got %d, want 4 (%v)\n%s", got, binds, logs.String())
	}
	if got := binds[RootDN]; got != 3 {
		t.Errorf("binds as the root DN: got %d, want 3 (%v)", got, binds)
	}
	if got := binds[AccountDN("reader")]; got != 1 {
		t.Errorf("binds as the service account: got %d, want 1 (%v)", got, binds)
	}
}

func TestCountBinds(t *testing.T) {
	log := `6650a1b2.1a2b3c4d 0x7f conn=1000 fd=12 ACCEPT from IP=127.0.0.1:40000 (IP=127.0.0.1:389)
6650a1b2.1a2b3c4d 0x7f conn=1000 op=0 BIND dn="cn=reader,dc=example,dc=com" method=128
6650a1b2.1a2b3c4d 0x7f conn=1000 op=0 BIND dn="cn=reader,dc=example,dc=com" mech=SIMPLE bind_ssf=0 ssf=0
6650a1b2.1a2b3c4d 0x7f conn=1000 op=0 RESULT tag=97 err=0 qtime=0.000010 etime=0.000100 text=
6650a1b2.1a2b3c4d 0x7f conn=1001 op=0 BIND dn="uid=alice,ou=people,dc=example,dc=com" method=128
6650a1b2.1a2b3c4d 0x7f conn=1001 op=0 RESULT tag=97 err=49 qtime=0.000010 etime=0.000100 text=
6650a1b2.1a2b3c4d 0x7f conn=1002 op=0 BIND dn="" method=128
`
	got, err := CountBinds(strings.NewReader(log))
	if err != nil {
		t.Fatal(err)
	}
	want := BindCounts{"cn=reader,dc=example,dc=com": 1, "uid=alice,ou=people,dc=example,dc=com": 1, "": 1}
	if len(got) != len(want) || got.Total() != 3 {
		t.Fatalf("got %v, want %v", got, want)
	}
	for dn, n := range want {
		if got[dn] != n {
			t.Errorf("binds as %q: got %d, want %d", dn, got[dn], n)
		}
	}
}
