package main

import (
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/registry-auth/registry-auth/internal/registry/registrytest"
)

// TestExplainAgreesWithService runs one decision table through the service (/auth, as Traefik
// asks it, with the forwarded scheme and host) and through explain: both answer each request
// with the same status, refused mounts (307) included, since both take it from answerFor.
func TestExplainAgreesWithService(t *testing.T) {
	t.Parallel()
	h, f, _ := newPolicyHandler(t)
	upload := "/v2/payments/api/blobs/uploads/"
	tests := []struct {
		user, method, uri string
		want              int
	}{
		{"alice", "DELETE", "/v2/anything/manifests/1", 200},
		{"bob", "PUT", "/v2/payments/api/manifests/1", 200},
		{"carol", "PUT", "/v2/payments/api/manifests/1", 403},
		{"carol", "PUT", "/v2/carol/app/manifests/1", 200},
		{"mallory", "GET", "/v2/public/base/manifests/1", 403},
		{"bob", "POST", upload + "?mount=" + registrytest.Digest + "&from=public/base", 200},
		{"bob", "POST", upload + "?mount=" + registrytest.Digest + "&from=secret/base", 307},
		{"carol", "POST", upload + "?mount=" + registrytest.Digest + "&from=secret/base", 403},
		{"-", "GET", "/v2/public/base/manifests/1", 200},
		{"-", "PUT", "/v2/public/base/manifests/1", 401},
		{"-", "GET", "/v2/../metrics", 401},
		{"bob", "GET", "/v2/../metrics", 403},
		{"bob", "GET", "/v2/_catalog", 403},
		{"alice", "GET", "/v2/_catalog", 200},
	}
	for _, tt := range tests {
		user, password := tt.user, tt.user+"-secret"
		if user == "-" {
			user, password = "", ""
		}
		r := httptest.NewRequest("GET", "/auth", nil)
		for k, vs := range withHeaders(hdr(tt.method, tt.uri, ""), "X-Forwarded-Proto", "https", "X-Forwarded-Host", "registry.example:5043") {
			r.Header[k] = vs
		}
		if user != "" {
			r.Header.Set("Authorization", basic(user, password))
		} else {
			r.Header.Del("Authorization")
		}
		w := httptest.NewRecorder()
		h.ServeHTTP(w, r)
		service := w.Code
		stdout, _, _ := runCLI(t, nil, "", "explain", "--htpasswd", f.htpasswd, "--groups", f.groups, "--policy", f.policy, tt.user, tt.method, tt.uri)
		explained := 0 // the status explain names on its first line
		for prefix, status := range map[string]int{"allowed": 200, "refused 401": 401, "refused 403": 403, "redirected 307": 307} {
			if strings.HasPrefix(stdout, prefix) {
				explained = status
			}
		}
		if service != tt.want || explained != tt.want {
			t.Errorf("%s %s %s: service answered %d, explain said %q; want %d from both", tt.user, tt.method, tt.uri, service, strings.TrimSpace(stdout), tt.want)
		}
	}
}
