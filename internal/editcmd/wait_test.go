package editcmd

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestWaitURL: --wait takes the base URL, or the URL of /readyz or /healthz.
func TestWaitURL(t *testing.T) {
	t.Parallel()
	tests := []struct{ in, want, err string }{
		{"", "", ""},
		{"http://127.0.0.1:8080", "http://127.0.0.1:8080", ""},
		{"http://127.0.0.1:8080/", "http://127.0.0.1:8080", ""},
		{"http://auth:8080/readyz", "http://auth:8080", ""},
		{"https://auth.example/prefix/healthz", "https://auth.example/prefix", ""},
		{"127.0.0.1:8080", "", "want the service's base URL"},
		{"ftp://x", "", "want the service's base URL"},
	}
	for _, tt := range tests {
		got, err := waitURL(tt.in)
		if got != tt.want || (err == nil) != (tt.err == "") || (err != nil && !strings.Contains(err.Error(), tt.err)) {
			t.Errorf("waitURL(%q): got %q, %v; want %q, error %q", tt.in, got, err, tt.want, tt.err)
		}
	}
}

// TestLoadedCountsALaterEdit: the service has loaded an edit when /readyz shows what the
// command wrote, or what the file holds now (a later edit that started from this one).
func TestLoadedCountsALaterEdit(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	path := filepath.Join(dir, "htpasswd")
	if err := os.WriteFile(path, []byte("later\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	w := loadWait{paths: map[string]string{readyHTPasswd: path, readyGroups: filepath.Join(dir, "groups")},
		wrote: map[string][]byte{readyHTPasswd: []byte("mine\n")}}
	body := func(htpasswd string) map[string]string {
		return parseReady(strings.NewReader("ready\nhtpasswd sha256=" + sha256Hex([]byte(htpasswd)) + "\ngroups sha256=x\npolicy sha256=y\n"))
	}
	for _, tt := range []struct {
		loaded string
		want   bool
	}{{"mine\n", true}, {"later\n", true}, {"before\n", false}} {
		if got, why := w.loaded(body(tt.loaded), []string{readyHTPasswd}); got != tt.want {
			t.Errorf("service loaded %q: got %v (%s), want %v", tt.loaded, got, why, tt.want)
		}
	}
	if ok, why := w.loaded(parseReady(strings.NewReader("ready\n")), []string{readyGroups}); ok || !strings.Contains(why, "names no groups file") {
		t.Errorf("no groups line: got %v, %q; want not loaded, and why", ok, why)
	}
}
