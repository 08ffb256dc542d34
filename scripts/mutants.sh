#!/usr/bin/env bash
# mutants.sh: checks that the unit tests catch the changes that would hurt most. Each mutant
# below is one exact text replacement in one of the service's files. They are applied one at
# a time to a scratch copy of the repository's tracked files (the working tree is never
# touched), and each time the module's unit tests run (go test -count=1 -failfast ./..., without
# -race, for speed). A mutant the tests pass with has survived: some behaviour has no test.
#
#   scripts/mutants.sh [NAME...]          only the mutants whose name contains a NAME
#   scripts/mutants.sh --check [NAME...]  only check that each mutant's text is in its file
#
# Exit status: 0 when every mutant is caught, 1 when any survives, 2 when the check itself
# cannot be trusted: a mutant's text is not in its file exactly once (the code moved on and
# the list must follow; nothing runs then), a mutant does not pass go vet (so it would be
# "caught" by the compiler, not the tests), or the unchanged copy fails its tests.
# MUTANT_TIMEOUT (default 5m) bounds each test run; a run that times out counts as caught.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
timeout="${MUTANT_TIMEOUT:-5m}"

names=() files=() olds=() news=()
# mutant NAME FILE OLD NEW: in FILE, replace the only occurrence of OLD with NEW.
mutant() { names+=("$1") files+=("$2") olds+=("$3") news+=("$4"); }

# Security checks dropped.
mutant untrusted-peer-served handler.go \
	'if !peerTrusted {' \
	'if false {'
mutant any-scheme-accepted handler.go \
	'if !found || !strings.EqualFold(scheme, "Basic") {' \
	'if _ = scheme; !found {'
mutant nul-in-password-accepted handler.go \
	'case strings.IndexByte(pass, 0) >= 0:' \
	'case false:'
mutant unknown-route-decided-by-policy handler.go \
	'if routeErr == nil {' \
	'if true {'
mutant unknown-route-not-named answer.go \
	'case routeErr != nil:' \
	'case false:'
mutant unknown-users-skip-hash authn.go \
	'_, err := htpasswd.Verify(u.dummyHash, c.Password)' \
	'var err error'
mutant route-method-unchecked internal/registry/request.go \
	'if !serves(r.methods, method) {' \
	'if false {'
mutant dot-segments-accepted internal/registry/request.go \
	'if s == "." || s == ".." {' \
	'if s == "..." {'
mutant encoded-slash-accepted internal/registry/request.go \
	'if strings.Contains(lower, "%2f") || strings.Contains(lower, "%5c") || strings.Contains(rawPath, `\`) {' \
	'if strings.Contains(lower, "%5c") || strings.Contains(rawPath, `\`) {'
mutant upper-case-name-accepted internal/registry/reference.go \
	"func isLowerAlnum(c byte) bool { return c >= 'a' && c <= 'z' || c >= '0' && c <= '9' }" \
	"func isLowerAlnum(c byte) bool { return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' }"
mutant name-slash-unchecked internal/registry/reference.go \
	'for component := range strings.SplitSeq(s, "/") {' \
	'for component := range strings.SplitSeq(strings.ReplaceAll(s, "//", "/"), "/") {'
mutant client-cert-not-required routes.go \
	'if clientCerts {' \
	'if false {'
mutant no-challenge-on-401 responses.go \
	'w.Header().Set("WWW-Authenticate", `Basic realm="`+realm+`"`)' \
	''
# Rules inverted.
mutant push-by-non-members internal/policy/policy.go \
	'who: subjects{authenticated: true}, repos: []repoPattern{anyRepository()}, grants: registry.Pull,' \
	'who: subjects{authenticated: true}, repos: []repoPattern{anyRepository()}, grants: registry.Pull | registry.Push,'
mutant pull-refused internal/policy/policy.go \
	'who: subjects{authenticated: true}, repos: []repoPattern{anyRepository()}, grants: registry.Pull,' \
	'who: subjects{authenticated: true}, repos: []repoPattern{anyRepository()}, grants: 0,'
mutant partial-grant-suffices internal/policy/policy.go \
	'if a.Needs&^r.Granted != 0 && v.Allowed {' \
	'if a.Needs&r.Granted == 0 && v.Allowed {'
mutant refused-mount-answer-403 answer.go \
	'case v.Reason == "mount_source_not_readable":' \
	'case false:'
mutant explain-ignores-directory-groups explain.go \
	'id := snap.identityOf(user, groups...)' \
	'id := snap.identityOf(user); _ = groups'
mutant source-groups-dropped store.go \
	'id.Groups = append(slices.Clip(id.Groups), sourceGroups...)' \
	'id.Groups = slices.Clip(id.Groups); _ = sourceGroups'
# Client addresses: who is believed.
mutant xff-believed-from-any-peer handler.go \
	'd.client = clientAddress(peer, peerTrusted, h.trusted, r.Header.Values("X-Forwarded-For"))' \
	'd.client = clientAddress(peer, true, h.trusted, r.Header.Values("X-Forwarded-For"))'
mutant xff-client-entry-believed handler.go \
	'entry := strings.TrimSpace(rest[i+1:])' \
	"entry := strings.TrimSpace(xff[0][:strings.IndexByte(xff[0]+\",\", ',')])"
mutant xff-trusted-hops-believed handler.go \
	'if leftmost || len(trusted) == 0 || !inNets(trusted, ip) {' \
	'if leftmost || true {'
# Throttling.
mutant throttle-never-blocks throttle.go \
	'if retryAfter > 0 {' \
	'if false {'
mutant failures-not-counted authn.go \
	'if out.OK || err != nil {' \
	'if true {'
mutant throttle-counted-after-hash authn.go \
	'if _, slow := a.(hashing); slow {' \
	'attempt.release(); defer func() { if !out.OK && err == nil { s.throttle.admit(c.Client, a.NameKey(c.User)) } }(); if _, slow := a.(hashing); slow {'
mutant directory-name-key-raw internal/ldap/directory.go \
	'func (d *Directory) NameKey(user string) string { return nameKey(user) }' \
	'func (d *Directory) NameKey(user string) string { return user }'
mutant directory-takes-file-name authn.go \
	'if _, ok := earlier.Claims(out.User); ok {' \
	'if _, ok := earlier.Claims(out.User); false && ok {'
mutant ipv6-throttled-per-address throttle.go \
	'p, _ := ip.Prefix(64)' \
	'p := ip'
# The hashing budget.
mutant hash-budget-unbounded budget.go \
	'if b.busy < b.slots {' \
	'if true {'
mutant hash-budget-first-come budget.go \
	'b.turns.MoveToBack(q.turn)' \
	'_ = q.turn'
mutant file-hash-outside-budget authn.go \
	'if _, slow := a.(hashing); slow {' \
	'if _, slow := a.(hashing); false && slow {'
# Reload and file messages.
mutant reload-recovery-silent store.go \
	'if s.lastFailure != "" {' \
	'if false {'
mutant push-group-counts-strangers store.go \
	'if _, ok := s.users[member]; ok {' \
	'if _, ok := s.users[member]; ok || !ok {'
mutant group-names-lower-cased-only internal/htpasswd/parse.go \
	'key := policy.GroupKey(group)' \
	'key := strings.ToLower(group); _ = policy.GroupKey'
# The verified-credential cache.
mutant cache-key-without-client store.go \
	'[][]byte{[]byte(c.Client), []byte(c.User), c.Password, []byte(storedHash)}' \
	'[][]byte{[]byte(c.User), c.Password, []byte(storedHash)}'
mutant cache-key-without-password store.go \
	'[][]byte{[]byte(c.Client), []byte(c.User), c.Password, []byte(storedHash)}' \
	'[][]byte{[]byte(c.Client), []byte(c.User), []byte(storedHash)}'
mutant cache-key-without-hash store.go \
	'[][]byte{[]byte(c.Client), []byte(c.User), c.Password, []byte(storedHash)}' \
	'[][]byte{[]byte(c.Client), []byte(c.User), c.Password}'
mutant cache-dropped-at-reload store.go \
	's.current.Store(snap)' \
	's.cache = newVerifyCache(s.cacheTTL, s.cacheSize); s.current.Store(snap)'
# Files and reloads.
mutant last-duplicate-wins internal/htpasswd/parse.go \
	'if prev, dup := firstLine[user]; dup {' \
	'if prev, dup := firstLine[user]; false && dup {'
mutant failed-reload-replaces-snapshot store.go \
	's.lastFailure = msg' \
	's.lastFailure = msg; s.current.Store(res.snap)'
mutant empty-htpasswd-loads load.go \
	'if len(hf.Users) == 0 && hfile.path != "" {' \
	'if false {'
# The seams between the packages.
mutant directory-before-file store.go \
	'snap.authenticators = append(slices.Clip(snap.authenticators), s.backends...)' \
	'snap.authenticators = append(slices.Clip(s.backends), snap.authenticators...)'
mutant check-skips-directory-groups internal/ldap/diagnose.go \
	'diag.Groups = append([]Group{}, groups...)' \
	'diag.Groups = append([]Group{}, groups[:0]...)'
mutant edit-not-proved-by-parser internal/htpasswd/edit.go \
	'before := d.parsed' \
	'before := d.parsed; if true { return nil }'
mutant default-command-ignored internal/cli/program.go \
	"if len(args) > 0 && (p.Default == \"\" || args[0] == \"\" || args[0][0] != '-') {" \
	'if len(args) > 0 {'
# Timeouts not wired to their flags.
mutant header-timeout-unwired main.go \
	'ReadHeaderTimeout: cfg.readHeaderTimeout,' \
	''
mutant healthcheck-timeout-ignored commands.go \
	'ctx, cancel := context.WithTimeout(ctx, timeout)' \
	'ctx, cancel := context.WithTimeout(ctx, 3*time.Second)'
# Robot tokens.
mutant token-scopes-ignored internal/policy/policy.go \
	'r.Granted &= id.Scopes.allows(a.Repository)' \
	'r.Granted &= r.ruleGrants'
mutant token-catalog-scope-ignored internal/policy/policy.go \
	'case id.Scopes != nil && !id.Scopes.catalog:' \
	'case false:'
mutant token-expiry-unchecked authn.go \
	'if v.ok && !out.Until.IsZero() && !s.now().Before(out.Until) {' \
	'if false {'
mutant token-expiry-checked-on-miss-only authn.go \
	'if v.ok && !out.Until.IsZero() && !s.now().Before(out.Until) {' \
	'if v.ok && !hit && !out.Until.IsZero() && !s.now().Before(out.Until) {'
mutant token-verdict-kept-after-revoke internal/tokens/file.go \
	't.stamp = t.Digest + "|" + t.Expires.Format(time.RFC3339) + "|" + t.Revoked.Format(time.RFC3339) + "|" + t.scopes.String()' \
	't.stamp = t.Digest + "|" + t.Expires.Format(time.RFC3339) + "|" + t.scopes.String()'
mutant token-revoked-accepted internal/tokens/authenticator.go \
	'case !t.Revoked.IsZero():' \
	'case false:'
mutant token-secret-unchecked internal/tokens/authenticator.go \
	'case !match:' \
	'case !match && t == nil:'
mutant token-name-for-a-person internal/htpasswd/name.go \
	'if strings.HasPrefix(name, TokenPrefix) {' \
	'if false {'
mutant token-line-in-htpasswd-loads load.go \
	'if tokens.IsLogin(name) {' \
	'if false {'
mutant token-broken-entry-loads internal/tokens/file.go \
	'	if len(errs) > 0 {
		name := ""' \
	'	if false {
		name := ""'

check_only=0
if [[ ${1:-} == --check ]]; then
	check_only=1
	shift
fi
# Keep only the mutants named on the command line, if any.
selected=()
for i in "${!names[@]}"; do
	keep=$(( $# == 0 ))
	for want in "$@"; do [[ ${names[i]} == *"$want"* ]] && keep=1; done
	(( keep )) && selected+=("$i")
done
if (( ${#selected[@]} == 0 )); then
	echo "mutants.sh: no mutant matches $*" >&2
	exit 2
fi

scratch="$(mktemp -d)"
trap 'rm -rf "$scratch"' EXIT
# What go test sees in the working tree: the tracked files as they are now, and new files git
# does not ignore. --ignore-failed-read skips a tracked file deleted there (the unchanged run
# below tells if that matters).
git -C "$root" ls-files -z --cached --others --exclude-standard |
	tar -C "$root" --null --ignore-failed-read -T - -cf - 2>/dev/null | tar -C "$scratch" -xf -
cd "$scratch"

# read_file FILE: the file's exact content, final newlines included, in $content.
read_file() { content="$(cat -- "$1"; printf x)"; content="${content%x}"; }

# occurrences TEXT PART: how many times PART occurs in TEXT.
occurrences() {
	local rest="${1//"$2"/}"
	echo $(( (${#1} - ${#rest}) / ${#2} ))
}

# Every mutant must still match before any test runs, so that the list cannot rot silently.
broken=0
for i in "${selected[@]}"; do
	if [[ ! -f ${files[i]} ]]; then
		echo "mutants.sh: ${names[i]}: ${files[i]} does not exist" >&2
		broken=1
		continue
	fi
	read_file "${files[i]}"
	if n=$(occurrences "$content" "${olds[i]}") && (( n != 1 )); then
		printf 'mutants.sh: %s: found %d times in %s, want exactly once:\n\t%s\n' "${names[i]}" "$n" "${files[i]}" "${olds[i]}" >&2
		broken=1
	fi
done
(( broken == 0 )) || { echo "mutants.sh: fix the list above to match the code" >&2; exit 2; }
if (( check_only )); then
	echo "mutants: the text of all ${#selected[@]} is in its file exactly once"
	exit 0
fi

# run_tests LOG: the module's unit tests, with their output in LOG; the status is go test's.
run_tests() { go test -count=1 -failfast -timeout "$timeout" ./... >"$1" 2>&1; }

echo "unchanged copy: running the tests"
if ! run_tests "$scratch/.baseline.log"; then
	tail -n 30 "$scratch/.baseline.log" >&2
	echo "mutants.sh: the tests fail without any mutant: nothing below would mean anything" >&2
	exit 2
fi

caught=0 survived=0
for i in "${selected[@]}"; do
	name="${names[i]}" file="${files[i]}"
	log="$scratch/.$name.log"
	cp -p -- "$file" "$scratch/.original"
	read_file "$file"
	printf '%s' "${content/"${olds[i]}"/"${news[i]}"}" >"$file"
	start=$SECONDS
	if ! go vet . >"$log" 2>&1; then
		broken=$((broken + 1))
		printf 'BROKEN   %-32s %-12s %3ds  does not build or vet: fix its text\n' "$name" "$file" $((SECONDS - start))
		sed 's/^/\t/' "$log" >&2
	elif run_tests "$log"; then
		survived=$((survived + 1))
		printf 'SURVIVED %-32s %-12s %3ds  no test failed\n' "$name" "$file" $((SECONDS - start))
	else
		caught=$((caught + 1))
		by="$(grep -oE -- '--- FAIL: [^ ]+' "$log" | cut -d' ' -f3 | head -n 3 | paste -sd' ' -)"
		grep -q 'panic: test timed out' "$log" && by="timeout $timeout ${by}"
		printf 'caught   %-32s %-12s %3ds  %s\n' "$name" "$file" $((SECONDS - start)) "${by:-see go test output}"
	fi
	mv -- "$scratch/.original" "$file"
done

echo "mutants: $caught caught, $survived survived, $broken broken, of ${#selected[@]}"
(( broken == 0 )) || exit 2
(( survived == 0 ))
