package main

import (
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
)

// metrics are the service's Prometheus collectors, registered on their own registry so that
// tests can run side by side.
type metrics struct {
	registry         *prometheus.Registry
	decisions        *prometheus.CounterVec
	verifyDuration   prometheus.Histogram
	cache            *prometheus.CounterVec
	cacheHits        prometheus.Counter // cache's "hit" child, resolved once: it is counted per request
	cacheMisses      prometheus.Counter
	throttled        prometheus.Counter
	reloads          *prometheus.CounterVec
	lastReload       prometheus.Gauge
	users            prometheus.Gauge
	groups           prometheus.Gauge
	pushGroupMembers prometheus.Gauge
	connections      prometheus.Counter
	hashSlots        prometheus.Gauge
	hashSlotsInUse   prometheus.Gauge
	hashWaits        *prometheus.CounterVec
	loadedFiles      *prometheus.GaugeVec
}

func newMetrics() *metrics {
	m := &metrics{
		registry: prometheus.NewRegistry(),
		decisions: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "registry_auth_decisions_total",
			Help: "Decisions of /auth by result (allowed, unauthorized, denied, throttled, bad_request) and reason.",
		}, []string{"result", "reason"}),
		verifyDuration: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "registry_auth_verify_duration_seconds",
			Help:    "Time spent verifying a password on a cache miss (a hash, with any wait for a hashing slot, or a directory bind).",
			Buckets: []float64{0.0001, 0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5},
		}),
		cache: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "registry_auth_cache_requests_total",
			Help: "Credential checks answered from the verified-credential cache (hit) or by hashing (miss).",
		}, []string{"result"}),
		throttled: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "registry_auth_throttled_total",
			Help: "Requests answered 429 because their client address or user name had too many recent failures.",
		}),
		reloads: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "registry_auth_reloads_total",
			Help: "Loads of the htpasswd and groups files by result (success, failure).",
		}, []string{"result"}),
		lastReload: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "registry_auth_last_reload_success_timestamp_seconds",
			Help: "Unix time of the last load that swapped in new users and groups.",
		}),
		users: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "registry_auth_users",
			Help: "Users loaded from the htpasswd file.",
		}),
		groups: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "registry_auth_groups",
			Help: "Groups loaded from the groups file.",
		}),
		pushGroupMembers: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "registry_auth_push_group_members",
			Help: "Members of the push group.",
		}),
		connections: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "registry_auth_connections_accepted_total",
			Help: "TCP connections accepted by the listener (over plain HTTP Traefik opens about one per request under load; over HTTP/2 a handful).",
		}),
		hashSlots: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "registry_auth_hash_slots",
			Help: "Password hashes that may be computed at once (--hash-concurrency).",
		}),
		hashSlotsInUse: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "registry_auth_hash_slots_in_use",
			Help: "Password hashes being computed now.",
		}),
		hashWaits: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "registry_auth_hash_waits_total",
			Help: "Uncached logins that waited for a hashing slot, by how the wait ended: granted, timeout (answered 503) or canceled (the request ended).",
		}, []string{"result"}),
	}
	m.loadedFiles = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "registry_auth_loaded_file_info",
		Help: "1 for each file in force, by role (htpasswd, groups, policy) and the SHA-256 of its content, as /readyz shows them: replicas that disagree have loaded different files.",
	}, []string{"role", "sha256"})
	buildInfo := prometheus.NewGauge(prometheus.GaugeOpts{
		Name:        "registry_auth_build_info",
		Help:        "1, with the version of the running binary as a label.",
		ConstLabels: prometheus.Labels{"version": version},
	})
	buildInfo.Set(1)
	for _, result := range []string{"granted", "timeout", "canceled"} {
		m.hashWaits.WithLabelValues(result)
	}
	m.cacheHits = m.cache.WithLabelValues("hit")
	m.cacheMisses = m.cache.WithLabelValues("miss")
	m.reloads.WithLabelValues("success")
	m.reloads.WithLabelValues("failure")
	m.registry.MustRegister(
		m.decisions, m.verifyDuration, m.cache, m.throttled, m.reloads, m.lastReload,
		m.users, m.groups, m.pushGroupMembers, m.connections, m.hashSlots, m.hashSlotsInUse, m.hashWaits,
		m.loadedFiles, buildInfo,
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
	)
	return m
}

// tokenStates is registry_auth_tokens: the tokens of the current snapshot in each state,
// counted when scraped, so that a token that expires between two loads counts as expired at
// once.
type tokenStates struct {
	desc  *prometheus.Desc
	store *store
}

func newTokenStates(st *store) tokenStates {
	return tokenStates{store: st, desc: prometheus.NewDesc("registry_auth_tokens",
		"Robot tokens of the tokens file by state: active (more than 7 days left, or no expiry), expiring (7 days or less left), expired, revoked.",
		[]string{"state"}, nil)}
}

func (c tokenStates) Describe(ch chan<- *prometheus.Desc) { ch <- c.desc }

func (c tokenStates) Collect(ch chan<- prometheus.Metric) {
	snap := c.store.snapshot()
	if snap == nil {
		return
	}
	for state, n := range snap.tokens.Counts(c.store.now()) {
		ch <- prometheus.MustNewConstMetric(c.desc, prometheus.GaugeValue, float64(n), string(state))
	}
}
