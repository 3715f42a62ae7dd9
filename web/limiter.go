package web

import (
	"sync"
	"time"
)

// Limiter allows one event per key per window, in bounded memory: when full it sweeps the
// expired entries (at most once a second); if it is still full it refuses rather than
// grow. The proxy limits reactive refreshes with it, the agent explicit ones.
type Limiter struct {
	mu        sync.Mutex
	window    time.Duration
	max       int
	last      map[string]time.Time
	lastSweep time.Time
}

// NewLimiter returns a Limiter of one event per key per window, holding at most
// maxEntries keys.
func NewLimiter(window time.Duration, maxEntries int) *Limiter {
	return &Limiter{window: window, max: maxEntries, last: make(map[string]time.Time)}
}

// Allow reports whether key may have an event at now, and if so records it.
func (l *Limiter) Allow(key string, now time.Time) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	if t, ok := l.last[key]; ok && now.Sub(t) < l.window && !now.Before(t) {
		return false
	}
	if _, ok := l.last[key]; !ok && len(l.last) >= l.max {
		if now.Sub(l.lastSweep) < time.Second {
			return false
		}
		l.lastSweep = now
		for k, t := range l.last {
			if now.Sub(t) >= l.window {
				delete(l.last, k)
			}
		}
		if len(l.last) >= l.max {
			return false
		}
	}
	l.last[key] = now
	return true
}
