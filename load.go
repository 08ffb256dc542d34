package main

import (
	"bytes"
	"cmp"
	"crypto/rand"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"sort"
	"strings"

	"github.com/registry-auth/registry-auth/internal/authn"
	"github.com/registry-auth/registry-auth/internal/htpasswd"
	"github.com/registry-auth/registry-auth/internal/policy"
	"github.com/registry-auth/registry-auth/internal/tokens"

	"golang.org/x/crypto/bcrypt"
)

// sources are the files a snapshot is built from. serve, check and explain load them through
// loadSources, the one loader, so they cannot disagree; the watcher watches sources.paths().
type sources struct {
	htpasswd  string // required
	groups    string // "": no groups file
	policy    string // "": the built-in rule of pushGroup
	tokens    string // "": no robot tokens; a file that does not exist has none yet
	pushGroup string
	// directory: an LDAP directory decides for the users the htpasswd file lacks, so members
	// and user subjects the files do not know may be its users. directoryGroups: it also
	// gives groups (--ldap-group-base), so a group the files leave empty may have members.
	directory, directoryGroups bool
}

// Roles name the files in logs and on /readyz.
const (
	roleHTPasswd = "htpasswd"
	roleGroups   = "groups"
	rolePolicy   = "policy"
	roleTokens   = "tokens"
)

// loadedFile is one source as read.
type loadedFile struct {
	role, path string
	data       []byte
	sum        string // hex SHA-256 of data
	missing    bool   // an optional file (tokens) that does not exist: read as empty
}

// fileSet is every source as read, in the order of sources.list.
type fileSet struct {
	files []loadedFile
	sum   string // hex SHA-256 over all of them, to skip reloads that change nothing
}

func (fs fileSet) get(role string) loadedFile {
	for _, f := range fs.files {
		if f.role == role {
			return f
		}
	}
	return loadedFile{role: role}
}

// list is the configured sources with their roles.
func (s sources) list() []loadedFile {
	all := []loadedFile{{role: roleHTPasswd, path: s.htpasswd}, {role: roleGroups, path: s.groups}, {role: rolePolicy, path: s.policy}, {role: roleTokens, path: s.tokens}}
	var set []loadedFile
	for _, f := range all {
		if f.path != "" {
			set = append(set, f)
		}
	}
	return set
}

// paths are the files to watch.
func (s sources) paths() []string {
	var paths []string
	for _, f := range s.list() {
		paths = append(paths, f.path)
	}
	return paths
}

// fixHints say, per role, how to fix a file that cannot be read.
var fixHints = map[string]string{
	roleHTPasswd: "check --htpasswd / REGISTRY_AUTH_HTPASSWD and that the service's user may read it",
	roleGroups:   "create it, or set --groups \"\" / REGISTRY_AUTH_GROUPS= to run without one, and then nobody can push",
	rolePolicy:   "check --policy / REGISTRY_AUTH_POLICY and that the service's user may read it",
	roleTokens:   "check --tokens / REGISTRY_AUTH_TOKENS and that the service's user may read it",
}

// read reads every source whole (so a parse sees one version of each) and hashes them.
func (s sources) read() (fileSet, error) {
	var set fileSet
	all := sha256.New()
	for _, f := range s.list() {
		data, err := os.ReadFile(f.path)
		if errors.Is(err, fs.ErrNotExist) && f.role == roleTokens {
			// No token made yet: `token create` makes the file, and the watcher loads it.
			data, err, f.missing = nil, nil, true
		}
		if err != nil {
			return set, fmt.Errorf("reading the %s file (%s): %w", f.role, fixHints[f.role], err)
		}
		sum := sha256.Sum256(data)
		f.data, f.sum = data, hex.EncodeToString(sum[:])
		set.files = append(set.files, f)
		binary.Write(all, binary.BigEndian, uint64(len(data)))
		all.Write(data)
	}
	set.sum = hex.EncodeToString(all.Sum(nil))
	return set, nil
}

// loadResult is what one read of the files found, good or bad.
type loadResult struct {
	snap     *snapshot
	problems []htpasswd.Problem // for the log and `check`
}

// loadSources reads and parses every source: the one loader of serve, check and explain.
// The snapshot has no dummy hash yet; the store adds it.
func loadSources(s sources) (loadResult, error) {
	set, err := s.read()
	if err != nil {
		return loadResult{}, err
	}
	return buildSnapshot(set, s)
}

// buildSnapshot parses the files of set into a snapshot (without its dummy hash) and lists
// their problems. Of s it reads only what no file holds: the push group and what a
// directory supplies, which changes the warnings. It is pure.
func buildSnapshot(set fileSet, s sources) (loadResult, error) {
	var res loadResult
	pushGroup := s.pushGroup
	hfile, gfile, pfile, tfile := set.get(roleHTPasswd), set.get(roleGroups), set.get(rolePolicy), set.get(roleTokens)
	addProblems := func(file string, ps htpasswd.Problems) {
		for _, p := range ps {
			p.File = file
			res.problems = append(res.problems, p)
		}
	}
	hf, err := htpasswd.Parse(bytes.NewReader(hfile.data))
	if err != nil {
		return res, fmt.Errorf("%s: %w", hfile.path, err)
	}
	addProblems(hfile.path, hf.Problems)
	for name, e := range hf.Users {
		if tokens.IsLogin(name) {
			// A token's name is the tokens' alone: a person of that name would be taken for one.
			delete(hf.Users, name)
			res.problems = append(res.problems, htpasswd.Problem{File: hfile.path, Line: e.Line, Severity: htpasswd.Error,
				Message: fmt.Sprintf("user %q is skipped: names starting with %q are robot tokens' (registry-auth token create)", name, tokens.LoginPrefix)})
		}
	}
	// Without an htpasswd file (--htpasswd "" beside --ldap-url) every user is the directory's.
	if len(hf.Users) == 0 && hfile.path != "" {
		if len(hf.Problems) > 0 {
			// Name what was skipped: the user is likely there, on a line the service cannot use.
			var skipped []string
			for i, p := range hf.Problems {
				if i == maxNamedProblems {
					skipped = append(skipped, fmt.Sprintf("and %d more (registry-auth check lists them)", len(hf.Problems)-i))
					break
				}
				skipped = append(skipped, fmt.Sprintf("line %d: %s", p.Line, p.Message))
			}
			return res, fmt.Errorf("%s: no usable users; skipped %s: fix those lines, or add a user with `registry-auth user add --htpasswd %s USER`", hfile.path, strings.Join(skipped, "; "), hfile.path)
		}
		return res, fmt.Errorf("%s: no usable users: add one with `registry-auth user add --htpasswd %s USER`", hfile.path, hfile.path)
	}
	var gf htpasswd.GroupFile
	if gfile.path != "" {
		if gf, err = htpasswd.ParseGroups(bytes.NewReader(gfile.data)); err != nil {
			return res, fmt.Errorf("%s: %w", gfile.path, err)
		}
		addProblems(gfile.path, gf.Problems)
	}
	tf, err := loadTokens(tfile, &res)
	if err != nil {
		return res, err
	}
	ta := tokens.NewAuthenticator(tf)
	for _, group := range sortedKeys(gf.Members) {
		for _, member := range sortedKeys(gf.Members[group]) {
			line := gf.MemberLine[[2]string{group, member}]
			if tokens.IsLogin(member) {
				// A token is a member by its login name; the tokens file says if it exists.
				if name, _ := tokens.NameOf(member); ta.Token(name) == nil {
					res.problems = append(res.problems, htpasswd.Problem{File: gfile.path, Line: line, Severity: htpasswd.Warning,
						Message: fmt.Sprintf("member %q of group %q is no token of %s", member, group, cmp.Or(tfile.path, "the tokens file (--tokens is empty)"))})
				}
				continue
			}
			// With a directory, a member the file lacks may be a directory user: nothing to say.
			if _, ok := hf.Users[member]; !ok && hfile.path != "" && !s.directory {
				res.problems = append(res.problems, htpasswd.Problem{File: gfile.path, Line: line, Severity: htpasswd.Warning,
					Message: fmt.Sprintf("member %q of group %q is not in %s", member, group, hfile.path)})
			}
		}
	}
	snap := &snapshot{
		users:  hf.Users,
		tokens: ta,
		// The file-backed authenticators, in the order they are asked (README.md, "Robot
		// tokens", says why tokens come between the htpasswd file and a directory).
		authenticators: []authn.Authenticator{fileUsers{hf.Users}, ta},
		groups:         gf.ByKey(),
		dummyCost:      typicalBcryptCost(hf.Users),
		contentSum:     set.sum,
	}
	for _, f := range set.files {
		snap.files = append(snap.files, fileSum{role: f.role, sum: f.sum})
	}
	snap.userGroups = groupsByUser(snap.groups)
	if pfile.path == "" {
		snap.policy = policy.Builtin(pushGroup)
		if snap.groupSize(pushGroup) == 0 {
			msg := fmt.Sprintf("the push group %q has no members: nobody can push", pushGroup)
			if s.directoryGroups {
				msg = fmt.Sprintf("the push group %q has no members in the files: the directory's groups decide who may push (%s)", pushGroup, directoryGroupsHint)
			}
			res.problems = append(res.problems, htpasswd.Problem{File: cmp.Or(gfile.path, "(no groups file)"), Severity: htpasswd.Warning, Message: msg})
		}
	} else {
		p, warnings, err := policy.Parse(pfile.data, pfile.path)
		if err != nil {
			return res, err
		}
		for _, w := range warnings {
			res.problems = append(res.problems, htpasswd.Problem{File: pfile.path, Line: w.Line, Severity: htpasswd.Warning, Message: w.Message})
		}
		addProblems(pfile.path, policySubjectWarnings(p, snap, s, hfile.path, gfile.path))
		snap.policy = p
	}
	res.snap = snap
	return res, nil
}

// loadTokens parses the tokens file, nil when none is configured, and adds its problems to
// res.
func loadTokens(f loadedFile, res *loadResult) (*tokens.File, error) {
	if f.path == "" || f.missing {
		return nil, nil // no tokens: said by check and the "loaded" log line, not a problem
	}
	tf, err := tokens.Parse(f.data, f.path)
	if err != nil {
		return nil, err
	}
	res.problems = append(res.problems, tf.Problems...)
	return tf, nil
}

// maxNamedProblems bounds the skipped lines an error names.
const maxNamedProblems = 3

// directoryGroupsHint says where to see what the files cannot show.
const directoryGroupsHint = "`registry-auth check --ldap-test-user NAME` shows a user's directory groups"

// policySubjectWarnings names the subjects of p that no loaded file knows: without a
// directory such a rule grants nothing. A user the file lacks may be a directory user, so
// with a directory nothing is said of users; a group the files leave empty is named, with
// directory groups, as one the directory decides.
func policySubjectWarnings(p *policy.Policy, snap *snapshot, src sources, htpasswdName, groupsName string) htpasswd.Problems {
	var ps htpasswd.Problems
	seen := map[string]bool{}
	for _, n := range p.Names() {
		for _, u := range n.Users {
			if name, ok := tokens.NameOf(u); ok {
				if snap.tokens.Token(name) == nil && !seen["u"+u] {
					seen["u"+u] = true
					ps.Add(n.Line, htpasswd.Warning, "user %q is no token of %s", u, cmp.Or(src.tokens, "the tokens file (--tokens is empty)"))
				}
				continue
			}
			if _, ok := snap.users[u]; !ok && !seen["u"+u] && !src.directory {
				seen["u"+u] = true
				ps.Add(n.Line, htpasswd.Warning, "user %q is not in %s", u, htpasswdName)
			}
		}
		for _, name := range n.Groups {
			if snap.groupSize(name) == 0 && !seen["g"+name] {
				seen["g"+name] = true
				if src.directoryGroups {
					ps.Add(n.Line, htpasswd.Warning, "group %q has no members in %s: the directory's groups decide (%s)", name, cmp.Or(groupsName, "(no groups file)"), directoryGroupsHint)
				} else {
					ps.Add(n.Line, htpasswd.Warning, "group %q has no members in %s", name, cmp.Or(groupsName, "(no groups file)"))
				}
			}
		}
	}
	return ps
}

// groupsByUser inverts groups: each user's (lower-case) groups, sorted.
func groupsByUser(groups map[string]map[string]bool) map[string][]string {
	byUser := map[string][]string{}
	for _, g := range sortedKeys(groups) {
		for u := range groups[g] {
			byUser[u] = append(byUser[u], g)
		}
	}
	return byUser
}

// typicalBcryptCost is the median bcrypt cost in users (10 when there is none), so that a
// failed lookup of an unknown user costs what a typical known user costs.
func typicalBcryptCost(users map[string]htpasswd.Entry) int {
	var costs []int
	for _, e := range users {
		if e.Kind == htpasswd.Bcrypt {
			costs = append(costs, bcryptCost(e.Hash))
		}
	}
	if len(costs) == 0 {
		return bcrypt.DefaultCost
	}
	sort.Ints(costs)
	// Capped at htpasswd's maximum, so that one absurd entry cannot make every reload and
	// every unknown user's request take minutes.
	return min(costs[len(costs)/2], maxDummyCost)
}

// maxDummyCost is the highest cost `htpasswd -B -C` accepts.
const maxDummyCost = 17

func bcryptCost(hash string) int {
	c, err := bcrypt.Cost([]byte(hash))
	if err != nil {
		return bcrypt.DefaultCost
	}
	return c
}

// newDummyHash hashes a random password nobody knows at the given cost.
func newDummyHash(cost int) (string, error) {
	b := make([]byte, 24)
	rand.Read(b)
	h, err := bcrypt.GenerateFromPassword([]byte(hex.EncodeToString(b)), cost)
	if err != nil {
		return "", fmt.Errorf("making the dummy hash: %w", err)
	}
	return string(h), nil
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// tokensSummary says how many tokens the file at path has, in which state.
func tokensSummary(path string, missing bool, counts map[tokens.State]int) string {
	if missing {
		return fmt.Sprintf("tokens: %s does not exist yet: no token can log in until `registry-auth token create` makes it", path)
	}
	return fmt.Sprintf("tokens: %d in %s (%d active, %d expiring within 7 days, %d expired, %d revoked)", counts[tokens.Active]+counts[tokens.Expiring]+counts[tokens.Expired]+counts[tokens.Revoked], path,
		counts[tokens.Active], counts[tokens.Expiring], counts[tokens.Expired], counts[tokens.Revoked])
}
