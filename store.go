package main

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/binary"
	"hash"
	"log/slog"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/registry-auth/registry-auth/internal/authn"
	"github.com/registry-auth/registry-auth/internal/htpasswd"
	"github.com/registry-auth/registry-auth/internal/policy"
	"github.com/registry-auth/registry-auth/internal/tokens"
)

// snapshot is one consistent view of every source (htpasswd, groups, policy): a request
// never sees a new policy with old groups. It is immutable once stored. The verdicts of
// password checks live in the store, not here, so that they outlive a reload: see
// store.verify.
type snapshot struct {
	users      map[string]htpasswd.Entry
	groups     map[string]map[string]bool // groupKey -> members
	userGroups map[string][]string        // user -> group keys, for identities
	policy     *policy.Policy
	dummyHash  string // compared against for unknown users, so they cost what known ones do
	dummyCost  int    // the bcrypt cost dummyHash must have: the file's typical cost
	contentSum string // sha256 over every source, to skip reloads that change nothing
	files      []fileSum
	tokens     tokens.Authenticator // also among authenticators; for the metrics and explain
	// authenticators are asked in order after the cache (authn.go): the loader puts the
	// file-backed ones (the htpasswd file's users), the store adds its backends after them;
	// none claiming a user means unknown, decided by unknown, which the store adds too.
	authenticators []authn.Authenticator
	unknown        authn.Authenticator
}

// fileSum is the SHA-256 of one source as loaded, for /readyz.
type fileSum struct{ role, sum string }

// inGroup reports whether user is a member of group. Group names compare without regard to
// case, as in Apache (mod_authz_groupfile keeps them in a case-insensitive apr_table); user
// names compare exactly.
func (s *snapshot) inGroup(user, group string) bool {
	return s.groups[policy.GroupKey(group)][user]
}

// groupSize is the number of members of group.
func (s *snapshot) groupSize(group string) int {
	return len(s.groups[policy.GroupKey(group)])
}

// groupUsers is the number of members of group who can log in: those the htpasswd file has,
// or every member when a directory decides for the users the file lacks.
func (s *snapshot) groupUsers(group string, directory bool) int {
	if directory {
		return s.groupSize(group)
	}
	n := 0
	for member := range s.groups[policy.GroupKey(group)] {
		if _, ok := s.users[member]; ok {
			n++
		}
	}
	return n
}

// identityOf is the identity of an authenticated user: the groups file's groups, never
// cached, so that a group edit is in force at once (for directory users too), and the groups
// its source itself gives it (a directory's).
func (s *snapshot) identityOf(user string, sourceGroups ...string) policy.Identity {
	id := policy.Identity{User: user, Groups: s.userGroups[user]}
	if len(sourceGroups) > 0 {
		id.Groups = append(slices.Clip(id.Groups), sourceGroups...)
	}
	return id
}

// store holds the current snapshot and reloads it. Requests call snapshot, which loads an
// atomic pointer; reload is serialised by a mutex that never sits on the request path.
type store struct {
	sources   sources
	cacheTTL  time.Duration
	cacheSize int
	logger    *slog.Logger
	metrics   *metrics
	cacheKey  []byte    // per-process HMAC key: cache keys never hold a password
	macs      sync.Pool // of *keyHasher: HMACs keyed with cacheKey, reused on the hot path
	// backends are the long-lived sources of users asked after each snapshot's file-backed
	// ones, in order (a directory); reload adds them to each snapshot.
	backends []authn.Authenticator
	// budget bounds the hashes of every snapshot's file and dummy hash.
	budget *hashBudget
	// cache holds the verdicts of every snapshot: one cache for the process, so a reload can
	// neither drop the verdicts of unchanged users nor grow it past cacheSize.
	cache *verifyCache
	// throttle counts failed verifications; verify asks it before an authenticator runs.
	throttle *throttle
	// now is the clock verify holds a credential's expiry against (a test's own clock).
	now func() time.Time

	current atomic.Pointer[snapshot]
	// draining: the service is stopping (--shutdown-delay); /readyz answers 503.
	draining atomic.Bool

	mu          sync.Mutex // serialises reloads
	lastFailure string     // last failure logged, so a poll does not repeat it every tick
}

func newStore(c config, logger *slog.Logger, m *metrics) *store {
	key := make([]byte, 32)
	rand.Read(key) // never fails (crypto/rand panics rather than return an error since Go 1.24)
	st := &store{
		sources:   c.files,
		cacheTTL:  c.cacheTTL,
		cacheSize: c.cacheSize,
		logger:    logger,
		metrics:   m,
		cacheKey:  key,
		cache:     newVerifyCache(c.cacheTTL, c.cacheSize),
		throttle:  newThrottle(c.throttle),
		now:       time.Now,
		// One budget for every hash the process computes: the file's and the dummy's.
		budget: newHashBudget(c.hashBudget, m),
	}
	// The tokens' states are counted from the current snapshot when scraped.
	m.registry.MustRegister(newTokenStates(st))
	return st
}

// snapshot returns the current snapshot, nil before the first good load.
func (s *store) snapshot() *snapshot { return s.current.Load() }

// reload reads every source and swaps in a new snapshot if they are good and changed. On
// failure the previous snapshot stays. reason says what triggered it, for the log.
func (s *store) reload(reason string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if reason == "signal" {
		// SIGHUP forgets the directory's verdicts even when no file changed.
		for _, a := range s.backends {
			if f, ok := a.(authn.Forgetter); ok {
				f.Forget()
			}
		}
	}
	old := s.current.Load()
	set, err := s.sources.read()
	if err == nil && old != nil && set.sum == old.contentSum {
		if s.lastFailure != "" {
			// The last line logged was a failure: say that it is over, or it would stand.
			s.logger.Info("reload recovered: the files are back to the content in force", "trigger", reason, "sha256", set.sum)
		}
		s.lastFailure = "" // back to the loaded content: a new failure is news again
		if reason == "signal" {
			// An operator's SIGHUP deserves an answer; an event or a poll tick does not.
			s.logger.Info("reload found no change", "trigger", reason, "sha256", set.sum)
		}
		return nil
	}
	var res loadResult
	if err == nil {
		res, err = buildSnapshot(set, s.sources)
	}
	if err != nil {
		// The same failure seen again (every poll tick while a file stays broken) is
		// neither logged nor counted again.
		if msg := err.Error(); msg != s.lastFailure {
			s.lastFailure = msg
			s.metrics.reloads.WithLabelValues("failure").Inc()
			if old == nil {
				s.logger.Error("cannot load the files", "trigger", reason, "error", err)
			} else {
				s.logger.Error("reload failed; keeping the previous users, groups and policy", "trigger", reason, "error", err)
			}
		}
		return err
	}
	s.lastFailure = ""
	snap := res.snap
	if old != nil && old.dummyCost == snap.dummyCost {
		snap.dummyHash = old.dummyHash // keep reloads cheap when the typical cost is unchanged
	} else if snap.dummyHash, err = newDummyHash(snap.dummyCost); err != nil {
		return err
	}
	// After the files: a user a file knows is decided by it alone (AuthBasicProvider file ldap).
	snap.authenticators = append(slices.Clip(snap.authenticators), s.backends...)
	snap.unknown = unknownUsers{snap.dummyHash}
	for _, p := range res.problems {
		attrs := []any{"file", p.File, "severity", p.Severity.String(), "problem", p.Message}
		if p.Line > 0 {
			attrs = append(attrs, "line", p.Line) // a problem of the whole file has none
		}
		s.logger.Warn("file problem", attrs...)
	}
	s.current.Store(snap)
	s.metrics.reloads.WithLabelValues("success").Inc()
	s.metrics.lastReload.SetToCurrentTime()
	s.metrics.loadedFiles.Reset()
	for _, f := range snap.files {
		s.metrics.loadedFiles.WithLabelValues(f.role, f.sum).Set(1)
	}
	s.metrics.users.Set(float64(len(snap.users)))
	s.metrics.groups.Set(float64(len(snap.groups)))
	attrs := []any{"trigger", reason, "users", len(snap.users), "groups", len(snap.groups)}
	if s.sources.tokens != "" {
		counts := snap.tokens.Counts(s.now())
		attrs = append(attrs, "tokens", counts[tokens.Active]+counts[tokens.Expiring])
	}
	if snap.policy.File() == "" {
		pushers := snap.groupUsers(s.sources.pushGroup, s.sources.directory)
		s.metrics.pushGroupMembers.Set(float64(pushers))
		attrs = append(attrs, "push_group", s.sources.pushGroup, "push_group_members", pushers)
	} else {
		attrs = append(attrs, "policy", snap.policy.File(), "rules", snap.policy.Len())
	}
	s.logger.Info("loaded", append(attrs, "sha256", snap.contentSum)...)
	return nil
}

// credentialKey is the cache key of a client, user, password and stored hash: an HMAC with a
// per-process key, so the cache never holds anything a password can be recovered from
// cheaply, and a changed hash never matches an old verdict. The client is part of the key so
// that a verdict helps only the address that earned it: a success cached for the real user
// must not let a throttled attacker confirm the right password without running a hash.
func (s *store) credentialKey(c authn.Credential, storedHash string) cacheKey {
	h, _ := s.macs.Get().(*keyHasher)
	if h == nil {
		h = &keyHasher{mac: hmac.New(sha256.New, s.cacheKey)}
	}
	defer s.macs.Put(h)
	// Each part with its length first, gathered in one buffer for one Write: a string converted
	// to bytes for Write escapes through the hash.Hash interface and allocates, while these
	// conversions only feed append.
	h.buf = h.buf[:0]
	for _, part := range [][]byte{[]byte(c.Client), []byte(c.User), c.Password, []byte(storedHash)} {
		h.buf = binary.BigEndian.AppendUint32(h.buf, uint32(len(part)))
		h.buf = append(h.buf, part...)
	}
	h.mac.Reset()
	h.mac.Write(h.buf)
	var k cacheKey
	h.mac.Sum(k[:0])
	clear(h.buf) // the password must not linger in the pool
	return k
}

// keyHasher is an HMAC for credentialKey with the buffer its input is gathered in.
type keyHasher struct {
	mac hash.Hash
	buf []byte
}

// verification is the outcome of checking one credential.
type verification struct {
	ok       bool
	known    bool // a source knows the user
	cacheHit bool
	id       policy.Identity // who the credential proves, when ok
	reason   string          // why refused, when known does not say it
	// shadowed: the password proves a user of a later source (the directory) whose name, as
	// that source spells it, an earlier source (the htpasswd file) has; id.user is that name.
	shadowed bool
	// retryAfter is how long a throttled client should wait (with errThrottled).
	retryAfter time.Duration
}
