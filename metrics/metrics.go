// Package metrics owns tokenhandler's operational signals: the Prometheus metrics served
// on the admin listener's /metrics, and the per-request JSON log line with its request id.
//
// It knows nothing of OAuth or sessions: the packages that do the work report to it
// through small methods (Login, Refresh, Upstream, Request, RedisError) and an
// http.RoundTripper that counts token-endpoint calls. It never sees a token, a cookie or
// a query string, so nothing it records or logs can leak one.
//
// A nil *Metrics is valid and records nothing, so wiring can be optional.
package metrics

import (
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

const namespace = "tokenhandler"

// Metrics holds tokenhandler's collectors in a registry of its own (never the global
// one, so two instances in one test binary do not collide).
type Metrics struct {
	reg           *prometheus.Registry
	requests      *prometheus.CounterVec
	upstream      *prometheus.HistogramVec
	upstreamResps *prometheus.CounterVec
	refreshes     *prometheus.CounterVec
	refreshDur    *prometheus.HistogramVec
	renewals      *prometheus.CounterVec
	refusals      *prometheus.CounterVec
	tokenEndpoint *prometheus.CounterVec
	logins        *prometheus.CounterVec
	redisErrors   *prometheus.CounterVec
	derivations   *prometheus.CounterVec
	derivedCache  *prometheus.CounterVec

	// routes holds each route label's series once resolved (*routeSeries): a request
	// then costs no label hashing, no registry lock and no status string.
	routes sync.Map
}

// routeSeries are the per-request series of one route label: the upstream histogram's
// child, and the {route, status} counters' children by status, each made on first use
// (a series appears when it is first counted, as with WithLabelValues).
type routeSeries struct {
	upstream      prometheus.Observer
	requests      statusCounters
	upstreamResps statusCounters
}

// statusCounters are the children of one route in a {route, status} counter: one slot per
// status 100-599 and one for "error".
type statusCounters struct {
	vec   *prometheus.CounterVec
	route string
	slots [501]atomic.Pointer[counterChild]
}

type counterChild struct{ prometheus.Counter }

func (s *statusCounters) inc(status int) {
	i := len(s.slots) - 1 // "error"
	if status >= 100 && status <= 599 {
		i = status - 100
	}
	c := s.slots[i].Load()
	if c == nil {
		// Two requests may both get here: WithLabelValues gives both the same child.
		c = &counterChild{s.vec.WithLabelValues(s.route, statusLabel(status))}
		s.slots[i].Store(c)
	}
	c.Inc()
}

// series returns route's series, resolving them on its first request.
func (m *Metrics) series(route string) *routeSeries {
	if rs, ok := m.routes.Load(route); ok {
		return rs.(*routeSeries)
	}
	rs := &routeSeries{
		upstream:      m.upstream.WithLabelValues(route),
		requests:      statusCounters{vec: m.requests, route: route},
		upstreamResps: statusCounters{vec: m.upstreamResps, route: route},
	}
	got, _ := m.routes.LoadOrStore(route, rs)
	return got.(*routeSeries)
}

// New returns Metrics registered in a fresh registry that also carries the Go runtime
// and process collectors.
func New() *Metrics {
	m := &Metrics{
		reg: prometheus.NewRegistry(),
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: namespace,
			Name:      "http_requests_total",
			Help:      "Requests answered on the public listener, by route (a configured route prefix, auth, static or other) and status code.",
		}, []string{"route", "status"}),
		upstream: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Namespace: namespace,
			Name:      "upstream_duration_seconds",
			Help:      "Time from sending a proxied request upstream until its response headers arrived (or the attempt failed), by route.",
			Buckets:   prometheus.DefBuckets,
		}, []string{"route"}),
		upstreamResps: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: namespace,
			Name:      "upstream_responses_total",
			Help:      "Upstream answers by route and status code; status \"error\" means no answer (connection error or timeout).",
		}, []string{"route", "status"}),
		refreshes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: namespace,
			Name:      "refreshes_total",
			Help:      "Access-token refreshes by outcome.",
		}, []string{"outcome"}),
		refreshDur: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Namespace: namespace,
			Name:      "refresh_duration_seconds",
			Help:      "Time a refresh took for its caller, by outcome.",
			Buckets:   prometheus.DefBuckets,
		}, []string{"outcome"}),
		renewals: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: namespace,
			Name:      "request_refreshes_total",
			Help:      "Refreshes that proxied requests needed, by trigger (proactive, reactive) and outcome. Unlike refreshes_total (token-endpoint calls), this counts every request that waited for one, joined flights and grace entries included.",
		}, []string{"trigger", "outcome"}),
		refusals: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: namespace,
			Name:      "proxy_refusals_total",
			Help:      "Error answers the proxy wrote itself, by status and error code (upstream failures included).",
		}, []string{"status", "code"}),
		tokenEndpoint: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: namespace,
			Name:      "token_endpoint_requests_total",
			Help:      "Calls to the provider's token endpoint by grant_type and status code; status \"error\" means no answer.",
		}, []string{"grant_type", "status"}),
		logins: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: namespace,
			Name:      "logins_total",
			Help:      "Logins by outcome: started, success, or the auth_error code of a failed callback.",
		}, []string{"outcome"}),
		redisErrors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: namespace,
			Name:      "redis_errors_total",
			Help:      "Failed Redis operations by operation.",
		}, []string{"op"}),
	}
	m.derivations = prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: namespace,
		Name:      "derivations_total",
		Help:      "Requests to routes with a token policy that needed a derived token (cache misses), by route and outcome (success, token_unavailable, session_expired, idp_unavailable). Joined flights count too.",
	}, []string{"route", "outcome"})
	m.derivedCache = prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: namespace,
		Name:      "derived_token_cache_total",
		Help:      "Lookups of routes' derived tokens, by route and result (hit, miss).",
	}, []string{"route", "result"})
	m.reg.MustRegister(m.derivations, m.derivedCache)
	m.reg.MustRegister(
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		m.requests, m.upstream, m.upstreamResps, m.refreshes, m.refreshDur, m.renewals, m.refusals,
		m.tokenEndpoint, m.logins, m.redisErrors,
	)
	// Series a dashboard or a test compares before and after exist from the start, at 0.
	m.refreshes.WithLabelValues("success")
	m.logins.WithLabelValues("success")
	return m
}

// Handler serves the registry in the Prometheus exposition format, for /metrics.
func (m *Metrics) Handler() http.Handler {
	if m == nil {
		return http.NotFoundHandler()
	}
	return promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{Registry: m.reg})
}

// Gatherer exposes the registry, for tests and for pushing.
func (m *Metrics) Gatherer() prometheus.Gatherer { return m.reg }

// Login counts a login by outcome. Together with Refresh it satisfies
// oauthagent.Observer.
func (m *Metrics) Login(outcome string) {
	if m == nil {
		return
	}
	m.logins.WithLabelValues(outcome).Inc()
}

// Refresh counts a refresh by outcome and records how long it took.
func (m *Metrics) Refresh(outcome string, d time.Duration) {
	if m == nil {
		return
	}
	m.refreshes.WithLabelValues(outcome).Inc()
	m.refreshDur.WithLabelValues(outcome).Observe(d.Seconds())
}

// RequestRefresh counts a refresh a proxied request needed, by trigger and outcome
// (proxy.Options.OnRefresh).
func (m *Metrics) RequestRefresh(trigger, outcome string, _ time.Duration) {
	if m == nil {
		return
	}
	m.renewals.WithLabelValues(trigger, outcome).Inc()
}

// ProxyRefusal counts an error answer the proxy wrote itself (proxy.Options.OnError).
func (m *Metrics) ProxyRefusal(status int, code string) {
	if m == nil {
		return
	}
	m.refusals.WithLabelValues(statusLabel(status), code).Inc()
}

// Upstream records one attempt to reach route's upstream: its latency until the response
// headers arrived and its status; status 0 means no response (connection error, timeout).
func (m *Metrics) Upstream(route string, status int, d time.Duration) {
	if m == nil {
		return
	}
	rs := m.series(route)
	rs.upstream.Observe(d.Seconds())
	rs.upstreamResps.inc(status)
}

// Request counts one answered request. route must come from a bounded set (a configured
// route prefix, "auth", "static", "other"), never from the raw path.
func (m *Metrics) Request(route string, status int) {
	if m == nil {
		return
	}
	m.series(route).requests.inc(status)
}

// RedisError counts a failed Redis operation (op: "get", "set", "lock", ...).
func (m *Metrics) RedisError(op string) {
	if m == nil {
		return
	}
	m.redisErrors.WithLabelValues(op).Inc()
}

// statusLabel keeps the status label bounded: a valid code as digits, anything else
// "error".
func statusLabel(status int) string {
	if status < 100 || status > 599 {
		return "error"
	}
	return strconv.Itoa(status)
}
