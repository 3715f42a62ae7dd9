package proxy

import "sync"

// bearerCache remembers the Authorization value ("Bearer " + token) of the access tokens
// in use: a browser sends the same token with every request until it is refreshed, and
// building the value anew copies the whole token (about 1 KB) on every request, for the
// garbage collector to sweep. Its memory is bounded: when the values it holds pass
// maxBearerBytes it starts over.
type bearerCache struct {
	// scheme starts every value, with its space; "" means "Bearer ".
	scheme string
	mu     sync.Mutex
	m      map[string]string // token -> "Bearer " + token
	bytes  int
}

// maxBearerBytes bounds the tokens and values a bearerCache holds: about 1 600 sessions'
// worth of 1.2 KB tokens.
const maxBearerBytes = 4 << 20

func (c *bearerCache) header(token string) string {
	c.mu.Lock()
	defer c.mu.Unlock()
	if v, ok := c.m[token]; ok {
		return v
	}
	scheme := c.scheme
	if scheme == "" {
		scheme = "Bearer "
	}
	v := scheme + token
	if c.m == nil || c.bytes+2*len(v) > maxBearerBytes {
		c.m, c.bytes = make(map[string]string), 0
	}
	c.m[token] = v
	c.bytes += 2 * len(v)
	return v
}
