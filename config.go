package main

import (
	"bytes"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"strconv"
	"strings"
	"time"

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
	logFormat         string
	logLevel          slog.Level
	throttle          throttleConfig
	hashBudget        hashBudgetConfig
	ldap              ldap.Config
	trusted           []*net.IPNet // empty: any peer may ask
	showVersion       bool         // --version: print the version and exit
}

// envFlagSet is a flag.FlagSet whose flags also read REGISTRY_AUTH_* variables.
type envFlagSet struct {
	*flag.FlagSet
	lookupEnv func(string) (string, bool)
	errs      []error
	withEnv   bool // some flag is backed by a variable: say so in the usage
	// help receives the usage that --help asks for (standard output, so that it pipes to
	// less or grep); usageTo receives it otherwise (standard error, after an error).
	help, usageTo io.Writer
}

// newEnvFlagSet is a flag set whose --help prints usage to stdout, and whose errors (followed
// by the usage) go to stderr.
func newEnvFlagSet(name, usage string, lookupEnv func(string) (string, bool), stdout, stderr io.Writer) *envFlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	efs := &envFlagSet{FlagSet: fs, lookupEnv: lookupEnv, help: stdout, usageTo: stderr}
	fs.Usage = func() {
		w := efs.usageTo
		fmt.Fprint(w, usage)
		if efs.withEnv {
			fmt.Fprintln(w, "\nFlags (a variable in brackets may set the flag instead; the flag wins):")
		} else {
			fmt.Fprintln(w, "\nFlags:")
		}
		fs.SetOutput(w)
		fs.PrintDefaults()
		fs.SetOutput(stderr)
	}
	return efs
}

// envName is the variable that backs a flag: --push-group is REGISTRY_AUTH_PUSH_GROUP.
func envName(flagName string) string {
	return "REGISTRY_AUTH_" + strings.ToUpper(strings.ReplaceAll(flagName, "-", "_"))
}

// stringVar defines a string flag whose default comes from its variable when that is set
// (even to the empty string, which some flags give a meaning).
func (fs *envFlagSet) stringVar(p *string, name, def, usage string) {
	if v, ok := fs.env(name); ok {
		def = v
	}
	fs.StringVar(p, name, def, fmt.Sprintf("%s [%s]", usage, envName(name)))
}

// durationVar defines a duration flag backed by its variable.
func (fs *envFlagSet) durationVar(p *time.Duration, name string, def time.Duration, usage string) {
	if v, ok := fs.env(name); ok {
		d, err := time.ParseDuration(v)
		if err != nil {
			fs.errs = append(fs.errs, fmt.Errorf("%s=%q: want a duration such as 5m, 30s or 0: %v", envName(name), v, err))
		}
		def = d
	}
	fs.DurationVar(p, name, def, fmt.Sprintf("%s [%s]", usage, envName(name)))
}

// boolVar defines a boolean flag backed by its variable (true, false, 1, 0...).
func (fs *envFlagSet) boolVar(p *bool, name string, def bool, usage string) {
	if v, ok := fs.env(name); ok {
		b, err := strconv.ParseBool(v)
		if err != nil {
			fs.errs = append(fs.errs, fmt.Errorf("%s=%q: want true or false", envName(name), v))
		}
		def = b
	}
	fs.BoolVar(p, name, def, fmt.Sprintf("%s [%s]", usage, envName(name)))
}

// intVar defines an integer flag backed by its variable.
func (fs *envFlagSet) intVar(p *int, name string, def int, usage string) {
	if v, ok := fs.env(name); ok {
		// The same parse as the flag's own: fmt.Sscan would take "1e5" for 1 and "12abc" for 12.
		n, err := strconv.ParseInt(v, 0, strconv.IntSize)
		if err != nil {
			fs.errs = append(fs.errs, fmt.Errorf("%s=%q: want a whole number", envName(name), v))
		}
		def = int(n)
	}
	fs.IntVar(p, name, def, fmt.Sprintf("%s [%s]", usage, envName(name)))
}

// env returns the variable backing flag name. Unset and empty differ:
// REGISTRY_AUTH_GROUPS="" means "no groups file".
func (fs *envFlagSet) env(name string) (string, bool) {
	fs.withEnv = true
	return fs.lookupEnv(envName(name))
}

// given reports whether the flag name was set on the command line or by its variable.
func (fs *envFlagSet) given(name string) bool {
	if _, ok := fs.lookupEnv(envName(name)); ok {
		return true
	}
	set := false
	fs.Visit(func(f *flag.Flag) { set = set || f.Name == name })
	return set
}

// parse parses args and returns the first problem with them or with the variables.
func (fs *envFlagSet) parse(args []string) error {
	// The usage Parse prints goes to stdout for --help, to stderr after an error.
	var usage bytes.Buffer
	stderr := fs.usageTo
	fs.usageTo = &usage
	err := fs.Parse(args)
	fs.usageTo = stderr
	if errors.Is(err, flag.ErrHelp) {
		fs.help.Write(usage.Bytes())
	} else {
		stderr.Write(usage.Bytes())
	}
	if err != nil {
		return err
	}
	return errors.Join(fs.errs...)
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
func parseServeConfig(args []string, lookupEnv func(string) (string, bool), stdout, stderr io.Writer) (config, error) {
	var c config
	var logLevel, trusted string
	fs := newEnvFlagSet("registry-auth serve", serveUsage, lookupEnv, stdout, stderr)
	fs.stringVar(&c.listen, "listen", ":8080", "address to listen on, host:port")
	defineTLSFlags(fs, &c.tls)
	defineSourceFlags(fs, &c.files)
	fs.stringVar(&c.realm, "realm", "Registry Authentication", "realm of the Basic challenge sent with a 401")
	fs.durationVar(&c.cacheTTL, "cache-ttl", 5*time.Minute, "how long a verified password is remembered; 0 turns the cache off (every request runs the hash)")
	fs.intVar(&c.cacheSize, "cache-size", 10000, "most verified credentials remembered at once")
	fs.durationVar(&c.pollInterval, "poll-interval", 5*time.Second, "how often the files are also checked by stat, for file systems without change events (NFS, SMB, FUSE); 0 turns the poll off")
	fs.durationVar(&c.readHeaderTimeout, "read-header-timeout", 5*time.Second, "how long a client may take to send its request headers before the connection is closed (slow clients tie up connections)")
	fs.stringVar(&c.logFormat, "log-format", "json", "log format: json or text")
	fs.stringVar(&logLevel, "log-level", "info", "log level: debug, info, warn or error")
	fs.stringVar(&trusted, "trusted-proxies", "", "comma-separated CIDRs of the proxies allowed to ask /auth (e.g. the Traefik network); empty allows any peer")
	c.throttle.define(fs)
	c.hashBudget.define(fs)
	defineLDAPFlags(fs, &c.ldap)
	fs.BoolVar(&c.showVersion, "version", false, "print the version and exit")
	if err := fs.parse(args); err != nil {
		return c, err
	}
	if fs.NArg() > 0 {
		return c, fmt.Errorf("unexpected argument %q: serve takes flags only (see --help)", fs.Arg(0))
	}
	c.pushGroupSet = fs.given("push-group")

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
func defineLDAPFlags(fs *envFlagSet, c *ldap.Config) {
	fs.stringVar(&c.URL, "ldap-url", "", "LDAP directory as in Apache's AuthLDAPURL, ldap[s]://host[:port][ host2...]/basedn?attribute?scope?filter (attribute uid, scope sub, filter (objectClass=*) by default); users the htpasswd file lacks are looked up there; empty: no directory")
	fs.stringVar(&c.BindDN, "ldap-bind-dn", "", "DN the service binds as to search the directory (AuthLDAPBindDN); empty: anonymous searches")
	fs.stringVar(&c.BindPasswordFile, "ldap-bind-password-file", "", "file holding the password of --ldap-bind-dn (AuthLDAPBindPassword), re-read when it changes")
	fs.boolVar(&c.StartTLS, "ldap-starttls", false, "upgrade ldap:// connections with StartTLS before binding (needed whenever the directory is not on the same host, unless ldaps://)")
	fs.stringVar(&c.CAFile, "ldap-ca", "", "PEM file of the CAs that sign the directory's certificate (the image has no system roots)")
	fs.durationVar(&c.Timeout, "ldap-timeout", 5*time.Second, "limit for each dial, search and bind against the directory")
	fs.stringVar(&c.GroupBase, "ldap-group-base", "", "DN under which the directory's groups are searched; empty: directory groups are not used")
	fs.stringVar(&c.GroupFilter, "ldap-group-filter", ldap.DefaultGroupFilter, "filter finding a user's groups; {dn} is the user's DN, {user} the name, both escaped")
	fs.stringVar(&c.GroupNameAttr, "ldap-group-name-attribute", "cn", "attribute naming a directory group for the policy and --push-group")
	fs.intVar(&c.GroupDepth, "ldap-group-depth", 10, "levels of nested groups followed (AuthLDAPMaxSubGroupDepth); 0: only direct membership")
}
