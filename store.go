package main

import (
	"bytes"
	"cmp"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"hash"
	"io"
	"log/slog"
	"os"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/crypto/bcrypt"
)

// snapshot is one consistent view of the htpasswd and groups files. It is immutable once
// stored, except for its cache, which is safe for concurrent use and dies with it: a swap
// drops every remembered verdict, so a removed user or changed password takes effect at once.
type snapshot struct {
	users      map[string]htpasswdEntry
	groups     map[string]map[string]bool
	dummyHash  string // compared against for unknown users, so they cost what known ones do
	dummyCost  int    // the bcrypt cost dummyHash must have: the file's typical cost
	contentSum string // sha256 of both files, to skip reloads that change nothing
	cache      *verifyCache
}

// inGroup reports whether user is a member of group. Group names compare without regard to
// case, as in Apache (mod_authz_groupfile keeps them in a case-insensitive apr_table); user
// names compare exactly.
func (s *snapshot) inGroup(user, group string) bool {
	return s.groups[strings.ToLower(group)][user]
}

// groupSize is the number of members of group.
func (s *snapshot) groupSize(group string) int {
	return len(s.groups[strings.ToLower(group)])
}

// foldGroupNames merges groups whose names differ only in case, keyed by the lower-case name.
func foldGroupNames(members map[string]map[string]bool) map[string]map[string]bool {
	folded := make(map[string]map[string]bool, len(members))
	for group, users := range members {
		key := strings.ToLower(group)
		if folded[key] == nil {
			folded[key] = make(map[string]bool, len(users))
		}
		for u := range users {
			folded[key][u] = true
		}
	}
	return folded
}

// loadResult is what one read of the files found, good or bad.
type loadResult struct {
	snap     *snapshot
	problems []lineProblem // for the log and `check`
}

// store holds the current snapshot and reloads it. Requests call snapshot, which loads an
// atomic pointer; reload is serialised by a mutex that never sits on the request path.
type store struct {
	htpasswdPath string
	groupsPath   string
	pushGroup    string
	cacheTTL     time.Duration
	cacheSize    int
	logger       *slog.Logger
	metrics      *metrics
	cacheKey     []byte    // per-process HMAC key: cache keys never hold a password
	macs         sync.Pool // of hash.Hash: HMACs keyed with cacheKey, reused on the hot path

	current atomic.Pointer[snapshot]

	mu          sync.Mutex // serialises reloads
	lastFailure string     // last failure logged, so a poll does not repeat it every tick
}

func newStore(c config, logger *slog.Logger, m *metrics) *store {
	key := make([]byte, 32)
	rand.Read(key) // never fails (crypto/rand panics rather than return an error since Go 1.24)
	return &store{
		htpasswdPath: c.htpasswdPath,
		groupsPath:   c.groupsPath,
		pushGroup:    c.pushGroup,
		cacheTTL:     c.cacheTTL,
		cacheSize:    c.cacheSize,
		logger:       logger,
		metrics:      m,
		cacheKey:     key,
	}
}

// snapshot returns the current snapshot, nil before the first good load.
func (s *store) snapshot() *snapshot { return s.current.Load() }

// reload reads both files and swaps in a new snapshot if they are good and changed. On
// failure the previous snapshot stays. reason says what triggered it, for the log.
func (s *store) reload(reason string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	old := s.current.Load()
	htpasswdData, groupsData, sum, err := s.readFiles()
	if err == nil && old != nil && sum == old.contentSum {
		s.lastFailure = "" // back to the loaded content: a new failure is news again
		if reason == "signal" {
			// An operator's SIGHUP deserves an answer; an event or a poll tick does not.
			s.logger.Info("reload found no change", "trigger", reason, "sha256", sum)
		}
		return nil
	}
	var res loadResult
	if err == nil {
		res, err = buildSnapshot(htpasswdData, groupsData, s.htpasswdPath, s.groupsPath, s.pushGroup)
	}
	if err != nil {
		// The same failure seen again (every poll tick while a file stays broken) is
		// neither logged nor counted again.
		if msg := err.Error(); msg != s.lastFailure {
			s.lastFailure = msg
			s.metrics.reloads.WithLabelValues("failure").Inc()
			if old == nil {
				s.logger.Error("cannot load the users and groups", "trigger", reason, "error", err)
			} else {
				s.logger.Error("reload failed; keeping the previous users and groups", "trigger", reason, "error", err)
			}
		}
		return err
	}
	s.lastFailure = ""
	snap := res.snap
	snap.contentSum = sum
	if old != nil && old.dummyCost == snap.dummyCost {
		snap.dummyHash = old.dummyHash // keep reloads cheap when the typical cost is unchanged
	} else if snap.dummyHash, err = newDummyHash(snap.dummyCost); err != nil {
		return err
	}
	snap.cache = newVerifyCache(s.cacheTTL, s.cacheSize)
	for _, p := range res.problems {
		s.logger.Warn("file problem", "file", p.file, "line", p.line, "severity", p.severity.String(), "problem", p.message)
	}
	s.current.Store(snap)
	s.metrics.reloads.WithLabelValues("success").Inc()
	s.metrics.lastReload.SetToCurrentTime()
	s.metrics.users.Set(float64(len(snap.users)))
	s.metrics.groups.Set(float64(len(snap.groups)))
	pushers := snap.groupSize(s.pushGroup)
	s.metrics.pushGroupMembers.Set(float64(pushers))
	s.logger.Info("loaded users and groups",
		"trigger", reason,
		"users", len(snap.users),
		"groups", len(snap.groups),
		"push_group", s.pushGroup,
		"push_group_members", pushers,
		"sha256", sum)
	return nil
}

// readFiles reads both files whole (so a parse sees one version of each) and hashes them.
func (s *store) readFiles() (htpasswdData, groupsData []byte, sum string, err error) {
	htpasswdData, err = os.ReadFile(s.htpasswdPath)
	if err != nil {
		return nil, nil, "", fmt.Errorf("reading the htpasswd file (check --htpasswd / REGISTRY_AUTH_HTPASSWD and that the service's user may read it): %w", err)
	}
	if s.groupsPath != "" {
		groupsData, err = os.ReadFile(s.groupsPath)
		if err != nil {
			return nil, nil, "", fmt.Errorf("reading the groups file (create it, or set --groups \"\" / REGISTRY_AUTH_GROUPS= to run without one, and then nobody can push): %w", err)
		}
	}
	h := sha256.New()
	binary.Write(h, binary.BigEndian, uint64(len(htpasswdData)))
	h.Write(htpasswdData)
	h.Write(groupsData)
	return htpasswdData, groupsData, hex.EncodeToString(h.Sum(nil)), nil
}

// buildSnapshot parses both files into a snapshot (without cache or content hash) and lists
// their problems. It is pure; the caller makes the dummy hash of cost dummyCost.
func buildSnapshot(htpasswdData, groupsData []byte, htpasswdName, groupsName, pushGroup string) (loadResult, error) {
	var res loadResult
	hf, err := parseHTPasswd(bytes.NewReader(htpasswdData))
	if err != nil {
		return res, fmt.Errorf("%s: %w", htpasswdName, err)
	}
	for _, p := range hf.problems {
		p.file = htpasswdName
		res.problems = append(res.problems, p)
	}
	if len(hf.users) == 0 {
		return res, fmt.Errorf("%s: no usable users: add one with `registry-auth hash USER >> %s`", htpasswdName, htpasswdName)
	}
	var gf groupsFile
	if groupsName != "" {
		gf, err = parseGroups(bytes.NewReader(groupsData))
		if err != nil {
			return res, fmt.Errorf("%s: %w", groupsName, err)
		}
		for _, p := range gf.problems {
			p.file = groupsName
			res.problems = append(res.problems, p)
		}
	}
	for _, group := range sortedKeys(gf.members) {
		for _, member := range sortedKeys(gf.members[group]) {
			if _, ok := hf.users[member]; !ok {
				res.problems = append(res.problems, lineProblem{file: groupsName, severity: severityWarning,
					message: fmt.Sprintf("member %q of group %q is not in %s", member, group, htpasswdName)})
			}
		}
	}
	res.snap = &snapshot{
		users:     hf.users,
		groups:    foldGroupNames(gf.members),
		dummyCost: typicalBcryptCost(hf.users),
	}
	if res.snap.groupSize(pushGroup) == 0 {
		res.problems = append(res.problems, lineProblem{file: cmp.Or(groupsName, "(no groups file)"), severity: severityWarning,
			message: fmt.Sprintf("the push group %q has no members: nobody can push", pushGroup)})
	}
	return res, nil
}

// typicalBcryptCost is the median bcrypt cost in users (10 when there is none), so that a
// failed lookup of an unknown user costs what a typical known user costs.
func typicalBcryptCost(users map[string]htpasswdEntry) int {
	var costs []int
	for _, e := range users {
		if e.kind == hashBcrypt {
			costs = append(costs, bcryptCost(e.hash))
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

// credential is what one request presents: the user and password of its Basic header, and
// the client address it came from.
type credential struct {
	client   string
	user     string
	password []byte
}

// credentialKey is the cache key of a client, user, password and stored hash: an HMAC with a
// per-process key, so the cache never holds anything a password can be recovered from
// cheaply, and a changed hash never matches an old verdict. The client is part of the key so
// that a verdict helps only the address that earned it: a success cached for the real user
// must not let a throttled attacker confirm the right password without running a hash.
func (s *store) credentialKey(c credential, storedHash string) cacheKey {
	m, _ := s.macs.Get().(hash.Hash)
	if m == nil {
		m = hmac.New(sha256.New, s.cacheKey)
	}
	defer func() { m.Reset(); s.macs.Put(m) }()
	var length [4]byte
	for _, part := range []string{c.client, c.user, string(c.password), storedHash} {
		binary.BigEndian.PutUint32(length[:], uint32(len(part)))
		m.Write(length[:])
		io.WriteString(m, part)
	}
	var k cacheKey
	m.Sum(k[:0])
	return k
}

// verification is the outcome of checking one credential.
type verification struct {
	ok       bool
	known    bool // the user exists in the htpasswd file
	cacheHit bool
}

// verify checks c against snap, through its cache. Unknown users are compared against the
// dummy hash, so they cost the same and are cached the same way. mayHash is asked before a
// hash is computed (not on a cache hit, which only the same client can have); when it returns
// false, verify returns errThrottled without hashing.
func (s *store) verify(snap *snapshot, c credential, mayHash func() bool) (verification, error) {
	entry, known := snap.users[c.user]
	hash := entry.hash
	if !known {
		hash = snap.dummyHash
	}
	compute := func() (bool, error) {
		if !mayHash() {
			return false, errThrottled
		}
		start := time.Now()
		ok, err := verifyPassword(hash, c.password)
		s.metrics.verifyDuration.Observe(time.Since(start).Seconds())
		return ok && known, err
	}
	ok, hit, err := snap.cache.get(s.credentialKey(c, hash), compute)
	if hit {
		s.metrics.cacheHits.Inc()
	} else {
		s.metrics.cacheMisses.Inc()
	}
	return verification{ok: ok, known: known, cacheHit: hit}, err
}
