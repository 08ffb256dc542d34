package main

import (
	"net/http"

	"github.com/go-chi/chi/v5"
	"github.com/go-chi/chi/v5/middleware"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// newServer returns the service's HTTP handler: every route in one place. auth's store must
// already hold a snapshot. With clientCerts (--tls-client-ca), /auth and /metrics answer only
// requests that presented a verified client certificate; the health endpoints stay open
// for the container's health check, which has none and learns nothing secret there.
func newServer(auth *authHandler, st *store, m *metrics, clientCerts bool) http.Handler {
	r := chi.NewRouter()
	r.Use(middleware.Recoverer) // a bug must cost one request a 500, never the process
	guarded := func(h http.Handler) http.Handler { return h }
	if clientCerts {
		guarded = func(h http.Handler) http.Handler { return requireClientCert(auth.logger, h) }
	}
	// Traefik may preserve the original method (preserveRequestMethod), so /auth takes any.
	r.Handle("/auth", guarded(auth))
	r.Method(http.MethodGet, "/healthz", healthz())
	r.Method(http.MethodHead, "/healthz", healthz())
	r.Method(http.MethodGet, "/readyz", readyz(st))
	r.Method(http.MethodHead, "/readyz", readyz(st))
	r.Method(http.MethodGet, "/metrics", guarded(promhttp.HandlerFor(m.registry, promhttp.HandlerOpts{})))
	return r
}
