package main

import (
	"errors"
	"flag"
	"io"
	"regexp"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/registry-auth/registry-auth/internal/cli"
	"github.com/registry-auth/registry-auth/internal/ldap"
)

// serveFlags is every flag of serve: its default, a value for its variable and a different
// one for the flag, all as the config shows them through get.
var serveFlags = []struct {
	name                   string
	def, fromEnv, fromFlag string   // "" in fromEnv/fromFlag would be ambiguous: never used
	envValue, flagValue    string   // what is written, when it differs from how it reads back
	with                   []string // other flags the flag is only valid with
	boolean                bool     // a boolean flag: --name=value only
	get                    func(c config) string
}{
	{name: "listen", def: ":8080", fromEnv: "127.0.0.1:9000", fromFlag: "[::1]:9001", get: func(c config) string { return c.listen }},
	{name: "tls-cert", def: "", fromEnv: "/env/tls.crt", fromFlag: "/flag/tls.crt", with: []string{"--tls-key=/k"}, get: func(c config) string { return c.tls.cert }},
	{name: "tls-key", def: "", fromEnv: "/env/tls.key", fromFlag: "/flag/tls.key", with: []string{"--tls-cert=/c"}, get: func(c config) string { return c.tls.key }},
	{name: "tls-client-ca", def: "", fromEnv: "/env/ca.crt", fromFlag: "/flag/ca.crt", with: []string{"--tls-cert=/c", "--tls-key=/k"}, get: func(c config) string { return c.tls.clientCA }},
	{name: "htpasswd", def: "/auth/htpasswd", fromEnv: "/env/htpasswd", fromFlag: "/flag/htpasswd", get: func(c config) string { return c.files.htpasswd }},
	{name: "tokens", def: "/auth/tokens.yaml", fromEnv: "/env/tokens.yaml", fromFlag: "/flag/tokens.yaml", get: func(c config) string { return c.files.tokens }},
	{name: "groups", def: "/auth/groups", fromEnv: "/env/groups", fromFlag: "/flag/groups", get: func(c config) string { return c.files.groups }},
	{name: "policy", def: "", fromEnv: "/env/policy.yaml", fromFlag: "/flag/policy.yaml", get: func(c config) string { return c.files.policy }},
	{name: "push-group", def: "pusher", fromEnv: "env-pushers", fromFlag: "flag-pushers", get: func(c config) string { return c.files.pushGroup }},
	{name: "realm", def: "Registry Authentication", fromEnv: "Env Realm", fromFlag: "Flag Realm", get: func(c config) string { return c.realm }},
	{name: "cache-ttl", def: "5m0s", fromEnv: "1m0s", fromFlag: "2h0m0s", envValue: "1m", flagValue: "2h", get: func(c config) string { return c.cacheTTL.String() }},
	{name: "cache-size", def: "10000", fromEnv: "5", fromFlag: "7", get: func(c config) string { return strconv.Itoa(c.cacheSize) }},
	{name: "poll-interval", def: "5s", fromEnv: "0s", fromFlag: "30s", envValue: "0", get: func(c config) string { return c.pollInterval.String() }},
	{name: "read-header-timeout", def: "5s", fromEnv: "2s", fromFlag: "3s", get: func(c config) string { return c.readHeaderTimeout.String() }},
	{name: "shutdown-delay", def: "0s", fromEnv: "5s", fromFlag: "2s", get: func(c config) string { return c.shutdownDelay.String() }},
	{name: "log-format", def: "json", fromEnv: "text", fromFlag: "json", get: func(c config) string { return c.logFormat }},
	{name: "log-level", def: "INFO", fromEnv: "DEBUG", fromFlag: "WARN", envValue: "debug", flagValue: "warn", get: func(c config) string { return c.logLevel.String() }},
	{name: "trusted-proxies", def: "", fromEnv: "10.0.0.0/8", fromFlag: "192.168.1.1/32 fd00::/8", flagValue: "192.168.1.1, fd00::/8", get: func(c config) string {
		var s []string
		for _, n := range c.trusted {
			s = append(s, n.String())
		}
		return strings.Join(s, " ")
	}},
	{name: "throttle-window", def: "5m0s", fromEnv: "1m0s", fromFlag: "10m0s", envValue: "1m", flagValue: "10m", get: func(c config) string { return c.throttle.window.String() }},
	{name: "throttle-per-client", def: "50", fromEnv: "0", fromFlag: "9", get: func(c config) string { return strconv.Itoa(c.throttle.perClient) }},
	{name: "throttle-per-user", def: "30", fromEnv: "3", fromFlag: "0", get: func(c config) string { return strconv.Itoa(c.throttle.perUser) }},
	{name: "throttle-max-keys", def: "65536", fromEnv: "10", fromFlag: "16", flagValue: "0x10", get: func(c config) string { return strconv.Itoa(c.throttle.maxKeys) }},
	{name: "hash-concurrency", def: strconv.Itoa(runtime.GOMAXPROCS(0)), fromEnv: "3", fromFlag: "1", get: func(c config) string { return strconv.Itoa(c.hashBudget.slots) }},
	{name: "hash-wait", def: "3s", fromEnv: "1s", fromFlag: "500ms", get: func(c config) string { return c.hashBudget.maxWait.String() }},
	{name: "ldap-url", def: "", fromEnv: "ldap://env/dc=x", fromFlag: "ldaps://flag a/dc=y?sAMAccountName", get: func(c config) string { return c.ldap.URL }},
	{name: "ldap-bind-dn", def: "", fromEnv: "cn=env,dc=x", fromFlag: "cn=flag,dc=x", with: []string{"--ldap-url=ldap://h/dc=x", "--ldap-bind-password-file=/p"}, get: func(c config) string { return c.ldap.BindDN }},
	{name: "ldap-bind-password-file", def: "", fromEnv: "/env/secret", fromFlag: "/flag/secret", with: []string{"--ldap-url=ldap://h/dc=x", "--ldap-bind-dn=cn=r,dc=x"}, get: func(c config) string { return c.ldap.BindPasswordFile }},
	{name: "ldap-starttls", def: "false", fromEnv: "true", fromFlag: "false", envValue: "1", boolean: true, with: []string{"--ldap-url=ldap://h/dc=x"}, get: func(c config) string { return strconv.FormatBool(c.ldap.StartTLS) }},
	{name: "ldap-ca", def: "", fromEnv: "/env/ca.pem", fromFlag: "/flag/ca.pem", with: []string{"--ldap-url=ldap://h/dc=x"}, get: func(c config) string { return c.ldap.CAFile }},
	{name: "ldap-timeout", def: "5s", fromEnv: "2s", fromFlag: "1m0s", flagValue: "1m", get: func(c config) string { return c.ldap.Timeout.String() }},
	{name: "ldap-group-base", def: "", fromEnv: "ou=env,dc=x", fromFlag: "ou=flag,dc=x", with: []string{"--ldap-url=ldap://h/dc=x"}, get: func(c config) string { return c.ldap.GroupBase }},
	{name: "ldap-group-filter", def: ldap.DefaultGroupFilter, fromEnv: "(member={dn})", fromFlag: "(memberUid={user})", get: func(c config) string { return c.ldap.GroupFilter }},
	{name: "ldap-group-name-attribute", def: "cn", fromEnv: "sAMAccountName", fromFlag: "ou", get: func(c config) string { return c.ldap.GroupNameAttr }},
	{name: "ldap-group-depth", def: "10", fromEnv: "0", fromFlag: "3", get: func(c config) string { return strconv.Itoa(c.ldap.GroupDepth) }},
}

// serveFlagsWithoutVariable are serve's flags that no REGISTRY_AUTH_ variable sets.
var serveFlagsWithoutVariable = []string{"version"}

// TestServeFlagsTableIsComplete: the table above has every flag serve's --help lists.
func TestServeFlagsTableIsComplete(t *testing.T) {
	t.Parallel()
	var help strings.Builder
	if _, err := parseServeConfig(cli.Env{LookupEnv: envOf(nil), Stdout: &help, Stderr: io.Discard}, []string{"--help"}); !errors.Is(err, flag.ErrHelp) {
		t.Fatalf("got %v, want flag.ErrHelp", err)
	}
	var listed, inTable []string
	for _, m := range regexp.MustCompile(`(?m)^  -([a-z-]+)`).FindAllStringSubmatch(help.String(), -1) {
		listed = append(listed, m[1])
	}
	for _, f := range serveFlags {
		inTable = append(inTable, f.name)
	}
	inTable = append(inTable, serveFlagsWithoutVariable...)
	slices.Sort(inTable)
	if !slices.Equal(listed, inTable) {
		t.Errorf("got flags %q in --help, want %q (add new flags to serveFlags)", listed, inTable)
	}
}

// TestServeConfigPrecedence: for every flag, the flag beats its REGISTRY_AUTH_ variable,
// which beats the default.
func TestServeConfigPrecedence(t *testing.T) {
	t.Parallel()
	for _, f := range serveFlags {
		t.Run(f.name, func(t *testing.T) {
			t.Parallel()
			envValue, flagValue := cmpOr(f.envValue, f.fromEnv), cmpOr(f.flagValue, f.fromFlag)
			env := map[string]string{cli.EnvName(f.name): envValue}
			tests := []struct {
				name string
				args []string
				env  map[string]string
				want string
			}{
				{"default", nil, nil, f.def},
				{"variable", nil, env, f.fromEnv},
				{"flag", []string{"--" + f.name, flagValue}, nil, f.fromFlag},
				{"flag=value", []string{"--" + f.name + "=" + flagValue}, nil, f.fromFlag},
				{"flag over variable", []string{"--" + f.name, flagValue}, env, f.fromFlag},
			}
			if f.boolean { // a boolean flag takes no separate value
				tests[2].args, tests[4].args = tests[3].args, []string{"--" + f.name + "=" + flagValue}
			}
			for _, tt := range tests {
				args := tt.args
				if tt.args != nil || tt.env != nil { // the default needs no companion, and is invalid with one
					args = append(slices.Clone(f.with), tt.args...)
				}
				c, err := parseServeConfig(cli.Env{LookupEnv: envOf(tt.env), Stdout: io.Discard, Stderr: io.Discard}, args)
				if err != nil {
					t.Errorf("%s: %v", tt.name, err)
					continue
				}
				if got := f.get(c); got != tt.want {
					t.Errorf("%s: got %q, want %q", tt.name, got, tt.want)
				}
			}
		})
	}
}

func cmpOr(a, b string) string {
	if a != "" {
		return a
	}
	return b
}

// TestServeConfigEmptyGroups: an empty groups path, from the variable or the flag, means no
// groups file; only an unset variable gives the default.
func TestServeConfigEmptyGroups(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		args []string
		env  map[string]string
		want string
	}{
		{"unset", nil, nil, "/auth/groups"},
		{"empty variable", nil, map[string]string{"REGISTRY_AUTH_GROUPS": ""}, ""},
		{"empty flag", []string{"--groups", ""}, nil, ""},
		{"empty flag=", []string{"--groups="}, map[string]string{"REGISTRY_AUTH_GROUPS": "/env/groups"}, ""},
		{"flag over empty variable", []string{"--groups", "/flag/groups"}, map[string]string{"REGISTRY_AUTH_GROUPS": ""}, "/flag/groups"},
	}
	for _, tt := range tests {
		c, err := parseServeConfig(cli.Env{LookupEnv: envOf(tt.env), Stdout: io.Discard, Stderr: io.Discard}, tt.args)
		if err != nil || c.files.groups != tt.want {
			t.Errorf("%s: got %q, %v, want %q, nil", tt.name, c.files.groups, err, tt.want)
		}
	}
}

// TestServeConfigErrors: every invalid value is an error that names the flag (or variable)
// and says what to give instead; several are reported together.
func TestServeConfigErrors(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		args []string
		env  map[string]string
		want []string // each must be in the error
	}{
		{"listen without port", []string{"--listen", "8080"}, nil, []string{`--listen "8080": want host:port such as :8080`}},
		{"listen from the variable", nil, map[string]string{"REGISTRY_AUTH_LISTEN": "localhost"}, []string{`--listen "localhost": want host:port`}},
		{"empty htpasswd", []string{"--htpasswd", ""}, nil, []string{"--htpasswd is empty: give the path of the htpasswd file"}},
		{"empty push group", nil, map[string]string{"REGISTRY_AUTH_PUSH_GROUP": ""}, []string{"--push-group is empty: give the group whose members may push"}},
		{"quote in realm", []string{"--realm", `my "realm"`}, nil, []string{`--realm "my \"realm\"": quotes, backslashes and control characters are not allowed`}},
		{"newline in realm", []string{"--realm", "a\nb"}, nil, []string{`--realm "a\nb": quotes, backslashes and control characters are not allowed`}},
		{"negative cache-ttl", []string{"--cache-ttl", "-1s"}, nil, []string{"--cache-ttl -1s: want 0 (off) or a positive duration"}},
		{"cache-ttl variable not a duration", nil, map[string]string{"REGISTRY_AUTH_CACHE_TTL": "5 minutes"}, []string{`REGISTRY_AUTH_CACHE_TTL="5 minutes": want a duration such as 5m, 30s or 0`}},
		{"cache-size 0", []string{"--cache-size", "0"}, nil, []string{"--cache-size 0: want at least 1 (use --cache-ttl 0 to turn the cache off)"}},
		{"cache-size variable not a number", nil, map[string]string{"REGISTRY_AUTH_CACHE_SIZE": "lots"}, []string{`REGISTRY_AUTH_CACHE_SIZE="lots": want a whole number`}},
		{"cache-size variable with a tail", nil, map[string]string{"REGISTRY_AUTH_CACHE_SIZE": "12abc"}, []string{`REGISTRY_AUTH_CACHE_SIZE="12abc": want a whole number`}},
		{"cache-size variable in exponent form", nil, map[string]string{"REGISTRY_AUTH_CACHE_SIZE": "1e5"}, []string{`REGISTRY_AUTH_CACHE_SIZE="1e5": want a whole number`}},
		{"negative poll-interval", []string{"--poll-interval", "-5s"}, nil, []string{"--poll-interval -5s: want 0 (off) or a positive duration"}},
		{"read-header-timeout 0", []string{"--read-header-timeout", "0"}, nil, []string{"--read-header-timeout 0s: want a positive duration up to 10s"}},
		{"read-header-timeout too long", []string{"--read-header-timeout", "1m"}, nil, []string{"--read-header-timeout 1m0s: want a positive duration up to 10s"}},
		{"log-format", []string{"--log-format", "xml"}, nil, []string{`--log-format "xml": want json or text`}},
		{"log-level", nil, map[string]string{"REGISTRY_AUTH_LOG_LEVEL": "loud"}, []string{`--log-level "loud": want debug, info, warn or error`}},
		{"trusted-proxies bad CIDR", []string{"--trusted-proxies", "10.0.0.0/33"}, nil, []string{`--trusted-proxies: "10.0.0.0/33" is not a CIDR such as 172.16.0.0/12`}},
		{"trusted-proxies name", []string{"--trusted-proxies", "traefik"}, nil, []string{`--trusted-proxies: "traefik" is neither an IP address nor a CIDR`}},
		{"throttle-window 0", []string{"--throttle-window", "0"}, nil, []string{"--throttle-window 0s: want a positive duration such as 5m"}},
		{"negative throttle-per-client", []string{"--throttle-per-client", "-1"}, nil, []string{"--throttle-per-client and --throttle-per-user: want 0 (off) or a positive number"}},
		{"negative throttle-per-user", nil, map[string]string{"REGISTRY_AUTH_THROTTLE_PER_USER": "-3"}, []string{"--throttle-per-client and --throttle-per-user: want 0 (off) or a positive number"}},
		{"throttle-max-keys 0", []string{"--throttle-max-keys", "0"}, nil, []string{"--throttle-max-keys 0: want at least 1"}},
		{"hash-concurrency 0", []string{"--hash-concurrency", "0"}, nil, []string{"--hash-concurrency 0: want at least 1"}},
		{"hash-wait 0", nil, map[string]string{"REGISTRY_AUTH_HASH_WAIT": "0"}, []string{"--hash-wait 0s: want a positive duration up to 8s"}},
		{"hash-wait past the write timeout", []string{"--hash-wait", "10s"}, nil, []string{"--hash-wait 10s: want a positive duration up to 8s"}},
		{"argument", []string{"extra"}, nil, []string{`unexpected argument "extra": serve takes flags only (see --help)`}},
		{"all at once", []string{"--listen", "x", "--log-format", "xml", "--cache-size", "0"}, nil,
			[]string{`--listen "x"`, `--log-format "xml"`, "--cache-size 0"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			_, err := parseServeConfig(cli.Env{LookupEnv: envOf(tt.env), Stdout: io.Discard, Stderr: io.Discard}, tt.args)
			if err == nil {
				t.Fatalf("got no error, want one containing %q", tt.want)
			}
			for _, want := range tt.want {
				if !strings.Contains(err.Error(), want) {
					t.Errorf("got %q, want it to contain %q", err, want)
				}
			}
		})
	}
}

// TestServeConfigFlagSyntaxErrors: a value the flag package cannot parse is an error naming
// the flag, and the usage printed with it shows what the flag takes.
func TestServeConfigFlagSyntaxErrors(t *testing.T) {
	t.Parallel()
	tests := []struct {
		args  []string
		error string
		usage string // the line of --help that explains the flag
	}{
		{[]string{"--cache-ttl", "5 minutes"}, `invalid value "5 minutes" for flag -cache-ttl`, "how long a verified password is remembered"},
		{[]string{"--cache-size", "lots"}, `invalid value "lots" for flag -cache-size`, "most verified credentials remembered at once"},
		{[]string{"--throttle-window=forever"}, `invalid value "forever" for flag -throttle-window`, "sliding window over which failed logins are counted"},
		{[]string{"--no-such-flag"}, "flag provided but not defined: -no-such-flag", "Usage: registry-auth [serve] [flags]"},
		{[]string{"--listen"}, "flag needs an argument: -listen", "address to listen on, host:port"},
	}
	for _, tt := range tests {
		var output strings.Builder
		_, err := parseServeConfig(cli.Env{LookupEnv: envOf(nil), Stdout: io.Discard, Stderr: &output}, tt.args)
		if err == nil || !strings.Contains(err.Error(), tt.error) {
			t.Errorf("%q: got %v, want an error containing %q", tt.args, err, tt.error)
		}
		if !strings.Contains(output.String(), tt.usage) {
			t.Errorf("%q: the usage printed does not contain %q:\n%s", tt.args, tt.usage, output.String())
		}
	}
}
