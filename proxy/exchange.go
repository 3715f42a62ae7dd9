package proxy

import (
	"context"
	"net/http"
	"strings"
	"time"

	"github.com/tokenhandler/tokenhandler/session"
)

// exchange is the state of one proxied request, carried in its context from ServeHTTP
// to Rewrite, the transport, ModifyResponse and the ErrorHandler.
type exchange struct {
	in         *http.Request // the request as it came, with tokenhandler's cookies
	route      *route
	sess       *session.Session
	replayable bool
	body       *replayBody // the buffered body of a replayable request; nil: none
	refreshed  bool        // this request refreshed (its response carries new cookies)
	authErr    error       // making the upstream's Authorization failed (a DPoP proof)
	authz      string      // the route's derived Authorization value ("Bearer " or "DPoP " + token); "": the session's token
	rederived  bool        // the derived token was replaced after an upstream 401
	pending    []*http.Cookie
	start      time.Time
	ctx        exchangeCtx // the forwarded request's context, which carries x
}

type exchangeKey struct{}

// exchangeCtx is context.WithValue(parent, exchangeKey{}, x) inside x itself: no
// allocation of its own. Every other key, cancellation included, is the parent's.
type exchangeCtx struct {
	context.Context
	x *exchange
}

func (c *exchangeCtx) Value(key any) any {
	if _, ok := key.(exchangeKey); ok {
		return c.x
	}
	return c.Context.Value(key)
}

// bound reports whether the token x sends upstream is DPoP-bound: the route's derived
// token, or else the session's.
func (x *exchange) bound() bool {
	if x.authz != "" {
		return strings.HasPrefix(x.authz, boundScheme)
	}
	return x.sess.DPoPBound()
}

func exchangeFrom(ctx context.Context) *exchange {
	x, _ := ctx.Value(exchangeKey{}).(*exchange)
	return x
}
