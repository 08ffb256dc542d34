package main

import (
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/registry-auth/registry-auth/internal/registry/registrytest"
)

const (
	wantUnauthorizedBody = `{"errors":[{"code":"UNAUTHORIZED","message":"authentication required","detail":"log in with a user of the registry's htpasswd file"}]}` + "\n"
	wantDeniedBody       = `{"errors":[{"code":"DENIED","message":"requested access to the resource is denied","detail":"pulling needs a valid user; pushing and deleting need membership of the push group"}]}` + "\n"
	wantUnsupportedBody  = `{"errors":[{"code":"UNSUPPORTED","message":"this endpoint answers Traefik forwardAuth requests only"}]}` + "\n"
)

// newTestHandler returns the /auth handler over alice (pusher) and bob (reader), and the
// buffer its log goes to.
func newTestHandler(t *testing.T) (*authHandler, *lockedBuffer) {
	t.Helper()
	f := newTestFiles(t,
		htpasswdLines(t, "alice", "alice-secret", "bob", "bob-secret"),
		"pusher: alice\nreaders: bob\n")
	logs := &lockedBuffer{}
	st, m := newTestStore(t, f, time.Minute, logs)
	return testAuthHandler(st, m, logs), logs
}

func basic(user, password string) string {
	return "Basic " + base64.StdEncoding.EncodeToString([]byte(user+":"+password))
}

// TestDecisionTable is the contract with Traefik and registry clients: every status, header
// and body /auth can answer.
func TestDecisionTable(t *testing.T) {
	t.Parallel()
	h, logs := newTestHandler(t)
	const manifest = "/v2/team/app/manifests/latest"
	tests := []struct {
		name    string
		headers map[string][]string // nil value: header absent
		status  int
		user    string // X-Forwarded-User on 200
	}{
		// How Traefik calls us for each client request, by user and method.
		{"reader pulls manifest", hdr("GET", manifest, basic("bob", "bob-secret")), 200, "bob"},
		{"reader heads manifest", hdr("HEAD", manifest, basic("bob", "bob-secret")), 200, "bob"},
		{"reader checks base", hdr("GET", "/v2/", basic("bob", "bob-secret")), 200, "bob"},
		{"reader lists tags", hdr("GET", "/v2/team/app/tags/list?n=10", basic("bob", "bob-secret")), 200, "bob"},
		{"reader pushes manifest", hdr("PUT", manifest, basic("bob", "bob-secret")), 403, ""},
		{"reader starts upload", hdr("POST", "/v2/team/app/blobs/uploads/", basic("bob", "bob-secret")), 403, ""},
		{"reader patches upload", hdr("PATCH", "/v2/team/app/blobs/uploads/abc-123", basic("bob", "bob-secret")), 403, ""},
		{"reader deletes manifest", hdr("DELETE", manifest, basic("bob", "bob-secret")), 403, ""},
		{"pusher pulls", hdr("GET", manifest, basic("alice", "alice-secret")), 200, "alice"},
		{"pusher pushes manifest", hdr("PUT", manifest, basic("alice", "alice-secret")), 200, "alice"},
		{"pusher starts upload", hdr("POST", "/v2/team/app/blobs/uploads/", basic("alice", "alice-secret")), 200, "alice"},
		{"pusher patches upload", hdr("PATCH", "/v2/team/app/blobs/uploads/abc-123", basic("alice", "alice-secret")), 200, "alice"},
		{"pusher finishes upload", hdr("PUT", "/v2/team/app/blobs/uploads/abc-123?digest=sha256:"+strings.Repeat("a", 64), basic("alice", "alice-secret")), 200, "alice"},
		{"pusher deletes manifest", hdr("DELETE", manifest, basic("alice", "alice-secret")), 200, "alice"},
		// Methods outside the registry's mapping are denied to everyone who is known.
		{"pusher OPTIONS", hdr("OPTIONS", manifest, basic("alice", "alice-secret")), 403, ""},
		{"pusher TRACE", hdr("TRACE", manifest, basic("alice", "alice-secret")), 403, ""},
		{"pusher CONNECT", hdr("CONNECT", manifest, basic("alice", "alice-secret")), 403, ""},
		{"reader lower-case get", hdr("get", manifest, basic("bob", "bob-secret")), 403, ""},
		{"reader empty method", hdr("", manifest, basic("bob", "bob-secret")), 403, ""},
		// A path that is not a registry route is never allowed.
		{"reader path outside /v2", hdr("GET", "/admin", basic("bob", "bob-secret")), 403, ""},
		{"reader dot-dot path", hdr("GET", "/v2/team/../app/manifests/latest", basic("bob", "bob-secret")), 403, ""},
		{"pusher missing uri", map[string][]string{"X-Forwarded-Method": {"PUT"}, "Authorization": {basic("alice", "alice-secret")}}, 403, ""},
		// Credentials: missing, malformed, unknown or wrong are all 401.
		{"no credentials", hdr("GET", "/v2/", ""), 401, ""},
		{"bearer token", hdr("GET", "/v2/", "Bearer abc"), 401, ""},
		{"basic without space", hdr("GET", "/v2/", "Basic"), 401, ""},
		{"bad base64", hdr("GET", "/v2/", "Basic !!!"), 401, ""},
		{"no colon", hdr("GET", "/v2/", "Basic "+base64.StdEncoding.EncodeToString([]byte("bob"))), 401, ""},
		{"empty user", hdr("GET", "/v2/", basic("", "bob-secret")), 401, ""},
		{"empty user and password (skopeo without credentials)", hdr("GET", "/v2/team/app/manifests/latest", basic("", "")), 401, ""},
		{"unknown user", hdr("GET", "/v2/", basic("mallory", "bob-secret")), 401, ""},
		{"wrong password", hdr("GET", "/v2/", basic("bob", "alice-secret")), 401, ""},
		{"user name case differs", hdr("GET", "/v2/", basic("Bob", "bob-secret")), 401, ""},
		{"password with NUL", hdr("GET", "/v2/", basic("bob", "bob-secret\x00x")), 401, ""},
		{"two authorization headers", map[string][]string{"X-Forwarded-Method": {"GET"}, "X-Forwarded-Uri": {"/v2/"}, "Authorization": {basic("bob", "bob-secret"), basic("alice", "alice-secret")}}, 401, ""},
		{"no credentials on unknown path", hdr("GET", "/admin", ""), 401, ""},
		{"wrong password on push", hdr("PUT", manifest, basic("alice", "bob-secret")), 401, ""},
		// Not called through forwardAuth: 400, even with good credentials.
		{"no forwarded method", map[string][]string{"Authorization": {basic("alice", "alice-secret")}}, 400, ""},
		{"no headers at all", map[string][]string{}, 400, ""},
		{"two forwarded methods", map[string][]string{"X-Forwarded-Method": {"GET", "PUT"}, "X-Forwarded-Uri": {manifest}, "Authorization": {basic("bob", "bob-secret")}}, 400, ""},
		{"two forwarded uris", map[string][]string{"X-Forwarded-Method": {"GET"}, "X-Forwarded-Uri": {"/v2/", manifest}, "Authorization": {basic("bob", "bob-secret")}}, 400, ""},
	}
	for _, tt := range tests {
		for _, httpMethod := range []string{"GET", "PUT"} { // Traefik may preserve the method
			t.Run(tt.name+"/"+httpMethod, func(t *testing.T) {
				r := httptest.NewRequest(httpMethod, "/auth", nil)
				for k, vs := range tt.headers {
					for _, v := range vs {
						r.Header.Add(k, v)
					}
				}
				w := httptest.NewRecorder()
				h.ServeHTTP(w, r)
				checkResponse(t, w.Result(), tt.status, tt.user)
			})
		}
	}
	for _, secret := range []string{"alice-secret", "bob-secret", base64.StdEncoding.EncodeToString([]byte("bob:bob-secret"))} {
		if strings.Contains(logs.String(), secret) {
			t.Errorf("log holds the secret %q", secret)
		}
	}
}

// hdr builds forwardAuth headers; an empty authorization is left out.
func hdr(method, uri, authorization string) map[string][]string {
	h := map[string][]string{"X-Forwarded-Method": {method}, "X-Forwarded-Uri": {uri}, "X-Forwarded-For": {"203.0.113.7"}}
	if authorization != "" {
		h["Authorization"] = []string{authorization}
	}
	return h
}

// checkResponse checks status, headers and body against the exact form clients expect.
func checkResponse(t *testing.T, resp *http.Response, status int, user string) {
	t.Helper()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != status {
		t.Fatalf("got status %d, want %d (body %s)", resp.StatusCode, status, body)
	}
	wantBody := map[int]string{200: "", 400: wantUnsupportedBody, 401: wantUnauthorizedBody, 403: wantDeniedBody}[status]
	if string(body) != wantBody {
		t.Errorf("got body %q, want %q", body, wantBody)
	}
	if got := resp.Header.Get("X-Forwarded-User"); got != user {
		t.Errorf("got X-Forwarded-User %q, want %q", got, user)
	}
	wantChallenge := ""
	if status == 401 {
		wantChallenge = `Basic realm="Test Realm"`
	}
	if got := resp.Header.Get("WWW-Authenticate"); got != wantChallenge {
		t.Errorf("got WWW-Authenticate %q, want %q", got, wantChallenge)
	}
	if status == 200 {
		return
	}
	if got := resp.Header.Get("Docker-Distribution-Api-Version"); got != "registry/2.0" {
		t.Errorf("got Docker-Distribution-Api-Version %q, want registry/2.0", got)
	}
	if got := resp.Header.Get("Content-Type"); got != "application/json" {
		t.Errorf("got Content-Type %q, want application/json", got)
	}
}

// TestDecisionLogLine checks the one line per decision: its fields, and no secret.
func TestDecisionLogLine(t *testing.T) {
	t.Parallel()
	h, logs := newTestHandler(t)
	r := httptest.NewRequest("GET", "/auth", nil)
	for k, vs := range hdr("PUT", "/v2/team/app/manifests/v1", basic("bob", "bob-secret")) {
		r.Header[k] = vs
	}
	r.Header.Set("X-Forwarded-For", "198.51.100.1, 203.0.113.9")
	h.ServeHTTP(httptest.NewRecorder(), r)
	line := logs.String()
	for _, want := range []string{
		`"msg":"decision"`, `"decision":"denied"`, `"status":403`, `"reason":"not_granted"`,
		`"user":"bob"`, `"method":"PUT"`, `"route":"manifest"`, `"repository":"team/app"`,
		`"action":"pull,push"`, `"rule":"team/app needs pull,push, granted pull by built-in rule 2 (--push-group)"`, `"client":"203.0.113.9"`, `"duration":`,
	} {
		if !strings.Contains(line, want) {
			t.Errorf("log line lacks %s: %s", want, line)
		}
	}
	if strings.Contains(line, "bob-secret") || strings.Contains(line, "Ym9i") {
		t.Errorf("log line holds the credentials: %s", line)
	}
}

// TestRefusedRouteLogsPath: a request refused because its path is no registry route names
// the path in its log line, without the query, with what is not printable ASCII replaced and
// cut to maxLoggedPath bytes; a decided route logs no path.
func TestRefusedRouteLogsPath(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name, method, uri string
		want              string // the path field, "" for none
	}{
		{"dot segment", "GET", "/v2/app/../secret/manifests/v1?token=x", `"path":"/v2/app/../secret/manifests/v1"`},
		{"not a route", "GET", "/v2/app/unknown", `"path":"/v2/app/unknown"`},
		{"method the route does not serve", "PATCH", "/v2/app/manifests/v1", `"path":"/v2/app/manifests/v1"`},
		{"not printable", "GET", "/v2/app/%00x\u00e9", `"path":"/v2/app/%00x?"`},
		{"long", "GET", "/v2/" + strings.Repeat("a/", 1000) + "x", `"path":"/v2/` + strings.Repeat("a/", 254) + `"`},
		{"a route", "GET", "/v2/app/manifests/v1", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			h, logs := newTestHandler(t)
			r := httptest.NewRequest("GET", "/auth", nil)
			for k, vs := range hdr(tt.method, tt.uri, basic("bob", "bob-secret")) {
				r.Header[k] = vs
			}
			h.ServeHTTP(httptest.NewRecorder(), r)
			line := logs.String()
			if tt.want == "" {
				if strings.Contains(line, `"path":`) {
					t.Errorf("got a path in the line of a decided route: %s", line)
				}
				return
			}
			if !strings.Contains(line, tt.want) || strings.Contains(line, "token=") {
				t.Errorf("got log line %s, want it to hold %s and no query", line, tt.want)
			}
		})
	}
}

// TestHealthEndpoints checks /healthz, /readyz and /metrics through the router.
func TestHealthEndpoints(t *testing.T) {
	t.Parallel()
	h, _ := newTestHandler(t)
	srv := httptest.NewServer(newServer(h, h.store, h.metrics, false))
	defer srv.Close()
	for _, tt := range []struct {
		path, want string
	}{
		{"/healthz", "ok"},
		{"/readyz", "ready\nhtpasswd sha256=" + h.store.snapshot().files[0].sum + "\ngroups sha256=" + h.store.snapshot().files[1].sum + "\n"},
		{"/metrics", "registry_auth_users 2"},
	} {
		resp, err := http.Get(srv.URL + tt.path)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 || !strings.Contains(string(body), tt.want) {
			t.Errorf("%s: got %d %q, want 200 containing %q", tt.path, resp.StatusCode, body, tt.want)
		}
	}
	empty := &store{}
	w := httptest.NewRecorder()
	readyz(empty).ServeHTTP(w, httptest.NewRequest("GET", "/readyz", nil))
	if w.Code != http.StatusServiceUnavailable {
		t.Errorf("readyz without a snapshot: got %d, want 503", w.Code)
	}
}

// TestLoggedUserIsBounded: an unknown user name, which a client chooses, is cut in the log.
func TestLoggedUserIsBounded(t *testing.T) {
	t.Parallel()
	h, logs := newTestHandler(t)
	long := strings.Repeat("é", 20000)
	r := httptest.NewRequest("GET", "/auth", nil)
	for k, vs := range hdr("GET", "/v2/", basic(long, "pw")) {
		r.Header[k] = vs
	}
	h.ServeHTTP(httptest.NewRecorder(), r)
	if n := len(logs.String()); n > 2000 {
		t.Errorf("got a %d-byte log line for a 40000-byte user name, want it cut", n)
	}
	if !strings.Contains(logs.String(), strings.Repeat("é", 32)+"…") {
		t.Errorf("log lacks the cut name: %s", logs)
	}
}

// withHeaders adds name, value pairs to forwardAuth headers.
func withHeaders(h map[string][]string, pairs ...string) map[string][]string {
	for i := 0; i+1 < len(pairs); i += 2 {
		h[pairs[i]] = []string{pairs[i+1]}
	}
	return h
}

// newPolicyHandler returns the /auth handler over internal/policy/testdata/policy.yaml with alice (admins),
// bob (payments), carol and mallory, and the files it loaded.
func newPolicyHandler(t *testing.T) (*authHandler, testFiles, *lockedBuffer) {
	t.Helper()
	f := newTestFiles(t,
		htpasswdLines(t, "alice", "alice-secret", "bob", "bob-secret", "carol", "carol-secret", "mallory", "mallory-secret"),
		"admins: alice\npayments: bob\n")
	policy, err := os.ReadFile("internal/policy/testdata/policy.yaml")
	if err != nil {
		t.Fatal(err)
	}
	f.policy = filepath.Join(f.dir, "policy.yaml")
	writeFile(t, f.policy, string(policy))
	logs := &lockedBuffer{}
	st, m := newTestStore(t, f, time.Minute, logs)
	return testAuthHandler(st, m, logs), f, logs
}

// TestPolicyAnswers: what /auth answers with a policy file: anonymous callers get 200 where
// the policy lets them (without X-Forwarded-User) and a challenge elsewhere; wrong credentials
// are never anonymous; a refusal's detail points at the policy; the upload-start holes are
// closed.
func TestPolicyAnswers(t *testing.T) {
	t.Parallel()
	h, f, _ := newPolicyHandler(t)
	const m = "/manifests/latest"
	upload := "/v2/payments/api/blobs/uploads/"
	for _, tt := range []struct {
		name        string
		headers     map[string][]string
		status      int
		user        string
		contentType string // of the original request, when set
	}{
		{"anonymous pulls public", hdr("GET", "/v2/public/base"+m, ""), 200, "", ""},
		{"anonymous is challenged elsewhere", hdr("GET", "/v2/team/app"+m, ""), 401, "", ""},
		{"anonymous is challenged at /v2/", hdr("GET", "/v2/", ""), 401, "", ""},
		{"anonymous is challenged to push public", hdr("PUT", "/v2/public/base"+m, ""), 401, "", ""},
		{"anonymous is challenged on a bad path", hdr("GET", "/v2/public/../x"+m, ""), 401, "", ""},
		{"an empty user and password is anonymous (skopeo without credentials)", hdr("GET", "/v2/public/base"+m, basic("", "")), 200, "", ""},
		{"an empty user with a password is not", hdr("GET", "/v2/public/base"+m, basic("", "x")), 401, "", ""},
		{"a wrong password is not anonymous, even on public", hdr("GET", "/v2/public/base"+m, basic("carol", "nope")), 401, "", ""},
		{"a user pushes to their namespace", hdr("PUT", "/v2/carol/app"+m, basic("carol", "carol-secret")), 200, "carol", ""},
		{"and is refused elsewhere", hdr("PUT", "/v2/dave/app"+m, basic("carol", "carol-secret")), 403, "", ""},
		{"an explicit deny", hdr("GET", "/v2/public/base"+m, basic("mallory", "mallory-secret")), 403, "", ""},
		{"a team pushes", hdr("POST", upload, basic("bob", "bob-secret")), 200, "bob", ""},
		{"with a Content-Type clients send", hdr("POST", upload, basic("bob", "bob-secret")), 200, "bob", "application/octet-stream"},
		{"a form body could override the mount source", hdr("POST", upload, basic("bob", "bob-secret")), 403, "", "application/x-www-form-urlencoded"},
		{"with parameters and upper case too", hdr("POST", upload, basic("bob", "bob-secret")), 403, "", "Application/X-WWW-Form-Urlencoded; charset=utf-8"},
		{"a multipart body too", hdr("POST", upload, basic("bob", "bob-secret")), 403, "", "multipart/form-data; boundary=x"},
		{"a repeated from", hdr("POST", upload+"?mount="+registrytest.Digest+"&from=public/a&from=secret/b", basic("bob", "bob-secret")), 403, "", ""},
		{"a refused mount is sent to a plain upload", withHeaders(hdr("POST", upload+"?mount="+registrytest.Digest+"&from=secret/base&digest=x", basic("bob", "bob-secret")), "X-Forwarded-Proto", "https", "X-Forwarded-Host", "registry.example:5043"), 307, "", ""},
		{"unless Traefik's headers are missing", hdr("POST", upload+"?mount="+registrytest.Digest+"&from=secret/base", basic("bob", "bob-secret")), 403, "", ""},
		{"or malformed", withHeaders(hdr("POST", upload+"?mount="+registrytest.Digest+"&from=secret/base", basic("bob", "bob-secret")), "X-Forwarded-Proto", "https", "X-Forwarded-Host", "evil.example/x?"), 403, "", ""},
		{"or naming a scheme other than http(s)", withHeaders(hdr("POST", upload+"?mount="+registrytest.Digest+"&from=secret/base", basic("bob", "bob-secret")), "X-Forwarded-Proto", "javascript", "X-Forwarded-Host", "registry.example:5043"), 403, "", ""},
		{"the catalog for an admin", hdr("GET", "/v2/_catalog", basic("alice", "alice-secret")), 200, "alice", ""},
		{"not for others", hdr("GET", "/v2/_catalog", basic("carol", "carol-secret")), 403, "", ""},
	} {
		t.Run(tt.name, func(t *testing.T) {
			r := httptest.NewRequest("GET", "/auth", nil)
			for k, vs := range tt.headers {
				r.Header[k] = vs
			}
			if tt.contentType != "" {
				r.Header.Set("Content-Type", tt.contentType)
			}
			w := httptest.NewRecorder()
			h.ServeHTTP(w, r)
			resp := w.Result()
			body, _ := io.ReadAll(resp.Body)
			if resp.StatusCode != tt.status {
				t.Fatalf("got %d %s, want %d", resp.StatusCode, body, tt.status)
			}
			if got := resp.Header.Get("X-Forwarded-User"); got != tt.user || (tt.user == "" && resp.Header.Values("X-Forwarded-User") != nil) {
				t.Errorf("got X-Forwarded-User %q, want %q", got, tt.user)
			}
			if loc := resp.Header.Get("Location"); (tt.status == 307) != (loc != "") || (loc != "" && loc != "https://registry.example:5043"+upload+"?digest=x") {
				t.Errorf("status %d with Location %q, want https://registry.example:5043%s?digest=x on a 307 only", tt.status, loc, upload)
			}
			want := map[int]string{200: "", 307: "", 401: wantUnauthorizedBody, 403: bodyDeniedPolicy}[tt.status]
			if string(body) != want {
				t.Errorf("got body %q, want %q", body, want)
			}
			if challenge := resp.Header.Get("WWW-Authenticate"); (tt.status == 401) != (challenge != "") {
				t.Errorf("status %d with WWW-Authenticate %q", tt.status, challenge)
			}
		})
	}

	// /readyz names the policy as loaded, so a script can wait for its edit.
	policy, _ := os.ReadFile(f.policy)
	sum := sha256.Sum256(policy)
	w := httptest.NewRecorder()
	readyz(h.store).ServeHTTP(w, httptest.NewRequest("GET", "/readyz", nil))
	if want := "policy sha256=" + hex.EncodeToString(sum[:]) + "\n"; !strings.HasSuffix(w.Body.String(), want) {
		t.Errorf("readyz: got %q, want it to end with %q", w.Body, want)
	}
}
