package main

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strings"
	"time"

	"github.com/registry-auth/registry-auth/internal/cli"
	"github.com/registry-auth/registry-auth/internal/ldap"
)

// config is everything `registry-auth serve` needs, filled by parseServeConfig from flags,
// then REGISTRY_AUTH_* variables, then defaults.
type config struct {
	listen       string
	tls          tlsFiles // no cert: plain HTTP
	files        sources
	pushGroupSet bool // --push-group or its variable was given, not defaulted
	realm        string
	cacheTTL     time.Duration // 0 turns the verified-credential cache off
	cacheSize    int
	pollInterval time.Duration // 0 turns the stat poll off
	// readHeaderTimeout is how long a client may take to send its request line and headers
	// (at most maxReadHeaderTimeout, the whole request's read timeout).
	readHeaderTimeout time.Duration
	// shutdownDelay is how long the service keeps serving after SIGTERM with /readyz
	// answering 503, so that a load balancer that checks it stops sending requests first.
	shutdownDelay time.Duration
	logFormat     string
	logLevel      slog.Level
	throttle      throttleConfig
	hashBudget    hashBudgetConfig
	ldap          ldap.Config
	trusted       []*net.IPNet // empty: any peer may ask
	showVersion   bool         // --version: print the version and exit
}

const serveUsage = `Usage: registry-auth [serve] [flags]

Answers Traefik's forwardAuth requests for a container registry: HTTP Basic credentials are
checked against an Apache htpasswd file. Without --policy, any valid user may pull (GET, HEAD)
and members of the push group may push and delete (POST, PUT, PATCH, DELETE); with --policy,
its rules decide who may pull, push and delete which repositories. The files are reloaded
within a second of any change, on SIGHUP, and by a slow poll for file systems without change
events.

Endpoints: /auth (the decision), /healthz, /readyz, /metrics.
Other commands: user, group, hash, check, explain, healthcheck, version ('registry-auth help' lists them).
`

// parseServeConfig builds the serve command's config. Every check lives here, and every
// error says how to fix the problem.
func parseServeConfig(env cli.Env, args []string) (config, error) {
	var c config
	var logLevel, trusted string
	fs := cli.NewFlagSet("registry-auth serve", serveUsage, env)
	fs.EnvString(&c.listen, "listen", ":8080", "address to listen on, host:port")
	defineTLSFlags(fs, &c.tls)
	defineSourceFlags(fs, &c.files)
	fs.EnvString(&c.realm, "realm", "Registry Authentication", "realm of the Basic challenge sent with a 401")
	fs.EnvDuration(&c.cacheTTL, "cache-ttl", 5*time.Minute, "how long a verified password is remembered; 0 turns the cache off (every request runs the hash)")
	fs.EnvInt(&c.cacheSize, "cache-size", 10000, "most verified credentials remembered at once")
	fs.EnvDuration(&c.pollInterval, "poll-interval", 5*time.Second, "how often the files are also checked by stat, for file systems without change events (NFS, SMB, FUSE); 0 turns the poll off")
	fs.EnvDuration(&c.readHeaderTimeout, "read-header-timeout", 5*time.Second, "how long a client may take to send its request headers before the connection is closed (slow clients tie up connections)")
	fs.EnvDuration(&c.shutdownDelay, "shutdown-delay", 0, "after SIGTERM, keep serving this long with /readyz answering 503 before stopping, so that a load balancer checking /readyz (the Swarm stack's Traefik, a Kubernetes readiness probe) stops sending requests first; 0 stops at once")
	fs.EnvString(&c.logFormat, "log-format", "json", "log format: json or text")
	fs.EnvString(&logLevel, "log-level", "info", "log level: debug, info, warn or error")
	fs.EnvString(&trusted, "trusted-proxies", "", "comma-separated CIDRs of the proxies allowed to ask /auth (e.g. the Traefik network); empty allows any peer")
	c.throttle.define(fs)
	c.hashBudget.define(fs)
	defineLDAPFlags(fs, &c.ldap)
	fs.BoolVar(&c.showVersion, "version", false, "print the version and exit")
	if err := fs.Parse(args); err != nil {
		return c, err
	}
	if fs.NArg() > 0 {
		return c, fmt.Errorf("unexpected argument %q: serve takes flags only (see --help)", fs.Arg(0))
	}
	c.pushGroupSet = fs.Given("push-group")

	var errs []error
	if _, _, err := net.SplitHostPort(c.listen); err != nil {
		errs = append(errs, fmt.Errorf("--listen %q: want host:port such as :8080 or 127.0.0.1:8080", c.listen))
	}
	if err := c.tls.validate(); err != nil {
		errs = append(errs, err)
	}
	if c.files.htpasswd == "" && c.ldap.URL == "" {
		errs = append(errs, errors.New("--htpasswd is empty: give the path of the htpasswd file, or --ldap-url to take every user from a directory"))
	}
	if c.files.pushGroup == "" {
		errs = append(errs, errors.New("--push-group is empty: give the group whose members may push (default pusher)"))
	}
	if strings.ContainsAny(c.realm, "\"\\") || strings.IndexFunc(c.realm, isControl) >= 0 {
		errs = append(errs, fmt.Errorf("--realm %q: quotes, backslashes and control characters are not allowed in a realm", c.realm))
	}
	if c.cacheTTL < 0 {
		errs = append(errs, fmt.Errorf("--cache-ttl %v: want 0 (off) or a positive duration", c.cacheTTL))
	}
	if c.cacheSize < 1 {
		errs = append(errs, fmt.Errorf("--cache-size %d: want at least 1 (use --cache-ttl 0 to turn the cache off)", c.cacheSize))
	}
	if c.pollInterval < 0 {
		errs = append(errs, fmt.Errorf("--poll-interval %v: want 0 (off) or a positive duration", c.pollInterval))
	}
	if c.shutdownDelay < 0 || c.shutdownDelay > maxShutdownDelay {
		errs = append(errs, fmt.Errorf("--shutdown-delay %v: want 0 to %v, a little more than the load balancer's health-check interval (such as 5s)", c.shutdownDelay, maxShutdownDelay))
	}
	if c.readHeaderTimeout <= 0 || c.readHeaderTimeout > maxReadHeaderTimeout {
		errs = append(errs, fmt.Errorf("--read-header-timeout %v: want a positive duration up to %v, such as 5s", c.readHeaderTimeout, maxReadHeaderTimeout))
	}
	if c.logFormat != "json" && c.logFormat != "text" {
		errs = append(errs, fmt.Errorf("--log-format %q: want json or text", c.logFormat))
	}
	if err := c.logLevel.UnmarshalText([]byte(logLevel)); err != nil {
		errs = append(errs, fmt.Errorf("--log-level %q: want debug, info, warn or error", logLevel))
	}
	if err := c.throttle.validate(); err != nil {
		errs = append(errs, err)
	}
	if err := c.hashBudget.validate(); err != nil {
		errs = append(errs, err)
	}
	if err := c.ldap.Validate(); err != nil {
		errs = append(errs, err)
	}
	c.files.directory, c.files.directoryGroups = c.ldap.Supplies()
	nets, err := parseCIDRList(trusted)
	if err != nil {
		errs = append(errs, fmt.Errorf("--trusted-proxies: %w", err))
	}
	c.trusted = nets
	return c, errors.Join(errs...)
}

// parseCIDRList parses "10.0.0.0/8, 192.168.1.1"; a bare address is a single-host network.
func parseCIDRList(s string) ([]*net.IPNet, error) {
	var nets []*net.IPNet
	for _, field := range strings.Split(s, ",") {
		field = strings.TrimSpace(field)
		if field == "" {
			continue
		}
		if !strings.Contains(field, "/") {
			ip := net.ParseIP(field)
			if ip == nil {
				return nil, fmt.Errorf("%q is neither an IP address nor a CIDR such as 172.16.0.0/12", field)
			}
			bits := 8 * len(ip.To16())
			if ip4 := ip.To4(); ip4 != nil {
				ip, bits = ip4, 32
			}
			nets = append(nets, &net.IPNet{IP: ip, Mask: net.CIDRMask(bits, bits)})
			continue
		}
		_, n, err := net.ParseCIDR(field)
		if err != nil {
			return nil, fmt.Errorf("%q is not a CIDR such as 172.16.0.0/12", field)
		}
		nets = append(nets, n)
	}
	return nets, nil
}

func isControl(r rune) bool { return r < 0x20 || r == 0x7f }

// defineLDAPFlags adds the directory's flags to fs, for serve, check and explain.
func defineLDAPFlags(fs *cli.FlagSet, c *ldap.Config) {
	fs.EnvString(&c.URL, "ldap-url", "", "LDAP directory as in Apache's AuthLDAPURL, ldap[s]://host[:port][ host2...]/basedn?attribute?scope?filter (attribute uid, scope sub, filter (objectClass=*) by default); users the htpasswd file lacks are looked up there; empty: no directory")
	fs.EnvString(&c.BindDN, "ldap-bind-dn", "", "DN the service binds as to search the directory (AuthLDAPBindDN); empty: anonymous searches")
	fs.EnvString(&c.BindPasswordFile, "ldap-bind-password-file", "", "file holding the password of --ldap-bind-dn (AuthLDAPBindPassword), re-read when it changes")
	fs.EnvBool(&c.StartTLS, "ldap-starttls", false, "upgrade ldap:// connections with StartTLS before binding (needed whenever the directory is not on the same host, unless ldaps://)")
	fs.EnvString(&c.CAFile, "ldap-ca", "", "PEM file of the CAs that sign the directory's certificate (the image has no system roots)")
	fs.EnvDuration(&c.Timeout, "ldap-timeout", 5*time.Second, "limit for each dial, search and bind against the directory")
	fs.EnvString(&c.GroupBase, "ldap-group-base", "", "DN under which the directory's groups are searched; empty: directory groups are not used")
	fs.EnvString(&c.GroupFilter, "ldap-group-filter", ldap.DefaultGroupFilter, "filter finding a user's groups; {dn} is the user's DN, {user} the name, both escaped")
	fs.EnvString(&c.GroupNameAttr, "ldap-group-name-attribute", "cn", "attribute naming a directory group for the policy and --push-group")
	fs.EnvInt(&c.GroupDepth, "ldap-group-depth", 10, "levels of nested groups followed (AuthLDAPMaxSubGroupDepth); 0: only direct membership")
}
