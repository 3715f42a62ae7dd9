package oauthagent

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"net/url"
	"strings"
	"time"

	"golang.org/x/oauth2"
	"golang.org/x/oauth2/clientcredentials"

	"github.com/tokenhandler/tokenhandler/dpop"
	"github.com/tokenhandler/tokenhandler/session"
)

// RFC 8693 names.
const (
	grantTokenExchange = "urn:ietf:params:oauth:grant-type:token-exchange"
	tokenTypeAccess    = "urn:ietf:params:oauth:token-type:access_token"
)

// RouteToken returns the Authorization value of the token policy p asks for the session
// s ("Bearer " + token, or "DPoP " + token for a token the provider bound to the DPoP key
// because p.DPoP asked it to: its user adds a proof): from the coordinator's cache of
// derived tokens, or from one derivation per (session, policy) at a time. via refresh spends the session's refresh token through the refresh
// machinery (the coordinator's flight, lease and grace entry) and renew, which stores the
// rotated refresh token; via exchange makes an RFC 8693 token exchange with s's access
// token as subject_token and leaves the session untouched. skew is session.refresh_skew.
// hit reports whether the cache answered.
//
// Errors wrap session.ErrTokenUnavailable (the provider refused our configuration),
// session.ErrSubjectRejected (exchange: the provider refused the session's access token),
// session.ErrRefreshDenied (refresh: the session is over) or session.ErrIdPUnavailable.
func (r *Refresher) RouteToken(ctx context.Context, s *session.Session, p *session.TokenPolicy, skew time.Duration, renew session.Renewer) (header string, hit bool, err error) {
	return r.coord.Derived(ctx, s.AccessToken, p, skew, s.AccessExpiry, func(ctx context.Context) (*session.DerivedToken, error) {
		under, err := r.underlying(ctx, s, p, renew)
		if err != nil || p.Format != "jwt" || isJWS(under.Token) && !session.IsDPoP(under.Type) {
			return under, err // a JWT already is one: sent as issued (a bound one is not a bearer JWT)
		}
		return r.toJWT(ctx, under, p)
	})
}

// underlying is the token p's route gets before any format change: the session's, or
// one derived via refresh or exchange.
func (r *Refresher) underlying(ctx context.Context, s *session.Session, p *session.TokenPolicy, renew session.Renewer) (*session.DerivedToken, error) {
	switch p.Via {
	case "exchange":
		return r.exchange(ctx, s, p)
	case "refresh":
		var dt *session.DerivedToken
		_, err := renew(ctx, func(ctx context.Context, s *session.Session) (*session.Session, error) {
			ns, t, err := r.refreshFor(ctx, s, p)
			dt = t
			return ns, err
		})
		return dt, err
	default:
		return &session.DerivedToken{Token: s.AccessToken, Issued: s.AccessIssued, Expiry: s.AccessExpiry, Type: s.TokenType}, nil
	}
}

// CachedRouteToken returns the cached Authorization value of p for s, if any.
func (r *Refresher) CachedRouteToken(s *session.Session, p *session.TokenPolicy) (string, bool) {
	return r.coord.CachedDerived(s.AccessToken, p)
}

// DropRouteToken forgets the cached token of policy p for s (an upstream refused it);
// p nil forgets every derived token of s.
func (r *Refresher) DropRouteToken(ctx context.Context, s *session.Session, p *session.TokenPolicy) {
	r.coord.DropDerived(ctx, s.AccessToken, p)
}

// refreshFor spends s's refresh token on a refresh-token grant carrying p's resource and
// scope, through the coordinator like every refresh. The session keeps its access token
// and takes the rotated refresh token; the access token is p's. A flight joined for
// another purpose (the session's own refresh, another route's) is accepted for what it
// gave the session, and the new refresh token is spent again, at most twice.
func (r *Refresher) refreshFor(ctx context.Context, s *session.Session, p *session.TokenPolicy) (*session.Session, *session.DerivedToken, error) {
	prov, err := r.agent.ready()
	if err != nil {
		return nil, nil, fmt.Errorf("oauthagent: derive: %w: %w", session.ErrIdPUnavailable, err)
	}
	cur := s
	for range 3 {
		if cur.RefreshToken == "" {
			return nil, nil, fmt.Errorf("oauthagent: derive: %w: the session holds no refresh token", session.ErrRefreshDenied)
		}
		rt := cur.RefreshToken
		toks, err := r.coord.Refresh(ctx, rt, func(ctx context.Context) (*session.Tokens, error) {
			return r.spendFor(ctx, prov, rt, p)
		})
		if err != nil {
			return nil, nil, err
		}
		ns := *cur
		ns.RefreshToken = toks.RefreshToken
		switch toks.For {
		case p.Key():
			return &ns, &session.DerivedToken{Token: toks.AccessToken, Issued: toks.AccessIssued, Expiry: toks.AccessExpiry, Type: toks.TokenType}, nil
		case "":
			ns.AccessToken, ns.AccessIssued, ns.AccessExpiry = toks.AccessToken, toks.AccessIssued, toks.AccessExpiry
			ns.TokenType = toks.TokenType
			if toks.IDToken != "" {
				ns.IDToken = toks.IDToken
			}
		}
		cur = &ns
	}
	return nil, nil, fmt.Errorf("oauthagent: derive: %w: the refresh token kept being spent for other purposes", session.ErrIdPUnavailable)
}

// spendFor is the one token-endpoint call of a refresh derivation, with a DPoP proof
// exactly when p asks for a bound token (a confidential client's refresh token is not
// bound, RFC 9449 §5, so it may be spent without one).
func (r *Refresher) spendFor(ctx context.Context, prov *provider, refreshToken string, p *session.TokenPolicy) (*session.Tokens, error) {
	a := r.agent
	ctx, err := r.proving(ctx, p)
	if err != nil {
		return nil, err
	}
	params := url.Values{"grant_type": {"refresh_token"}, "refresh_token": {refreshToken}}
	if len(p.Resource) > 0 {
		params["resource"] = p.Resource
	}
	tok, err := a.tokenCall(ctx, prov, params, p.Scope)
	if err != nil {
		return nil, classifyDeriveError(ctx, a, "refresh", err)
	}
	return &session.Tokens{
		AccessToken:  tok.AccessToken,
		TokenType:    a.tokenType(ctx, tok),
		AccessIssued: a.now(),
		AccessExpiry: accessExpiry(tok),
		RefreshToken: tok.RefreshToken,
		For:          p.Key(),
	}, nil
}

// exchange is the one token-endpoint call of an RFC 8693 derivation, with a DPoP proof
// exactly when p asks for a bound token.
func (r *Refresher) exchange(ctx context.Context, s *session.Session, p *session.TokenPolicy) (*session.DerivedToken, error) {
	a := r.agent
	prov, err := a.ready()
	if err != nil {
		return nil, fmt.Errorf("oauthagent: exchange: %w: %w", session.ErrIdPUnavailable, err)
	}
	ctx, err = r.proving(ctx, p)
	if err != nil {
		return nil, err
	}
	params := url.Values{
		"grant_type":         {grantTokenExchange},
		"subject_token":      {s.AccessToken},
		"subject_token_type": {tokenTypeAccess},
	}
	if len(p.Resource) > 0 {
		params["resource"] = p.Resource
	}
	if len(p.Audience) > 0 {
		params["audience"] = p.Audience
	}
	tok, err := a.tokenCall(ctx, prov, params, p.Scope)
	if err != nil {
		return nil, classifyDeriveError(ctx, a, "exchange", err)
	}
	return &session.DerivedToken{Token: tok.AccessToken, Issued: a.now(), Expiry: accessExpiry(tok), Type: a.tokenType(ctx, tok)}, nil
}

// proving returns ctx under which a derivation's token call for p carries a DPoP proof
// exactly when p asks for a bound token (token.dpop), made with the DPoP key.
func (r *Refresher) proving(ctx context.Context, p *session.TokenPolicy) (context.Context, error) {
	if !p.DPoP {
		return withProofer(ctx, nil), nil
	}
	o := r.agent.opts
	proofer := cmp.Or(o.DPoP, o.RouteDPoP)
	if proofer == nil {
		return nil, fmt.Errorf("oauthagent: derive: %w: the route's token.dpop asks for a bound token, and there is no DPoP key", session.ErrTokenUnavailable)
	}
	return withProofer(ctx, proofer), nil
}

// tokenCall is a token-endpoint request of any grant with the agent's client: the same
// client id, credentials, auth style and HTTP client (clientContext) as the code
// exchange and the refreshes. x/oauth2's clientcredentials package is the one of its
// entry points that sends a grant of our choosing (it lets grant_type be overridden).
func (a *Agent) tokenCall(ctx context.Context, prov *provider, params url.Values, scope string) (*oauth2.Token, error) {
	cc := clientcredentials.Config{
		ClientID:       prov.oauth2.ClientID,
		ClientSecret:   prov.oauth2.ClientSecret,
		TokenURL:       prov.oauth2.Endpoint.TokenURL,
		AuthStyle:      prov.oauth2.Endpoint.AuthStyle,
		Scopes:         strings.Fields(scope),
		EndpointParams: params,
	}
	return cc.Token(a.clientContext(ctx))
}

// classifyDeriveError decides a derivation's outcome from what the token endpoint said
// (DESIGN "Tokens for upstreams", Outcomes).
func classifyDeriveError(ctx context.Context, a *Agent, via string, err error) error {
	var rerr *oauth2.RetrieveError
	if errors.As(err, &rerr) && rerr.Response != nil && rerr.Response.StatusCode/100 == 4 && rerr.ErrorCode != "" {
		code := rerr.ErrorCode
		switch {
		case code == dpop.ErrUseNonce || code == "invalid_dpop_proof":
			// Our proof was refused (a nonce asked for again after the one retry): the
			// grant was not judged, so the session stays (as for a refresh).
			return fmt.Errorf("oauthagent: derive via %s: %w: %s", via, session.ErrIdPUnavailable, code)
		case code == "invalid_client":
			a.log.ErrorContext(ctx, "the provider refused tokenhandler's client credentials (invalid_client): check oidc.client_id and oidc.client_secret", "via", via)
			return fmt.Errorf("oauthagent: derive via %s: %w: invalid_client", via, session.ErrIdPUnavailable)
		case code == "invalid_target", code == "invalid_scope", code == "unauthorized_client", code == "unsupported_grant_type":
			return fmt.Errorf("oauthagent: derive via %s: %w: the provider answered %s (%d): check the route's token policy and the client's registration",
				via, session.ErrTokenUnavailable, code, rerr.Response.StatusCode)
		case via == "exchange" && code == "invalid_grant":
			return fmt.Errorf("oauthagent: derive via exchange: %w: invalid_grant (%d)", session.ErrSubjectRejected, rerr.Response.StatusCode)
		case via == "exchange":
			return fmt.Errorf("oauthagent: derive via exchange: %w: %s (%d)", session.ErrTokenUnavailable, code, rerr.Response.StatusCode)
		default: // a refresh like any other: the refresh token is dead
			return fmt.Errorf("oauthagent: derive via refresh: %w: %s (%d)", session.ErrRefreshDenied, code, rerr.Response.StatusCode)
		}
	}
	if rerr != nil && rerr.Response != nil {
		return fmt.Errorf("oauthagent: derive via %s: %w: token endpoint answered %s", via, session.ErrIdPUnavailable, rerr.Response.Status)
	}
	return fmt.Errorf("oauthagent: derive via %s: %w: %w", via, session.ErrIdPUnavailable, err)
}

// withResources adds a resource parameter per indicator to an authorization URL
// (x/oauth2's options set one value per name).
func withResources(authURL string, resources []string) string {
	if len(resources) == 0 {
		return authURL
	}
	u, err := url.Parse(authURL)
	if err != nil {
		return authURL // AuthCodeURL built it from discovery's endpoint: cannot happen
	}
	q := u.Query()
	for _, r := range resources {
		q.Add("resource", r)
	}
	u.RawQuery = q.Encode()
	return u.String()
}
