package main

import (
	"net/http"

	"github.com/go-chi/chi/v5"
	"github.com/go-chi/chi/v5/middleware"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// newServer returns the service's HTTP handler: every route in one place. auth's store must
// already hold a snapshot.
func newServer(auth *authHandler, st *store, m *metrics) http.Handler {
	r := chi.NewRouter()
	r.Use(middleware.Recoverer) // a bug must cost one request a 500, never the process
	// Traefik may preserve the original method (preserveRequestMethod), so /auth takes any.
	r.Handle("/auth", auth)
	r.Method(http.MethodGet, "/healthz", healthz())
	r.Method(http.MethodHead, "/healthz", healthz())
	r.Method(http.MethodGet, "/readyz", readyz(st))
	r.Method(http.MethodHead, "/readyz", readyz(st))
	r.Method(http.MethodGet, "/metrics", promhttp.HandlerFor(m.registry, promhttp.HandlerOpts{}))
	return r
}
