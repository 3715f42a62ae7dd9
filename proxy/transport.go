package proxy

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"sync"
	"time"

	"github.com/tokenhandler/tokenhandler/dpop"
)

// transport sends the upstream request under the route's header timeout and, after an
// upstream 401 that a fresh token may cure, refreshes once and retries once. It sits under
// ReverseProxy, so the final response is still streamed by it.
type transport struct {
	h    *Handler
	base http.RoundTripper
}

func (t *transport) RoundTrip(req *http.Request) (*http.Response, error) {
	x := exchangeFrom(req.Context())
	if x == nil {
		return nil, errors.New("proxy: upstream request without exchange")
	}
	if x.authErr != nil {
		return nil, x.authErr
	}
	res, err := t.send(req, x)
	if err == nil && x.bound() {
		res, err = t.retryWithNonce(req, x, res)
	}
	if err != nil {
		return res, err
	}
	if x.route.policy != nil {
		return t.rederive(req, x, res)
	}
	if !t.h.reactive(x, res) {
		return res, err
	}

	// Free the 401's connection before the refresh, which may take a while.
	_, _ = io.Copy(io.Discard, io.LimitReader(res.Body, 64<<10))
	res.Body.Close()

	cookies, err := t.h.refresh(req.Context(), x, "reactive")
	x.pending = cookies // set by fail if the refresh or the retry fails
	if err != nil {
		return nil, err
	}

	retry, err := t.replay(req, x)
	if err != nil {
		return nil, err
	}
	return t.send(retry, x)
}

// replay is req again with x's current token, the route's or the session's (and a fresh
// DPoP proof), and the replay buffer's body from its start.
func (t *transport) replay(req *http.Request, x *exchange) (*http.Request, error) {
	retry := req.Clone(req.Context())
	if err := t.h.authorize(retry, x); err != nil {
		return nil, err
	}
	if x.body != nil {
		retry.Body = x.body.reader()
	}
	return retry, nil
}

// retryWithNonce keeps the upstream's latest DPoP-Nonce and, when its answer is a 401
// use_dpop_nonce challenge to a replayable request, retries once with that nonce under
// the body replay rules of the reactive refresh.
func (t *transport) retryWithNonce(req *http.Request, x *exchange, res *http.Response) (*http.Response, error) {
	origin := dpop.Origin(req.URL)
	nonce := res.Header.Get(dpop.NonceHeader)
	t.h.nonces.Set(origin, nonce)
	if res.StatusCode != http.StatusUnauthorized || !x.replayable {
		return res, nil
	}
	if _, ok := dpop.NonceChallenge(res.Header["Www-Authenticate"], nonce); !ok {
		return res, nil
	}
	_, _ = io.Copy(io.Discard, io.LimitReader(res.Body, 64<<10))
	res.Body.Close()
	retry, err := t.replay(req, x)
	if err != nil {
		return nil, err
	}
	res, err = t.send(retry, x)
	if err == nil {
		t.h.nonces.Set(origin, res.Header.Get(dpop.NonceHeader))
	}
	return res, err
}

// rederive is the reactive rule for a derived token: after an upstream 401 that a new
// token may cure, drop the token, derive again once (refreshing the session first if its
// own token is expiring) and retry once.
func (t *transport) rederive(req *http.Request, x *exchange, res *http.Response) (*http.Response, error) {
	h := t.h
	if x.rederived || !h.curable(x, res) {
		return res, nil
	}
	x.rederived = true
	_, _ = io.Copy(io.Discard, io.LimitReader(res.Body, 64<<10))
	res.Body.Close()

	ctx := req.Context()
	h.deriver.DropRouteToken(ctx, x.sess, x.route.policy)
	if x.sess.NeedsRefresh(h.now(), h.skew) && x.sess.RefreshToken != "" {
		cookies, err := h.refresh(ctx, x, "reactive")
		setRouteCookies(nil, x, cookies)
		if err != nil {
			return nil, err
		}
	}
	if err := h.routeToken(ctx, x, nil); err != nil {
		return nil, err
	}
	retry, err := t.replay(req, x)
	if err != nil {
		return nil, err
	}
	return t.send(retry, x)
}

// curable reports whether res is a 401 that a new token may cure on a replayable
// request, and if so claims this session's reactive retry for the next minute.
func (h *Handler) curable(x *exchange, res *http.Response) bool {
	if res.StatusCode != http.StatusUnauthorized || !x.replayable {
		return false
	}
	if e := challengeError(x, res); e != "" && e != "invalid_token" {
		return false
	}
	return h.limiter.Allow(x.sess.ID, h.now())
}

// challengeError is the error of res's challenge to the token x sent: under DPoP for a
// bound token (use_dpop_nonce is not cured by a new token: retryWithNonce answered it),
// else under Bearer. No error means "no token / expired"; invalid_token is the only
// error a new token cures (insufficient_scope and invalid_request are not).
func challengeError(x *exchange, res *http.Response) string {
	if x.bound() {
		return dpop.ChallengeError(res.Header["Www-Authenticate"], "DPoP")
	}
	return bearerError(res.Header["Www-Authenticate"])
}

// reactive reports whether res is a 401 that a refresh and one retry may cure, and if so
// claims this session's reactive refresh for the next minute.
func (h *Handler) reactive(x *exchange, res *http.Response) bool {
	if res.StatusCode != http.StatusUnauthorized || !x.replayable || x.refreshed ||
		x.sess.RefreshToken == "" {
		return false
	}
	if e := challengeError(x, res); e != "" && e != "invalid_token" {
		return false
	}
	return h.limiter.Allow(x.sess.ID, h.now())
}

// send is one round trip bounded by the route's timeout until the response headers. The
// timer cancels the request only while the headers are awaited: a streaming body runs as
// long as it runs, and its context is released when ReverseProxy closes it.
func (t *transport) send(req *http.Request, x *exchange) (*http.Response, error) {
	ctx, cancel := context.WithCancelCause(req.Context())
	timer := time.AfterFunc(x.route.timeout, func() { cancel(errUpstreamTimeout) })
	res, err := t.base.RoundTrip(req.WithContext(ctx))
	if !timer.Stop() {
		// The timer fired: whatever arrived is cut off already.
		if err == nil {
			res.Body.Close()
		}
		cancel(nil)
		return nil, fmt.Errorf("proxy: upstream %s: %w after %s", x.route.prefix, errUpstreamTimeout, x.route.timeout)
	}
	if err != nil {
		cancel(nil)
		return nil, fmt.Errorf("proxy: upstream %s: %w", x.route.prefix, err)
	}
	release := func() { cancel(nil) }
	if rwc, ok := res.Body.(io.ReadWriteCloser); ok && res.StatusCode == http.StatusSwitchingProtocols {
		// ReverseProxy needs a writable body to splice a WebSocket.
		res.Body = &releaseConn{releaseBody{rwc, release}, rwc}
	} else {
		res.Body = &releaseBody{res.Body, release}
	}
	if res.Request == nil {
		res.Request = req
	}
	return res, nil
}

// releaseBody releases the round trip's context when the body is closed.
type releaseBody struct {
	io.ReadCloser
	release func()
}

func (b *releaseBody) Close() error {
	err := b.ReadCloser.Close()
	b.release()
	return err
}

type releaseConn struct {
	releaseBody
	w io.Writer
}

func (c *releaseConn) Write(p []byte) (int, error) { return c.w.Write(p) }

// bufferPool lends ReverseProxy its 32 KiB copy buffers.
type bufferPool struct{}

var copyBuffers = sync.Pool{New: func() any { b := make([]byte, 32<<10); return &b }}

func (bufferPool) Get() []byte  { return *copyBuffers.Get().(*[]byte) }
func (bufferPool) Put(b []byte) { copyBuffers.Put(&b) }
