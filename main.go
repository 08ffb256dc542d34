// Command registry-auth answers Traefik's forwardAuth requests for a private container
// registry from Apache htpasswd and groups files. See README.md.
package main

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/registry-auth/registry-auth/internal/cli"
	"github.com/registry-auth/registry-auth/internal/editcmd"
	"github.com/registry-auth/registry-auth/internal/ldap"
)

// version is stamped at build time with -ldflags "-X main.version=...".
var version = "dev"

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	err := program.Run(ctx, cli.Env{LookupEnv: os.LookupEnv, Stdin: os.Stdin, Stdout: os.Stdout, Stderr: os.Stderr}, os.Args[1:])
	os.Exit(cli.ExitCode(program.Name, err, os.Stderr))
}

// program is registry-auth's table of commands: dispatch and the usage both come from it.
var program = cli.Program{
	Name:     "registry-auth",
	Synopsis: "[command] [flags]",
	Default:  "serve",
	Commands: []cli.Command{
		{Name: "serve", Summary: "answer Traefik's forwardAuth requests (the default)", Run: serve},
		{Name: "hash", Args: "USER", Summary: "print an htpasswd line for USER; the password is read from standard input", Run: hashCommand},
		{Name: "check", Summary: "validate the htpasswd and groups files and the policy as the service would", Run: checkCommand},
		{Name: "explain", Args: "USER METHOD URI", Summary: "say what the service would answer to USER (- for anonymous) and which rule decides", Run: explainCommand},
		{Name: "user", Args: "COMMAND", Summary: "add, change, remove, list or verify users, editing the htpasswd file safely", Run: editcmd.User},
		{Name: "group", Args: "COMMAND", Summary: "add users to groups or take them out, editing the groups file safely; list them", Run: editcmd.Group},
		{Name: "token", Args: "COMMAND", Summary: "create, list, revoke or rotate robot tokens (for CI and pull secrets), editing the tokens file safely", Run: editcmd.Token},
		{Name: "healthcheck", Summary: "exit 0 if the service answers /healthz (for container health checks)", Run: healthcheckCommand},
		{Name: "version", Summary: "print the version", Run: func(_ context.Context, env cli.Env, _ []string) error {
			fmt.Fprintln(env.Stdout, "registry-auth", version)
			return nil
		}},
	},
}

// serve runs the service until ctx is done.
func serve(ctx context.Context, env cli.Env, args []string) error {
	stdout, stderr := env.Stdout, env.Stderr
	cfg, err := parseServeConfig(env, args)
	if cfg.showVersion {
		fmt.Fprintln(stdout, "registry-auth", version)
		return nil
	}
	if err != nil {
		return err
	}
	logger := newLogger(cfg, stderr)
	m := newMetrics()
	st := newStore(cfg, logger, m)
	switch {
	case cfg.files.policy != "" && cfg.pushGroupSet:
		logger.Warn("--push-group plays no part with --policy: the policy alone decides who may push; remove one of them", "push_group", cfg.files.pushGroup, "policy", cfg.files.policy)
	case cfg.files.policy == "" && cfg.files.groups == "" && cfg.ldap.URL == "":
		logger.Warn("no groups file (--groups is empty): nobody can push")
	}
	if cfg.ldap.URL != "" {
		dir, err := ldap.New(cfg.ldap, logger, m.registry)
		if err != nil {
			return err
		}
		defer dir.Close()
		// After the file: a user it knows is decided by it alone (AuthBasicProvider file ldap).
		st.backends = append(st.backends, dir)
		// A directory down at start is no reason not to serve: robots in the file work.
		if err := dir.Ping(); err == nil {
			logger.Info("LDAP directory answers", "url", cfg.ldap.URL, "bind_dn", cfg.ldap.BindDN)
		}
	}
	if err := st.reload("start"); err != nil {
		return fmt.Errorf("cannot start: %w", err) // err names the file and what to do
	}
	for _, w := range filePermissionWarnings(cfg.files.htpasswd) {
		logger.Warn(w)
	}

	var cert *serverCert // nil: plain HTTP
	var tlsConfig *tls.Config
	if cfg.tls.enabled() {
		if cert, err = loadServerCert(cfg.tls.cert, cfg.tls.key, logger); err != nil {
			return fmt.Errorf("cannot serve HTTPS: %w", err)
		}
		if tlsConfig, err = newTLSConfig(cfg.tls, cert); err != nil {
			return fmt.Errorf("cannot serve HTTPS: %w", err)
		}
	}

	// Listen before serving so that a bad or busy address fails at once.
	ln, err := net.Listen("tcp", cfg.listen)
	if err != nil {
		return fmt.Errorf("cannot listen on %s (--listen): %w", cfg.listen, err)
	}
	auth := &authHandler{
		store:   st,
		realm:   cfg.realm,
		trusted: cfg.trusted,
		logger:  logger,
		metrics: m,
	}
	srv := &http.Server{
		Handler:           newServer(auth, st, m, cfg.tls.clientCA != ""),
		TLSConfig:         tlsConfig,
		ReadHeaderTimeout: cfg.readHeaderTimeout,
		ReadTimeout:       maxReadHeaderTimeout, // forwardAuth requests carry no body
		WriteTimeout:      10 * time.Second,
		IdleTimeout:       2 * time.Minute,
		MaxHeaderBytes:    maxHeaderBytes,
		ErrorLog:          slog.NewLogLogger(logger.Handler(), slog.LevelWarn),
	}
	// Counted for registry_auth_connections_accepted_total: over plain HTTP Traefik opens about
	// one connection per request under load, over HTTP/2 a handful in all.
	srv.ConnState = func(_ net.Conn, state http.ConnState) {
		if state == http.StateNew {
			m.connections.Inc()
		}
	}

	watchCtx, stopWatching := context.WithCancel(ctx)
	defer stopWatching()
	watched := make(chan error, 1)
	// Every file the service reads while it runs: the store's sources and the TLS pair, each
	// reloaded on its own, so a broken certificate never holds back a user edit.
	paths := append(st.sources.paths(), cert.paths()...)
	reload := func(trigger string) error { return errors.Join(st.reload(trigger), cert.reload(trigger)) }
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	w := &watcher{paths: paths, poll: cfg.pollInterval, signals: hup, reload: reload, logger: logger,
		// An edit between the first load and the watches being in place would be missed.
		started: func() { reload("watch-start") }}
	go func() { watched <- w.run(watchCtx) }()

	served := make(chan error, 1)
	go func() {
		if tlsConfig != nil {
			served <- srv.ServeTLS(ln, "", "") // the pair comes from GetCertificate; ServeTLS adds HTTP/2
			return
		}
		served <- srv.Serve(ln)
	}()
	logger.Info("listening", "addr", ln.Addr().String(), "tls", tlsConfig != nil, "client_certificates", cfg.tls.clientCA != "", "version", version,
		"htpasswd", cfg.files.htpasswd, "groups", cfg.files.groups, "policy", cfg.files.policy, "push_group", cfg.files.pushGroup,
		"cache_ttl", cfg.cacheTTL.String(), "hash_concurrency", cfg.hashBudget.slots)

	select {
	case <-ctx.Done():
	case err := <-served:
		return fmt.Errorf("serving: %w", err)
	case err := <-watched:
		if err != nil {
			srv.Close()
			return fmt.Errorf("watching the files: %w", err)
		}
		// nil: the watcher saw ctx end first. Put it back for the wait below, which would
		// otherwise block for ever.
		watched <- nil
	}
	if cfg.shutdownDelay > 0 {
		// Still serving: a load balancer that checks /readyz leaves this instance out first.
		st.draining.Store(true)
		logger.Info("draining: /readyz answers 503, requests are still served", "shutdown_delay", cfg.shutdownDelay.String())
		drain := time.NewTimer(cfg.shutdownDelay)
		select {
		case <-drain.C:
		case err := <-served:
			return fmt.Errorf("serving: %w", err)
		}
	}
	logger.Info("shutting down")
	// ctx is already done: the grace period needs a context of its own.
	shutdownCtx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	err = srv.Shutdown(shutdownCtx)
	stopWatching()
	<-watched
	return err
}

// maxHeaderBytes bounds a request's headers. It must stay well above what Traefik's entry
// point accepts from clients (http.maxHeaderBytes, 32 KiB in traefik/traefik.yml): Traefik
// copies the client's headers into its forwardAuth request, and over the HTTP/2 hop a request
// whose headers exceed the limit we advertise never reaches us; Traefik answers its client 500.
// HTTP/2 counts 32 bytes more per field, so 36 KiB of HTTP/1.1 header lines (Go's 4 KiB slack
// included) can grow to about 300 KiB of HTTP/2 header list.
const maxHeaderBytes = 512 << 10

// maxShutdownDelay bounds --shutdown-delay: the container runtime kills the process after its
// stop grace period (10 s in Docker and Swarm by default, 30 s in Kubernetes).
const maxShutdownDelay = time.Minute

// maxReadHeaderTimeout is the server's read timeout for a whole request, so also the
// longest --read-header-timeout that means anything.
const maxReadHeaderTimeout = 10 * time.Second

func newLogger(cfg config, w io.Writer) *slog.Logger {
	opts := &slog.HandlerOptions{Level: cfg.logLevel}
	if cfg.logFormat == "text" {
		return slog.New(slog.NewTextHandler(w, opts))
	}
	return slog.New(slog.NewJSONHandler(w, opts))
}
