package metrics

import "time"

// Derive records one request's route token (proxy.Options.OnDerive): a cache hit
// ("cached"), or a miss and the derivation's outcome.
func (m *Metrics) Derive(route, outcome string, _ time.Duration) {
	if m == nil {
		return
	}
	if outcome == "cached" {
		m.derivedCache.WithLabelValues(route, "hit").Inc()
		return
	}
	m.derivedCache.WithLabelValues(route, "miss").Inc()
	m.derivations.WithLabelValues(route, outcome).Inc()
}
