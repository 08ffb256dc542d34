// Package htpasswdtest holds what the htpasswd package's tests and the service's own tests
// share: Apache's htpasswd tool, the fixtures in internal/htpasswd/testdata (the vectors
// testdata/make-vectors.sh made with Apache's own tools), and cheap bcrypt hashes.
package htpasswdtest

import (
	"bufio"
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"

	"golang.org/x/crypto/bcrypt"
)

// Apache returns the path of Apache's htpasswd, which tests compare against. It is
// required: CI installs it (apache2-utils), so a missing one fails the test.
func Apache(t testing.TB) string {
	t.Helper()
	path, err := exec.LookPath("htpasswd")
	if err != nil {
		t.Fatalf("Apache's htpasswd is needed (Debian: apt-get install apache2-utils): %v", err)
	}
	return path
}

// Dir is the directory of the fixtures, internal/htpasswd/testdata, as an absolute path, so
// that a test of any package finds them.
func Dir() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Join(filepath.Dir(file), "..", "testdata")
}

// Read returns the bytes of the fixture name.
func Read(t testing.TB, name string) []byte {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(Dir(), name))
	if err != nil {
		t.Fatal(err)
	}
	return data
}

// LineOf returns the number of the first line of data that starts with prefix.
func LineOf(t testing.TB, data []byte, prefix string) int {
	t.Helper()
	sc := bufio.NewScanner(bytes.NewReader(data))
	for n := 1; sc.Scan(); n++ {
		if strings.HasPrefix(sc.Text(), prefix) {
			return n
		}
	}
	t.Fatalf("no line starts with %q", prefix)
	return 0
}

var hashes sync.Map // password → hash

// Hash returns a bcrypt hash of password at the cheapest cost, memoised across tests.
func Hash(t testing.TB, password string) string {
	t.Helper()
	if h, ok := hashes.Load(password); ok {
		return h.(string)
	}
	h, err := bcrypt.GenerateFromPassword([]byte(password), bcrypt.MinCost)
	if err != nil {
		t.Fatal(err)
	}
	hashes.Store(password, string(h))
	return string(h)
}
