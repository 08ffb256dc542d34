package main

import (
	"net/http"
	"strconv"
	"time"
)

// Bodies registry clients parse (docs/registry-protocol.md, "Error bodies and how clients
// react"). They are constants so that no
// request data can ever reach them. The 401 and 403 bodies carry a "detail": when the message
// is the code's default text and there is no detail, the docker engine decodes the error as a
// bare code, retries a refused push five times (about 50 s) and prints only "denied"; with a
// detail it stops at once and prints "denied: requested access to the resource is denied"
// (e2e/stack_test.go shows both).
const (
	bodyUnauthorized = `{"errors":[{"code":"UNAUTHORIZED","message":"authentication required","detail":"log in with a user of the registry's htpasswd file"}]}` + "\n"
	bodyDenied       = `{"errors":[{"code":"DENIED","message":"requested access to the resource is denied","detail":"pulling needs a valid user; pushing and deleting need membership of the push group"}]}` + "\n"
	// A token's 401 is one body whatever was wrong (no such token, a wrong secret, expired,
	// revoked), so that it tells nobody whether a name exists; the log says which.
	bodyUnauthorizedToken = `{"errors":[{"code":"UNAUTHORIZED","message":"authentication required","detail":"the token is unknown, its secret wrong, or it expired or was revoked: ask for a new one"}]}` + "\n"
	bodyDeniedScope       = `{"errors":[{"code":"DENIED","message":"requested access to the resource is denied","detail":"the token's scopes do not allow this here; registry-auth token list shows them"}]}` + "\n"
	bodyDeniedPolicy      = `{"errors":[{"code":"DENIED","message":"requested access to the resource is denied","detail":"the registry's access policy does not grant this here; registry-auth explain tells which rule decides"}]}` + "\n"
	bodyTooMany           = `{"errors":[{"code":"TOOMANYREQUESTS","message":"too many failed login attempts, retry later"}]}` + "\n"
	bodyUnavailable       = `{"errors":[{"code":"UNAVAILABLE","message":"the directory of users does not answer, retry later","detail":"the password was not checked"}]}` + "\n"
	bodyBusy              = `{"errors":[{"code":"UNAVAILABLE","message":"too many logins are being checked at once, retry later","detail":"the password was not checked"}]}` + "\n"
	bodyUnsupported       = `{"errors":[{"code":"UNSUPPORTED","message":"this endpoint answers Traefik forwardAuth requests only"}]}` + "\n"
)

// writeRegistryError writes one of the bodies above with the headers every registry answer
// carries. Headers are set before WriteHeader, or they would be lost.
func writeRegistryError(w http.ResponseWriter, status int, body string) {
	h := w.Header()
	h.Set("Docker-Distribution-Api-Version", "registry/2.0")
	h.Set("Content-Type", "application/json")
	h.Set("Content-Length", strconv.Itoa(len(body)))
	h.Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	w.Write([]byte(body))
}

// writeUnauthorized answers 401 with the Basic challenge that makes docker send credentials.
// realm was checked by parseServeConfig to hold no quote or control character.
// token: the request logged in as a token (a name with tokens.LoginPrefix).
func writeUnauthorized(w http.ResponseWriter, realm string, token bool) {
	w.Header().Set("WWW-Authenticate", `Basic realm="`+realm+`"`)
	if token {
		writeRegistryError(w, http.StatusUnauthorized, bodyUnauthorizedToken)
		return
	}
	writeRegistryError(w, http.StatusUnauthorized, bodyUnauthorized)
}

// writeDenied answers 403: the user is known but may not do this. Clients do not retry it.
// The detail names what decides: a token's scopes, the push group, or a policy file.
func writeDenied(w http.ResponseWriter, byPolicyFile, byScope bool) {
	if byScope {
		writeRegistryError(w, http.StatusForbidden, bodyDeniedScope)
		return
	}
	if byPolicyFile {
		writeRegistryError(w, http.StatusForbidden, bodyDeniedPolicy)
		return
	}
	writeRegistryError(w, http.StatusForbidden, bodyDenied)
}

// writeTooManyRequests answers 429 with the time after which a retry may succeed.
func writeTooManyRequests(w http.ResponseWriter, retryAfter time.Duration) {
	secs := int((retryAfter + time.Second - 1) / time.Second)
	if secs < 1 {
		secs = 1
	}
	w.Header().Set("Retry-After", strconv.Itoa(secs))
	writeRegistryError(w, http.StatusTooManyRequests, bodyTooMany)
}

// unavailableRetry is the Retry-After of a 503: the directory may be back by then.
const unavailableRetry = 5 * time.Second

// writeUnavailable answers 503 when the credential could not be checked (the directory
// does not answer, or busy: no hashing slot came free): not 401, as the password may be right.
func writeUnavailable(w http.ResponseWriter, retryAfter time.Duration, busy bool) {
	w.Header().Set("Retry-After", strconv.Itoa(max(1, int((retryAfter+time.Second-1)/time.Second))))
	body := bodyUnavailable
	if busy {
		body = bodyBusy
	}
	writeRegistryError(w, http.StatusServiceUnavailable, body)
}

// writeMountRedirect answers a cross-repository mount the pusher may not make with 307 to
// the same upload start without `mount` and `from`: go-containerregistry, docker and
// containerd follow it into a plain upload, skopeo falls back to one; a 403 here would make
// containerd-based clients fail the whole push (docs/registry-protocol.md, "Refused
// mounts"). location is absolute: Traefik rewrites a relative one against the forwardAuth
// address.
func writeMountRedirect(w http.ResponseWriter, location string) {
	h := w.Header()
	h.Set("Location", location)
	h.Set("Docker-Distribution-Api-Version", "registry/2.0")
	h.Set("Content-Length", "0")
	h.Set("Cache-Control", "no-store")
	w.WriteHeader(http.StatusTemporaryRedirect)
}

// writeUnsupported answers 400 to a request that did not come through forwardAuth.
func writeUnsupported(w http.ResponseWriter) {
	writeRegistryError(w, http.StatusBadRequest, bodyUnsupported)
}
