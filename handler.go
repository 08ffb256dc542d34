package main

import (
	"encoding/base64"
	"errors"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync/atomic"
	"time"
	"unicode/utf8"

	"github.com/registry-auth/registry-auth/internal/authn"
	"github.com/registry-auth/registry-auth/internal/policy"
	"github.com/registry-auth/registry-auth/internal/registry"
	"github.com/registry-auth/registry-auth/internal/tokens"
)

// decision is what /auth decided about one request, for the log line and the metrics.
type decision struct {
	status int
	result string // allowed, unauthorized, denied, throttled, unavailable, bad_request
	reason string
	user   string // empty for an anonymous request
	req    registry.Request
	rules  string // the rules that decided, for the log
	// byPolicyFile: a --policy file decided, not the built-in rule of --push-group.
	byPolicyFile bool
	location     string // where a refused mount is sent instead
	client       string
	cached       bool
	path         string // a refused route's path, sanitised and cut, for the log
	// retryWait is how long a throttled client should wait.
	retryWait time.Duration
}

// authHandler answers Traefik's forwardAuth requests. Its store must hold a snapshot (run
// loads one before it serves).
type authHandler struct {
	store   *store
	realm   string
	trusted []*net.IPNet
	logger  *slog.Logger
	metrics *metrics
	// warnedNoContentType is set once an upload start without Content-Type was logged.
	warnedNoContentType atomic.Bool
}

func (h *authHandler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	d := h.decide(r)
	if d.status == http.StatusOK {
		if d.user != "" {
			w.Header().Set("X-Forwarded-User", d.user)
		}
		w.Header().Set("Cache-Control", "no-store")
		w.WriteHeader(http.StatusOK)
	} else {
		h.writeRefusal(w, d)
	}
	elapsed := time.Since(start)
	h.metrics.decisions.WithLabelValues(d.result, d.reason).Inc()
	level := slog.LevelInfo
	if d.result == "bad_request" || d.reason == "untrusted_peer" {
		level = slog.LevelWarn // a misconfigured proxy, or someone on the network probing
	}
	attrs := []slog.Attr{
		slog.String("decision", d.result),
		slog.Int("status", d.status),
		slog.String("reason", d.reason),
		slog.String("user", cutForLog(d.user, maxLoggedUser)),
		slog.String("method", d.req.Method),
		slog.String("route", string(d.req.Route)),
		slog.String("repository", d.req.Repository),
		slog.String("action", d.req.Needs.String()),
		slog.String("rule", d.rules),
		slog.String("client", d.client),
		slog.Bool("cached", d.cached),
		slog.Duration("duration", elapsed),
	}
	if d.path != "" {
		attrs = append(attrs, slog.String("path", d.path))
	}
	h.logger.LogAttrs(r.Context(), level, "decision", attrs...)
}

func (h *authHandler) writeRefusal(w http.ResponseWriter, d decision) {
	switch d.status {
	case http.StatusUnauthorized:
		writeUnauthorized(w, h.realm, tokens.IsLogin(d.user))
	case http.StatusTooManyRequests:
		writeTooManyRequests(w, d.retryWait)
	case http.StatusServiceUnavailable:
		writeUnavailable(w, d.retryWait, d.reason != "directory_unavailable")
	case http.StatusBadRequest:
		writeUnsupported(w)
	case http.StatusTemporaryRedirect:
		writeMountRedirect(w, d.location)
	default:
		writeDenied(w, d.byPolicyFile, d.reason == "outside_token_scope" || d.reason == "catalog_outside_scope")
	}
}

// decide runs the checks in order; the first that fails decides.
func (h *authHandler) decide(r *http.Request) decision {
	var d decision
	peer := remoteIP(r.RemoteAddr)
	// With --trusted-proxies only those peers may ask, and only their X-Forwarded-For is
	// believed; without it every peer may ask and is believed (SECURITY.md says why).
	peerTrusted := len(h.trusted) == 0 || containsIP(h.trusted, peer)
	d.client = clientAddress(peer, peerTrusted, h.trusted, r.Header.Values("X-Forwarded-For"))
	if !peerTrusted {
		return d.deny(http.StatusForbidden, "denied", "untrusted_peer")
	}

	methods := r.Header.Values("X-Forwarded-Method")
	uris := r.Header.Values("X-Forwarded-Uri")
	switch {
	case len(methods) == 0:
		h.logger.Warn("request without X-Forwarded-Method: call /auth through Traefik's forwardAuth middleware, not directly", "client", d.client)
		return d.deny(http.StatusBadRequest, "bad_request", "missing_forwarded_method")
	case len(methods) > 1:
		return d.deny(http.StatusBadRequest, "bad_request", "several_forwarded_methods")
	case len(uris) > 1:
		return d.deny(http.StatusBadRequest, "bad_request", "several_forwarded_uris")
	}
	uri := ""
	if len(uris) == 1 {
		uri = uris[0]
	}
	// Parsed now so that every log line names the repository and action; a bad route is
	// refused only after authentication, so that 401 comes before 403.
	req, routeErr := registry.ParseRequest(methods[0], uri)
	req.Method = sanitizeForLog(methods[0], 16)
	d.req = req

	if routeErr == nil && req.Route == registry.RouteUploadStart {
		contentTypes := r.Header.Values("Content-Type")
		routeErr = registry.CheckUploadStartBody(contentTypes)
		if len(contentTypes) == 0 && h.warnedNoContentType.CompareAndSwap(false, true) {
			h.logger.Warn("an upload start arrived without Content-Type: if Traefik's forwardAuth sets authRequestHeaders, add Content-Type to it, or a form body that overrides the mount source cannot be refused (logged once)", "client", d.client)
		}
	}

	snap := h.store.snapshot()
	d.byPolicyFile = snap.policy.File() != ""
	l := h.authenticate(r, snap, d.client)
	d.user, d.cached, d.retryWait = l.user, l.cached, l.retryAfter
	if l.refused != nil {
		return d.deny(l.refused.status, l.refused.result, l.refused.reason)
	}
	id := l.id
	var v policy.Verdict
	if routeErr == nil {
		v = snap.policy.Decide(id, req)
		d.rules = snap.policy.Explain(v)
	} else if !id.Anonymous {
		// Named in the log, so an operator can see what was refused and why.
		rawPath, _, _ := strings.Cut(uri, "?")
		d.path = sanitizeForLog(rawPath, maxLoggedPath)
	}
	a := answerFor(id, routeErr, v)
	if a.status == http.StatusTemporaryRedirect {
		loc, ok := plainUploadLocation(r.Header, uri)
		if !ok {
			h.logger.Warn("cannot redirect a refused mount: X-Forwarded-Proto or X-Forwarded-Host is missing or malformed (is the request coming through Traefik?)", "client", d.client)
			return d.deny(http.StatusForbidden, "denied", a.reason)
		}
		d.location = loc
	}
	return d.deny(a.status, a.result, a.reason)
}

// login is what a request's credentials prove: an identity (anonymous without an
// Authorization header), or the refusal to answer instead.
type login struct {
	id     policy.Identity
	user   string // the name for the log: as sent, the canonical one once proved
	cached bool   // the verdict came from the cache
	// refused is the answer when the credentials prove no one; retryAfter goes with a 429
	// or 503.
	refused    *answer
	retryAfter time.Duration
}

// authenticate returns who r comes from, as seen from client: anonymous when it has no
// Authorization header at all, else the user its Basic credentials prove, or the refusal
// (401, 403, 429 or 503) when they prove no one.
func (h *authHandler) authenticate(r *http.Request, snap *snapshot, client string) login {
	values := r.Header.Values("Authorization")
	if len(values) == 0 {
		return login{id: policy.Identity{Anonymous: true}}
	}
	user, password, reason := basicCredentials(values)
	if reason == "empty_credentials" {
		// skopeo (containers/image) without credentials answers a challenge with an empty
		// user and password: that is no credential at all, not a wrong one.
		return login{id: policy.Identity{Anonymous: true}}
	}
	if reason != "" {
		return login{refused: &answer{http.StatusUnauthorized, "unauthorized", reason}}
	}
	v, err := h.store.verify(r.Context(), snap, authn.Credential{Client: client, User: user, Password: password})
	refuse := func(status int, result, reason string, retryAfter time.Duration) login {
		return login{user: user, cached: v.cacheHit, refused: &answer{status, result, reason}, retryAfter: retryAfter}
	}
	switch {
	case errors.Is(err, errThrottled):
		// A 429 costs nothing and teaches nothing (a success cached for another address does
		// not answer here), and Retry-After is true.
		h.metrics.throttled.Inc()
		return refuse(http.StatusTooManyRequests, "throttled", "too_many_failures", v.retryAfter)
	case errors.Is(err, errHashBusy):
		// Saturated by others' logins: no fault of this client's, so not 429; and never 500.
		return refuse(http.StatusServiceUnavailable, "unavailable", "hash_wait_timeout", time.Second)
	case errors.Is(err, errRequestEnded):
		// The client went away while waiting for a slot: nobody reads this answer.
		return refuse(http.StatusServiceUnavailable, "unavailable", "canceled", time.Second)
	case errors.Is(err, authn.ErrUnavailable):
		// The password may be right: neither 401 nor a failed login, and never 200.
		return refuse(http.StatusServiceUnavailable, "unavailable", "directory_unavailable", unavailableRetry)
	case err != nil:
		h.logger.Error("stored hash cannot be checked; fix the user's line in the htpasswd file", "user", user, "error", err)
		return refuse(http.StatusUnauthorized, "unauthorized", "broken_hash", 0)
	case v.shadowed:
		h.logger.Warn("refused: the directory's user has the name of a user of the htpasswd file, and a name must be one account; rename or remove one of the two", "user", cutForLog(user, maxLoggedUser), "name", v.id.User)
		return refuse(http.StatusForbidden, "denied", "name_collision", 0)
	case !v.ok && v.reason != "":
		return refuse(http.StatusUnauthorized, "unauthorized", v.reason, 0)
	case !v.ok && !v.known:
		return refuse(http.StatusUnauthorized, "unauthorized", "unknown_user", 0)
	case !v.ok:
		return refuse(http.StatusUnauthorized, "unauthorized", "wrong_password", 0)
	}
	// The canonical name: a directory may spell it otherwise.
	return login{id: v.id, user: v.id.User, cached: v.cacheHit}
}

// plainUploadLocation is the absolute URL of the upload start uri without its mount, from
// the scheme and host Traefik saw (it sets X-Forwarded-Proto and X-Forwarded-Host itself, as
// trustForwardHeader is false). ok is false when they are missing or malformed.
func plainUploadLocation(h http.Header, uri string) (string, bool) {
	proto, host := h.Values("X-Forwarded-Proto"), h.Values("X-Forwarded-Host")
	if len(proto) != 1 || (proto[0] != "https" && proto[0] != "http") || len(host) != 1 || !validHost(host[0]) {
		return "", false
	}
	path, rawQuery, _ := strings.Cut(uri, "?")
	var kept []string
	for _, param := range strings.Split(rawQuery, "&") {
		key, _, _ := strings.Cut(param, "=")
		if k, err := url.QueryUnescape(key); param == "" || err != nil || k == "mount" || k == "from" {
			continue
		}
		kept = append(kept, param)
	}
	loc := proto[0] + "://" + host[0] + path
	if len(kept) > 0 {
		loc += "?" + strings.Join(kept, "&")
	}
	return loc, true
}

// validHost accepts host, host:port and [IPv6]:port made of the characters they may hold.
func validHost(host string) bool {
	if host == "" || len(host) > 255 {
		return false
	}
	for _, c := range []byte(host) {
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9', strings.IndexByte(".-:[]", c) >= 0:
		default:
			return false
		}
	}
	return true
}

func (d decision) deny(status int, result, reason string) decision {
	d.status, d.result, d.reason = status, result, reason
	return d
}

// basicCredentials returns the user and password of exactly one well-formed Basic
// Authorization header, or a reason why there are none.
func basicCredentials(values []string) (user string, password []byte, reason string) {
	switch {
	case len(values) == 0:
		return "", nil, "missing_credentials"
	case len(values) > 1:
		return "", nil, "several_authorization_headers"
	}
	scheme, encoded, found := strings.Cut(values[0], " ")
	if !found || !strings.EqualFold(scheme, "Basic") {
		return "", nil, "not_basic_credentials"
	}
	raw, err := base64.StdEncoding.DecodeString(strings.TrimSpace(encoded))
	if err != nil {
		return "", nil, "malformed_credentials"
	}
	name, pass, found := strings.Cut(string(raw), ":")
	switch {
	case !found:
		return "", nil, "malformed_credentials"
	case name == "" && pass == "":
		return "", nil, "empty_credentials"
	case name == "":
		return "", nil, "empty_user"
	case !utf8.ValidString(name) || strings.IndexFunc(name, isControl) >= 0:
		return "", nil, "malformed_user"
	case strings.IndexByte(pass, 0) >= 0:
		// Apache's C strings end at a NUL, so it would check only the part before it.
		return "", nil, "malformed_password"
	}
	return name, []byte(pass), ""
}

// maxLoggedPath bounds a refused path in a log line: the longest route is about 420 bytes.
const maxLoggedPath = 512

// maxLoggedUser bounds the user name in a log line: an unknown name is whatever a client sent
// (sometimes a password typed in the wrong field), and need not fill the log.
const maxLoggedUser = 64

// cutForLog cuts the valid UTF-8 string s to at most max bytes on a character boundary,
// marking the cut.
func cutForLog(s string, max int) string {
	if len(s) <= max {
		return s
	}
	for max > 0 && !utf8.RuneStart(s[max]) {
		max--
	}
	return s[:max] + "…"
}

// sanitizeForLog cuts s to max bytes and replaces what is not printable ASCII, for values a
// client controls that we log before they are validated.
func sanitizeForLog(s string, max int) string {
	if len(s) > max {
		s = s[:max]
	}
	return strings.Map(func(r rune) rune {
		if r < 0x20 || r >= 0x7f {
			return '?'
		}
		return r
	}, s)
}

// clientAddress is the address a request comes from. When the peer may set X-Forwarded-For,
// it is the header's rightmost entry that is not itself one of the trusted proxies: Traefik
// appends the address it saw, and every Traefik hop after it (a load-balancing hop inside
// Traefik appends 127.0.0.1) is trusted, while anything left of the client's entry came from
// the client. Without a list of trusted proxies it is the last entry. An entry that is not
// an IP address ends the walk: the peer itself is then the address.
func clientAddress(peer string, peerTrusted bool, trusted []*net.IPNet, xff []string) string {
	if !peerTrusted || len(xff) == 0 {
		return peer
	}
	// From the right, one entry at a time, without splitting the headers into a new slice:
	// this runs for every request.
	for j := len(xff) - 1; j >= 0; j-- {
		for rest := xff[j]; ; {
			i := strings.LastIndexByte(rest, ',')
			entry := strings.TrimSpace(rest[i+1:])
			ip := net.ParseIP(entry)
			if ip == nil {
				return peer
			}
			leftmost := i < 0 && j == 0
			if leftmost || len(trusted) == 0 || !inNets(trusted, ip) {
				return entry
			}
			if i < 0 {
				break
			}
			rest = rest[:i]
		}
	}
	return peer
}

func remoteIP(remoteAddr string) string {
	host, _, err := net.SplitHostPort(remoteAddr)
	if err != nil {
		return remoteAddr
	}
	return host
}

func containsIP(nets []*net.IPNet, addr string) bool {
	ip := net.ParseIP(addr)
	return ip != nil && inNets(nets, ip)
}

// inNets reports whether ip is in one of nets.
func inNets(nets []*net.IPNet, ip net.IP) bool {
	for _, n := range nets {
		if n.Contains(ip) {
			return true
		}
	}
	return false
}

// healthz answers 200 while the process serves.
func healthz() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		w.Write([]byte("ok\n"))
	})
}

// readyz answers 200 with a line "ROLE sha256=HEX" per loaded file (htpasswd, groups,
// policy), so a script that edited one can tell when its edit is in force, or 503 while no
// snapshot is loaded. serve loads one before it listens and a failed reload keeps it, so a
// serving process always answers 200 today.
func readyz(st *store) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		snap := st.snapshot()
		if snap == nil {
			w.WriteHeader(http.StatusServiceUnavailable)
			w.Write([]byte("no users loaded\n"))
			return
		}
		if st.draining.Load() {
			w.WriteHeader(http.StatusServiceUnavailable)
			w.Write([]byte("draining: shutting down\n"))
			return
		}
		var b strings.Builder
		b.WriteString("ready\n")
		for _, f := range snap.files {
			b.WriteString(f.role + " sha256=" + f.sum + "\n")
		}
		w.Write([]byte(b.String()))
	})
}
