package main

// The fuzz target for Basic credentials (the file parsers have theirs in internal/htpasswd,
// registry requests in internal/registry). `go test` runs its seeds; scripts/test.sh fuzzes
// it for a number of inputs (a count, not a duration: see the script for why):
//
//	go test -run='^$' -fuzz='^FuzzBasicCredentials$' -fuzztime=50000x .
//
// A failing input is written to testdata/fuzz/<target>/; check it in, it becomes a seed.

import (
	"bytes"
	"encoding/base64"
	"strings"
	"testing"
	"unicode/utf8"
)

func FuzzBasicCredentials(f *testing.F) {
	// Seeds: users and passwords like those of the format vectors (UTF-8, colons, past bcrypt's
	// 72 bytes), each also as the header a client sends.
	for _, up := range [][2]string{{"bcrypt4", "correct horse battery staple"}, {"bcrypt5", "pässwörd-ünïcode"},
		{"bcrypt-colon", "a:b:c"}, {"bcrypt-long80", strings.Repeat("0123456789", 7) + "-past-72!"}} {
		f.Add(up[0], up[1], "Basic "+base64.StdEncoding.EncodeToString([]byte(up[0]+":"+up[1])))
	}
	for _, header := range []string{"", "Basic", "Basic ", "basic Ym9iOnB3", "BASIC  Ym9iOnB3 ", "Bearer Ym9iOnB3",
		"Basic Ym9iOnB3\x00", "Basic !!!!", "Basic Ym9i", "Basic OnB3", "Basic Ym9iOnB3AA==", "Basic\tYm9iOnB3"} {
		f.Add("bob", "pw", header)
	}
	f.Add("a:b", "c", "")
	f.Add("bo\x7fb", "pw", "")
	f.Add("bob", "p\x00w", "")
	f.Add("b\xffob", "pw", "")
	f.Fuzz(func(t *testing.T, user, password, header string) {
		// Any header: accepted credentials are well formed and are what the header encodes.
		u, p, reason := basicCredentials([]string{header})
		if reason == "" {
			scheme, encoded, _ := strings.Cut(header, " ")
			raw, err := base64.StdEncoding.DecodeString(strings.TrimSpace(encoded))
			switch {
			case !strings.EqualFold(scheme, "Basic") || err != nil || string(raw) != u+":"+string(p):
				t.Errorf("header %q gave user %q, password %q: not what it encodes", header, u, p)
			case u == "" || strings.Contains(u, ":") || !utf8.ValidString(u) || strings.IndexFunc(u, isControl) >= 0:
				t.Errorf("header %q gave a malformed user %q", header, u)
			case bytes.IndexByte(p, 0) >= 0:
				t.Errorf("header %q gave a password with NUL", header)
			}
		} else if u != "" || p != nil {
			t.Errorf("header %q: refused (%s) but gave user %q, password %q", header, reason, u, p)
		}
		if _, _, reason := basicCredentials([]string{header, header}); reason != "several_authorization_headers" {
			t.Errorf("two headers: got reason %q, want several_authorization_headers", reason)
		}

		// What a client sends for user and password comes back as sent, unless the user holds a
		// colon (the password then starts after the first one, as RFC 7617 says), or the
		// user or password cannot be checked safely.
		sent := "Basic " + base64.StdEncoding.EncodeToString([]byte(user+":"+password))
		u, p, reason = basicCredentials([]string{sent})
		name, rest, _ := strings.Cut(user, ":")
		wantPassword := password
		if strings.Contains(user, ":") {
			wantPassword = rest + ":" + password
		}
		valid := name != "" && utf8.ValidString(name) && strings.IndexFunc(name, isControl) < 0 &&
			!strings.Contains(wantPassword, "\x00")
		if valid && (reason != "" || u != name || string(p) != wantPassword) {
			t.Errorf("user %q, password %q: got %q, %q, reason %q", user, password, u, p, reason)
		}
		if !valid && reason == "" {
			t.Errorf("user %q, password %q: accepted as %q, %q, want a refusal", user, password, u, p)
		}
	})
}
