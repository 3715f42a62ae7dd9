package oauthagent

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"mime"
	"net/http"
	"time"

	"github.com/coreos/go-oidc/v3/oidc"

	"github.com/tokenhandler/tokenhandler/web"
)

// BackchannelSessions is what OIDC Back-Channel Logout needs from the session side:
// session.RedisStore (which deletes the sessions) and session.DenyList (which ends cookie
// sessions) both provide it. Without one, the endpoint is not mounted.
type BackchannelSessions interface {
	// ClaimLogoutToken records the logout token (issuer, jti) for at least ttl and
	// reports whether it was new: false is a replay.
	ClaimLogoutToken(ctx context.Context, issuer, jti string, ttl time.Duration) (bool, error)
	// ReleaseLogoutToken forgets a claimed token, so that the provider's retry is
	// accepted after ending the sessions failed.
	ReleaseLogoutToken(ctx context.Context, issuer, jti string) error
	// EndSessions ends the sessions of the provider session sid or, when sid is empty,
	// those of the user sub that began at or before at. It returns how many it ended,
	// where it can tell.
	EndSessions(ctx context.Context, sid, sub string, at time.Time) (int, error)
}

const (
	// backchannelEvent is the member the events claim of a logout token must have.
	backchannelEvent = "http://schemas.openid.net/event/backchannel-logout"
	// logoutTokenMaxAge is how far iat may lie from now, either way.
	logoutTokenMaxAge = 2 * time.Minute
	// maxLogoutBody bounds the form a provider posts.
	maxLogoutBody = 64 << 10
)

// errInvalidLogoutToken is any reason to refuse a back-channel logout request: 400
// invalid_request.
var errInvalidLogoutToken = errors.New("invalid logout request")

// backchannelLogout serves POST {auth prefix}/backchannel-logout (OIDC Back-Channel
// Logout 1.0): a form-encoded logout_token from the provider, server to server. The
// token is verified with go-oidc (signature from the provider's JWKS, iss, aud) and the
// claims go-oidc leaves alone are checked here: iat within two minutes, exp if present,
// the back-channel logout event, no nonce, sid and/or sub, a jti never seen before. Then
// the sessions of that sid (or, without a sid, of that sub) end. 200 with an empty body;
// 400 invalid_request for anything wrong with the request; 503 when the sessions could
// not be ended (the provider may retry).
func (a *Agent) backchannelLogout(w http.ResponseWriter, r *http.Request) error {
	ctx := r.Context()
	b := a.opts.Backchannel
	p, err := a.ready()
	if err != nil {
		return err
	}
	claims, err := a.readLogoutToken(w, r, p)
	if err != nil {
		a.log.InfoContext(ctx, "back-channel logout refused", "err", err)
		web.Error(w, http.StatusBadRequest, web.CodeInvalidRequest)
		return nil
	}
	fresh, err := b.ClaimLogoutToken(ctx, claims.Issuer, claims.JTI, 2*logoutTokenMaxAge+iatLeeway)
	if err != nil {
		return fmt.Errorf("oauthagent: back-channel logout: %w", err)
	}
	if !fresh {
		a.log.InfoContext(ctx, "back-channel logout refused", "err", "logout token replayed (jti seen before)")
		web.Error(w, http.StatusBadRequest, web.CodeInvalidRequest)
		return nil
	}
	n, err := b.EndSessions(ctx, claims.SID, claims.Subject, a.now())
	if err != nil {
		if rerr := b.ReleaseLogoutToken(context.WithoutCancel(ctx), claims.Issuer, claims.JTI); rerr != nil {
			a.log.WarnContext(ctx, "back-channel logout: cannot release the logout token for a retry", "err", rerr)
		}
		return fmt.Errorf("oauthagent: back-channel logout: %w", err)
	}
	a.log.InfoContext(ctx, "back-channel logout", "sub", claims.Subject, "by_sid", claims.SID != "", "sessions_ended", n)
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(http.StatusOK)
	return nil
}

// logoutClaims are what tokenhandler uses of a verified logout token.
type logoutClaims struct {
	Issuer, Subject, SID, JTI string
}

// readLogoutToken reads the form's one logout_token and verifies it. Every error wraps
// errInvalidLogoutToken.
func (a *Agent) readLogoutToken(w http.ResponseWriter, r *http.Request, p *provider) (*logoutClaims, error) {
	if mt, _, err := mime.ParseMediaType(r.Header.Get("Content-Type")); err != nil || mt != "application/x-www-form-urlencoded" {
		return nil, fmt.Errorf("%w: content type is not application/x-www-form-urlencoded", errInvalidLogoutToken)
	}
	r.Body = http.MaxBytesReader(w, r.Body, maxLogoutBody)
	if err := r.ParseForm(); err != nil {
		return nil, fmt.Errorf("%w: form: %w", errInvalidLogoutToken, err)
	}
	tokens := r.PostForm["logout_token"]
	if len(tokens) != 1 || tokens[0] == "" {
		return nil, fmt.Errorf("%w: want exactly one logout_token", errInvalidLogoutToken)
	}
	// go-oidc checks the signature against the provider's keys, iss and aud. Hydra's
	// logout tokens carry no exp, which go-oidc would call expired: exp (when present)
	// and iat are checked below instead.
	v := oidc.NewVerifier(p.meta.Issuer, p.keys, &oidc.Config{
		ClientID:             a.opts.ClientID,
		SupportedSigningAlgs: p.algs,
		SkipExpiryCheck:      true,
		Now:                  a.now,
	})
	tok, err := v.Verify(r.Context(), tokens[0])
	if err != nil {
		return nil, fmt.Errorf("%w: %w", errInvalidLogoutToken, err)
	}
	var payload json.RawMessage
	if err := tok.Claims(&payload); err != nil {
		return nil, fmt.Errorf("%w: claims: %w", errInvalidLogoutToken, err)
	}
	c, err := checkLogoutClaims(payload, a.now())
	if err != nil {
		return nil, err
	}
	c.Issuer = tok.Issuer
	return c, nil
}

// checkLogoutClaims applies the checks of OIDC Back-Channel Logout 1.0 §2.6 that go-oidc
// does not to a verified token's payload.
func checkLogoutClaims(payload []byte, now time.Time) (*logoutClaims, error) {
	var raw struct {
		Sub    json.RawMessage `json:"sub"`
		SID    json.RawMessage `json:"sid"`
		JTI    json.RawMessage `json:"jti"`
		Iat    json.RawMessage `json:"iat"`
		Exp    json.RawMessage `json:"exp"`
		Nonce  json.RawMessage `json:"nonce"`
		Events json.RawMessage `json:"events"`
	}
	if err := json.Unmarshal(payload, &raw); err != nil {
		return nil, fmt.Errorf("%w: claims: %w", errInvalidLogoutToken, err)
	}
	var errs []error
	switch iat, ok := numericDate(raw.Iat); {
	case !ok:
		errs = append(errs, errors.New("iat is missing or not a number"))
	case iat.Before(now.Add(-logoutTokenMaxAge)):
		errs = append(errs, errors.New("iat is more than 2 minutes old"))
	case iat.After(now.Add(iatLeeway)):
		errs = append(errs, errors.New("iat is in the future"))
	}
	if len(raw.Exp) > 0 {
		switch exp, ok := numericDate(raw.Exp); {
		case !ok:
			errs = append(errs, errors.New("exp is not a number"))
		case !now.Before(exp.Add(iatLeeway)):
			errs = append(errs, errors.New("the logout token has expired"))
		}
	}
	if len(raw.Nonce) > 0 {
		errs = append(errs, errors.New("a logout token must not carry a nonce"))
	}
	var events map[string]json.RawMessage
	if err := json.Unmarshal(raw.Events, &events); err != nil || events == nil {
		errs = append(errs, errors.New("events is missing or not an object"))
	} else if ev := bytes.TrimSpace(events[backchannelEvent]); len(ev) == 0 || ev[0] != '{' {
		errs = append(errs, errors.New("events lacks the back-channel logout event"))
	}
	c := &logoutClaims{}
	var okSub, okSID, okJTI bool
	c.Subject, okSub = optionalString(raw.Sub)
	c.SID, okSID = optionalString(raw.SID)
	c.JTI, okJTI = optionalString(raw.JTI)
	switch {
	case !okSub || !okSID:
		errs = append(errs, errors.New("sub and sid must be strings"))
	case c.Subject == "" && c.SID == "":
		errs = append(errs, errors.New("neither sid nor sub"))
	}
	if !okJTI || c.JTI == "" {
		errs = append(errs, errors.New("jti is missing"))
	}
	if len(errs) > 0 {
		return nil, fmt.Errorf("%w: %w", errInvalidLogoutToken, errors.Join(errs...))
	}
	return c, nil
}

// numericDate reads a JSON number of seconds since the epoch.
func numericDate(v json.RawMessage) (time.Time, bool) {
	if !isJSONNumber(v) {
		return time.Time{}, false
	}
	var secs float64
	if err := json.Unmarshal(v, &secs); err != nil {
		return time.Time{}, false
	}
	return time.Unix(int64(secs), 0), true
}

// optionalString reads an absent claim as "" and a string as itself; anything else is
// not ok.
func optionalString(v json.RawMessage) (string, bool) {
	if len(v) == 0 {
		return "", true
	}
	var s string
	if err := json.Unmarshal(v, &s); err != nil {
		return "", false
	}
	return s, true
}
