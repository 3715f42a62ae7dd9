package oauthagent

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync/atomic"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/trace"
	"golang.org/x/oauth2"

	"github.com/tokenhandler/tokenhandler/dpop"
	"github.com/tokenhandler/tokenhandler/mint"
	"github.com/tokenhandler/tokenhandler/session"
)

// Refresher refreshes a session's tokens through the provider's token endpoint, spending
// each refresh token at most once: the session.Coordinator runs one refresh per refresh
// token at a time and serves late callers from the rotation grace entry.
type Refresher struct {
	agent  *Agent
	coord  *session.Coordinator
	signer *mint.Signer // nil: no token_signing keys
}

// Refresh returns a copy of s with fresh tokens. Errors wrap session.ErrRefreshDenied
// when the provider refused the refresh token (the session is over) and
// session.ErrIdPUnavailable when it could not be asked or gave no usable answer (the
// session is kept).
func (r *Refresher) Refresh(ctx context.Context, s *session.Session) (*session.Session, error) {
	return r.refresh(ctx, s)
}

func (r *Refresher) refresh(ctx context.Context, s *session.Session) (*session.Session, error) {
	p, err := r.agent.ready()
	if err != nil {
		return nil, fmt.Errorf("oauthagent: refresh: %w: %w", session.ErrIdPUnavailable, err)
	}
	if s.RefreshToken == "" {
		return nil, fmt.Errorf("oauthagent: refresh: %w: the session holds no refresh token", session.ErrRefreshDenied)
	}
	// The caller's span (the proxy's session.refresh, or the request's) learns how long
	// this caller waited for another flight or replica, and whether it made the call.
	start := time.Now()
	var waited atomic.Int64
	waited.Store(-1)
	toks, err := r.coord.Refresh(ctx, s.RefreshToken, func(ctx context.Context) (*session.Tokens, error) {
		waited.Store(int64(time.Since(start)))
		return r.spend(ctx, p, s)
	})
	if err == nil && toks.For != "" {
		// The refresh token was spent for a route's derived token (via refresh), whose
		// access token is not the session's: spend the rotated one for the session.
		rotated := *s
		rotated.RefreshToken = toks.RefreshToken
		toks, err = r.coord.Refresh(ctx, rotated.RefreshToken, func(ctx context.Context) (*session.Tokens, error) {
			return r.spend(ctx, p, &rotated)
		})
		if err == nil && toks.For != "" {
			err = fmt.Errorf("oauthagent: refresh: %w: the refresh token was spent for a route's token twice", session.ErrIdPUnavailable)
		}
	}
	if span := trace.SpanFromContext(ctx); span.IsRecording() {
		called := waited.Load() >= 0
		wait := time.Since(start)
		if called {
			wait = time.Duration(waited.Load())
		}
		span.SetAttributes(attribute.Bool("refresh.token_call", called), attribute.Int64("refresh.wait_ms", wait.Milliseconds()))
	}
	if err != nil {
		return nil, err
	}
	ns := *s
	ns.AccessToken = toks.AccessToken
	ns.TokenType = toks.TokenType
	ns.AccessIssued = toks.AccessIssued
	ns.AccessExpiry = toks.AccessExpiry
	ns.RefreshToken = toks.RefreshToken
	if toks.IDToken != "" {
		ns.IDToken = toks.IDToken
	}
	return &ns, nil
}

// spend makes the one token-endpoint call for s's refresh token. The context it gets
// from the coordinator outlives the callers: a refresh once sent is never cancelled.
//
// The Observer hears of each call here, once per token-endpoint request, not once per
// caller that joined the flight or was served from the grace entry.
func (r *Refresher) spend(ctx context.Context, p *provider, s *session.Session) (t *session.Tokens, err error) {
	a := r.agent
	start := time.Now()
	defer func() { a.obs.Refresh(session.RefreshOutcome(err), time.Since(start)) }()
	// A one-shot token source: x/oauth2 gives no hook when it refreshes, so the rotated
	// refresh token is taken from what it returns (it keeps the old one when the provider
	// sends none).
	tok, err := p.oauth2.TokenSource(a.clientContext(ctx), &oauth2.Token{RefreshToken: s.RefreshToken}).Token()
	if err != nil {
		return nil, classifyRefreshError(ctx, a, err)
	}
	now := a.now()
	t = &session.Tokens{
		AccessToken:  tok.AccessToken,
		TokenType:    a.tokenType(ctx, tok),
		AccessIssued: now,
		AccessExpiry: accessExpiry(tok),
		RefreshToken: tok.RefreshToken,
	}
	if raw, _ := tok.Extra("id_token").(string); raw != "" {
		if err := r.checkRefreshedIDToken(ctx, p, s.IDToken, raw, now); err != nil {
			// The refresh token is spent and the new tokens cannot be trusted: the
			// session ends.
			a.log.WarnContext(ctx, "refreshed id token rejected; ending the session", "err", err)
			return nil, fmt.Errorf("oauthagent: refresh: %w: %w", session.ErrRefreshDenied, err)
		}
		t.IDToken = raw
	}
	return t, nil
}

// classifyRefreshError decides the outcome from what the token endpoint said: a 4xx
// with an OAuth error body means the refresh token is dead, except invalid_client, which
// means our own credentials are wrong; anything else is an outage.
func classifyRefreshError(ctx context.Context, a *Agent, err error) error {
	var rerr *oauth2.RetrieveError
	if errors.As(err, &rerr) && rerr.Response != nil && rerr.Response.StatusCode/100 == 4 && rerr.ErrorCode != "" {
		if rerr.ErrorCode == dpop.ErrUseNonce || rerr.ErrorCode == "invalid_dpop_proof" {
			// Our proof was refused (a nonce asked for again after the one retry): the
			// refresh token was not judged, so the session stays.
			return fmt.Errorf("oauthagent: refresh: %w: %s", session.ErrIdPUnavailable, rerr.ErrorCode)
		}
		if rerr.ErrorCode == "invalid_client" {
			a.log.ErrorContext(ctx, "the provider refused tokenhandler's client credentials (invalid_client): check oidc.client_id and oidc.client_secret")
			return fmt.Errorf("oauthagent: refresh: %w: invalid_client", session.ErrIdPUnavailable)
		}
		// The body's error_description is not kept: only the code is logged.
		return fmt.Errorf("oauthagent: refresh: %w: %s (%d)", session.ErrRefreshDenied, rerr.ErrorCode, rerr.Response.StatusCode)
	}
	if rerr != nil && rerr.Response != nil {
		return fmt.Errorf("oauthagent: refresh: %w: token endpoint answered %s", session.ErrIdPUnavailable, rerr.Response.Status)
	}
	return fmt.Errorf("oauthagent: refresh: %w: %w", session.ErrIdPUnavailable, err)
}

// checkRefreshedIDToken verifies an ID token returned by a refresh and checks it belongs
// to the same sign-in as the session's: same iss, sub and aud, azp unchanged.
func (r *Refresher) checkRefreshedIDToken(ctx context.Context, p *provider, oldRaw, raw string, now time.Time) error {
	_, fresh, err := verifyIDToken(ctx, p.verifier, r.agent.opts.ClientID, raw, "", now)
	if err != nil {
		return err
	}
	old, err := partyOf(oldRaw)
	if err != nil {
		return err
	}
	return sameParty(old, fresh)
}

// partyOf reads iss, sub, aud and azp of an ID token that was verified when it entered
// the session.
func partyOf(raw string) (*idClaims, error) {
	payload, err := jwtPayload(raw)
	if err != nil {
		return nil, err
	}
	var r rawIDClaims
	if err := json.Unmarshal(payload, &r); err != nil {
		return nil, fmt.Errorf("oauthagent: session id token: %w", err)
	}
	c := &idClaims{Issuer: r.Issuer, Subject: r.Sub}
	if r.AZP != nil {
		c.AZP = *r.AZP
	}
	c.Audience, _ = parseAudience(r.Aud) // read as at sign-in
	return c, nil
}

// accessExpiry is the access token's expiry: from expires_in, or a JWT's exp when the
// response had none; zero when neither is known.
func accessExpiry(tok *oauth2.Token) time.Time {
	if !tok.Expiry.IsZero() {
		return tok.Expiry
	}
	return jwtExpiry(tok.AccessToken)
}
