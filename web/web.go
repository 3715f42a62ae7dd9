// Package web holds what the OAuth agent and the proxy share at the HTTP edge: the JSON
// error envelope and its stable codes, the CSRF header and Origin checks, CORS, and the
// security headers of tokenhandler's own answers. It imports nothing of tokenhandler's.
package web

import (
	"encoding/json"
	"errors"
	"net/http"
	"slices"
	"strings"
)

// Stable error codes of tokenhandler's JSON error envelope.
const (
	CodeUnauthenticated         = "unauthenticated"
	CodeSessionExpired          = "session_expired"
	CodeCSRFFailed              = "csrf_failed"
	CodeOriginNotAllowed        = "origin_not_allowed"
	CodeIdPUnavailable          = "idp_unavailable"
	CodeSessionStoreUnavailable = "session_store_unavailable"
	CodeUpstreamUnavailable     = "upstream_unavailable"
	CodeUpstreamTimeout         = "upstream_timeout"
	CodeBadRequest              = "bad_request"
	CodeNotFound                = "not_found"
	CodeMethodNotAllowed        = "method_not_allowed"
	CodeInvalidRequest          = "invalid_request"
	// CodeTokenUnavailable: the provider refused to make a route's token (502); the
	// session is kept.
	CodeTokenUnavailable = "token_unavailable"
)

var descriptions = map[string]string{
	CodeUnauthenticated:         "no valid session",
	CodeSessionExpired:          "the session has ended; sign in again",
	CodeCSRFFailed:              "missing or wrong CSRF header",
	CodeOriginNotAllowed:        "origin not allowed",
	CodeIdPUnavailable:          "the identity provider is unavailable; retry later",
	CodeSessionStoreUnavailable: "the session store is unavailable; retry later",
	CodeUpstreamUnavailable:     "the upstream API is unavailable",
	CodeUpstreamTimeout:         "the upstream API did not answer in time",
	CodeBadRequest:              "bad request",
	CodeNotFound:                "not found",
	CodeMethodNotAllowed:        "method not allowed",
	CodeInvalidRequest:          "invalid request",
	CodeTokenUnavailable:        "no token could be obtained for this API",
}

// Error writes tokenhandler's JSON error envelope. The description is a fixed text per
// code: an error's own message, which may carry details of a token or of the provider's
// answer, never reaches a client.
func Error(w http.ResponseWriter, status int, code string) {
	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Set("Cache-Control", "no-store")
	h.Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(struct {
		Error       string `json:"error"`
		Description string `json:"error_description,omitempty"`
	}{code, descriptions[code]})
}

// JSON writes v as a JSON answer with the given status.
func JSON(w http.ResponseWriter, status int, v any) {
	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

// SecureHeaders sets the headers every /auth answer carries: never cached, never framed.
func SecureHeaders(h http.Header) {
	h.Set("Cache-Control", "no-store")
	h.Set("Pragma", "no-cache")
	h.Set("X-Frame-Options", "DENY")
	h.Set("Content-Security-Policy", "frame-ancestors 'none'")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Referrer-Policy", "no-referrer")
}

// SetCookies adds a Set-Cookie header for each cookie. Invalid cookies are dropped by
// net/http, so callers build them only from validated names.
func SetCookies(w http.ResponseWriter, cookies []*http.Cookie) {
	for _, c := range cookies {
		http.SetCookie(w, c)
	}
}

// Errors of the CSRF checks.
var (
	ErrCSRF   = errors.New("web: missing or wrong CSRF header")
	ErrOrigin = errors.New("web: origin not allowed")
)

// CSRF checks that a state-changing request comes from the SPA: it carries the CSRF
// header with the value "1" (a cross-site form cannot set a custom header, and a
// cross-site fetch that sets one needs a CORS preflight tokenhandler refuses), and its
// Origin, when present, is the public origin or an allowed CORS origin.
type CSRF struct {
	// Header is the header's name; empty means "X-CSRF".
	Header string
	// PublicOrigin is the origin the browser sees tokenhandler at ("https://app.example.com").
	PublicOrigin string
	// AllowedOrigins are the extra origins of cors.allowed_origins.
	AllowedOrigins []string
}

// HeaderName is the CSRF header's canonical name.
func (c *CSRF) HeaderName() string {
	if c.Header == "" {
		return "X-CSRF"
	}
	return c.Header
}

// Check applies both checks: the header, then the Origin.
func (c *CSRF) Check(r *http.Request) error {
	if vs := r.Header.Values(c.HeaderName()); len(vs) != 1 || vs[0] != "1" {
		return ErrCSRF
	}
	return c.CheckOrigin(r, false)
}

// CheckOrigin checks the Origin header. required says whether a missing Origin fails
// (true for WebSocket handshakes, which cannot carry the CSRF header).
func (c *CSRF) CheckOrigin(r *http.Request, required bool) error {
	vs := r.Header.Values("Origin")
	switch {
	case len(vs) == 0:
		if required {
			return ErrOrigin
		}
		return nil
	case len(vs) > 1:
		return ErrOrigin
	}
	if !c.OriginAllowed(vs[0]) {
		return ErrOrigin
	}
	return nil
}

// OriginAllowed reports whether origin is the public origin or an allowed CORS origin,
// compared exactly ("null" and anything with a path never match).
func (c *CSRF) OriginAllowed(origin string) bool {
	if origin == "" || origin == "null" {
		return false
	}
	return origin == c.PublicOrigin || slices.Contains(c.AllowedOrigins, origin)
}

// CORS answers preflights and adds the CORS headers for the exact origins listed; with
// none listed it is off and passes every request through untouched.
type CORS struct {
	AllowedOrigins []string
	// AllowHeaders are the request headers a preflight may ask for (the CSRF header and
	// Content-Type at least).
	AllowHeaders []string
}

// Wrap returns next behind the CORS checks.
func (c *CORS) Wrap(next http.Handler) http.Handler {
	if len(c.AllowedOrigins) == 0 {
		return next
	}
	allowHeaders := strings.Join(c.AllowHeaders, ", ")
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		origin := r.Header.Get("Origin")
		h := w.Header()
		h.Add("Vary", "Origin")
		allowed := origin != "" && slices.Contains(c.AllowedOrigins, origin)
		if r.Method == http.MethodOptions && r.Header.Get("Access-Control-Request-Method") != "" {
			if !allowed {
				Error(w, http.StatusForbidden, CodeOriginNotAllowed)
				return
			}
			h.Set("Access-Control-Allow-Origin", origin)
			h.Set("Access-Control-Allow-Credentials", "true")
			h.Set("Access-Control-Allow-Methods", "GET, HEAD, POST, PUT, PATCH, DELETE")
			h.Set("Access-Control-Allow-Headers", allowHeaders)
			h.Set("Access-Control-Max-Age", "600")
			w.WriteHeader(http.StatusNoContent)
			return
		}
		if allowed {
			h.Set("Access-Control-Allow-Origin", origin)
			h.Set("Access-Control-Allow-Credentials", "true")
		}
		next.ServeHTTP(w, r)
	})
}
