package proxy

import (
	"errors"
	"log/slog"
	"net/http"
	"time"

	"github.com/tokenhandler/tokenhandler/session"
	"github.com/tokenhandler/tokenhandler/web"
)

// Errors of the proxy's own checks; fail maps them to statuses.
var (
	errBadPath         = errors.New("proxy: path is not clean")
	errBadBody         = errors.New("proxy: request body shorter than its Content-Length")
	errNoRoute         = errors.New("proxy: no route")
	errMethod          = errors.New("proxy: method not allowed")
	errUpstreamTimeout = errors.New("proxy: upstream response headers timed out")
)

// upstreamError is ReverseProxy's ErrorHandler: the upstream failed, timed out, or the
// reactive refresh between two tries failed.
func (h *Handler) upstreamError(w http.ResponseWriter, r *http.Request, err error) {
	x := exchangeFrom(r.Context())
	if x == nil { // cannot happen: every request reaches ReverseProxy through serve
		h.log.ErrorContext(r.Context(), "proxy: request without exchange", "err", err)
		web.Error(w, http.StatusBadGateway, web.CodeUpstreamUnavailable)
		return
	}
	if h.onUpstream != nil {
		status, code := classify(err)
		if x.in.Context().Err() != nil {
			status = statusClientGone // not the upstream's fault: keep it out of the 502s
		}
		if code == web.CodeUpstreamUnavailable || code == web.CodeUpstreamTimeout {
			h.onUpstream(x.route.prefix, status, time.Since(x.start))
		}
	}
	h.fail(w, x, err)
}

// classify maps an error to the status and code the client gets; the one place that does.
func classify(err error) (int, string) {
	switch {
	case errors.Is(err, errBadPath), errors.Is(err, errBadBody):
		return http.StatusBadRequest, web.CodeBadRequest
	case errors.Is(err, errNoRoute):
		return http.StatusNotFound, web.CodeNotFound
	case errors.Is(err, errMethod):
		return http.StatusMethodNotAllowed, web.CodeMethodNotAllowed
	case errors.Is(err, web.ErrCSRF):
		return http.StatusForbidden, web.CodeCSRFFailed
	case errors.Is(err, web.ErrOrigin):
		return http.StatusForbidden, web.CodeOriginNotAllowed
	case errors.Is(err, session.ErrRefreshDenied):
		return http.StatusUnauthorized, web.CodeSessionExpired
	case errors.Is(err, session.ErrTokenUnavailable):
		return http.StatusBadGateway, web.CodeTokenUnavailable
	case errors.Is(err, session.ErrIdPUnavailable):
		return http.StatusBadGateway, web.CodeIdPUnavailable
	case errors.Is(err, session.ErrStoreUnavailable):
		return http.StatusServiceUnavailable, web.CodeSessionStoreUnavailable
	case errors.Is(err, session.ErrNoSession):
		return http.StatusUnauthorized, web.CodeUnauthenticated
	case errors.Is(err, errUpstreamTimeout):
		return http.StatusGatewayTimeout, web.CodeUpstreamTimeout
	default:
		return http.StatusBadGateway, web.CodeUpstreamUnavailable
	}
}

// fail answers an error: the status and code from classify, the Allow header of a 405,
// the deletions of a session the provider ended, the cookies of a refresh that did
// succeed, and one log line. The error's text never reaches the client.
func (h *Handler) fail(w http.ResponseWriter, x *exchange, err error) {
	r := x.in
	ctx := r.Context()
	status, code := classify(err)
	switch {
	case status == http.StatusMethodNotAllowed:
		w.Header().Set("Allow", x.route.allow)
	}
	// A reactive refresh that succeeded before the retry failed: the rotated refresh
	// token must still reach the browser; one the provider refused: the deletions.
	web.SetCookies(w, x.pending)
	x.pending = nil

	level := slog.LevelDebug
	switch {
	case r.Context().Err() != nil:
		// The client went away; nobody reads this answer.
	case code == web.CodeTokenUnavailable:
		level = slog.LevelError // our configuration is wrong
	case status >= 500:
		level = slog.LevelWarn
	case code == web.CodeSessionExpired:
		level = slog.LevelInfo
	}
	attrs := []any{"method", r.Method, "path", r.URL.Path, "status", status, "code", code, "err", err}
	if x.route != nil {
		attrs = append(attrs, "route", x.route.prefix)
	}
	if x.sess != nil {
		attrs = append(attrs, "session", x.sess)
	}
	h.log.Log(ctx, level, "proxy: request refused", attrs...)
	if h.onError != nil {
		h.onError(status, code)
	}
	web.Error(w, status, code)
}
