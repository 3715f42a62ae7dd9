package oauthagent

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"

	"github.com/coreos/go-oidc/v3/oidc"
	"golang.org/x/oauth2"

	"github.com/tokenhandler/tokenhandler/session"
	"github.com/tokenhandler/tokenhandler/web"
)

// maxReturnTo bounds return_to.
const maxReturnTo = 2048

// ValidReturnTo checks a return_to value: absent means "/"; otherwise only a same-origin
// relative path is accepted: one leading "/", not "//" or "/\", no scheme or host, no
// control characters or backslashes and none of their %-encodings, at most 2 KiB. The
// query is kept, the fragment dropped.
func ValidReturnTo(s string) (string, bool) {
	if s == "" {
		return "/", true
	}
	if len(s) > maxReturnTo || s[0] != '/' || len(s) > 1 && (s[1] == '/' || s[1] == '\\') {
		return "", false
	}
	s, _, _ = strings.Cut(s, "#")
	lower := strings.ToLower(s)
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x20 || c == 0x7f || c == '\\' {
			return "", false
		}
		if s[i] == '%' {
			if i+2 >= len(s) || !isHex(s[i+1]) || !isHex(s[i+2]) {
				return "", false
			}
			// %00-%1F, %7F (control characters) and %5C (backslash) are refused
			// anywhere; %2F right after the leading slash would make "//" once decoded.
			hex := lower[i+1 : i+3]
			if hex[0] == '0' || hex[0] == '1' || hex == "7f" || hex == "5c" || (i == 1 && hex == "2f") {
				return "", false
			}
		}
	}
	u, err := url.Parse(s)
	if err != nil || u.Scheme != "" || u.Host != "" || u.User != nil || u.Opaque != "" || !strings.HasPrefix(u.Path, "/") {
		return "", false
	}
	return s, true
}

func isHex(c byte) bool {
	return '0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F'
}

func random128() string {
	b := make([]byte, 32) // 256 bits; at least 128 are required
	_, _ = rand.Read(b)
	return base64.RawURLEncoding.EncodeToString(b)
}

// login starts a sign-in: PKCE S256, state and nonce in a login cookie of its own.
func (a *Agent) login(w http.ResponseWriter, r *http.Request) error {
	p, err := a.ready()
	if err != nil {
		return err
	}
	q := r.URL.Query()
	if len(q["return_to"]) > 1 {
		return fmt.Errorf("oauthagent: login: %w: return_to given twice", errBadRequest)
	}
	returnTo, ok := ValidReturnTo(q.Get("return_to"))
	if !ok || !a.isPage(returnTo) {
		return fmt.Errorf("oauthagent: login: %w: return_to is not a same-origin page of the SPA", errBadRequest)
	}
	l := &session.Login{
		State:    random128(),
		Nonce:    random128(),
		Verifier: oauth2.GenerateVerifier(),
		ReturnTo: returnTo,
		Created:  a.now(),
	}
	cookies, err := a.logins.Start(r, l)
	if err != nil {
		return fmt.Errorf("oauthagent: login: %w", err)
	}
	// Resource indicators of the routes that derive their tokens by refresh go in the
	// authorization request (pushed with PAR when it is on).
	target := withResources(p.oauth2.AuthCodeURL(l.State, oauth2.S256ChallengeOption(l.Verifier), oidc.Nonce(l.Nonce)), a.opts.Resources)
	if p.usePAR {
		if target, err = a.pushAuthorization(r.Context(), p, target); err != nil {
			return err
		}
	}
	web.SetCookies(w, cookies)
	// A sign-in replaces the session: the old session's cookies this request carries go
	// now, since the callback will not see them to replace them.
	if c, ok := a.store.(clearer); ok {
		web.SetCookies(w, c.Clear(r))
	}
	a.obs.Login("started")
	http.Redirect(w, r, target, http.StatusFound)
	return nil
}

// clearer is a store that can delete the session cookies a request carries before a
// sign-in replaces them (session.CookieStore).
type clearer interface {
	Clear(r *http.Request) []*http.Cookie
}

// pushAuthorization pushes the authorization request of authURL (RFC 9126), client
// authenticated, and returns the URL the browser is sent to: the authorization endpoint
// with client_id and request_uri only. Nothing of the request travels through the
// browser. A failure wraps session.ErrIdPUnavailable.
func (a *Agent) pushAuthorization(ctx context.Context, p *provider, authURL string) (string, error) {
	u, err := url.Parse(authURL)
	if err != nil {
		return "", fmt.Errorf("oauthagent: par: %w", err)
	}
	form := u.Query()
	req, err := a.clientRequest(ctx, p.meta.PAREndpoint, form)
	if err != nil {
		return "", fmt.Errorf("oauthagent: par: %w", err)
	}
	resp, err := a.opts.HTTPClient.Do(req)
	if err != nil {
		return "", fmt.Errorf("oauthagent: par: %w: %w", session.ErrIdPUnavailable, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	if err != nil {
		return "", fmt.Errorf("oauthagent: par: %w: %w", session.ErrIdPUnavailable, err)
	}
	var par struct {
		RequestURI string `json:"request_uri"`
		ExpiresIn  int64  `json:"expires_in"`
		Error      string `json:"error"`
	}
	_ = json.Unmarshal(body, &par)
	if resp.StatusCode != http.StatusCreated && resp.StatusCode != http.StatusOK || par.RequestURI == "" {
		// Only the provider's error code is kept: its description may echo the request.
		return "", fmt.Errorf("oauthagent: par: %w: provider answered %s %q", session.ErrIdPUnavailable, resp.Status, par.Error)
	}
	q := url.Values{"client_id": {a.opts.ClientID}, "request_uri": {par.RequestURI}}
	u.RawQuery = q.Encode()
	return u.String(), nil
}

// isPage reports whether a return_to path is a page of the SPA: not under the auth
// prefix or a proxied API route, where the SameSite=Strict cookies set at the callback
// would not even be sent on that first, cross-site-initiated navigation. It judges the
// path as tokenhandler's router will see it, decoded ("/%61pi/" is "/api/"), and refuses
// one the router would refuse as unclean ("/x/../api/" would reach "/api/" in a
// browser).
func (a *Agent) isPage(p string) bool {
	u, err := url.Parse(p)
	if err != nil || !web.CleanPath(u) {
		return false
	}
	path := u.Path
	if path == a.opts.AuthPrefix || strings.HasPrefix(path, a.opts.AuthPrefix+"/") {
		return false
	}
	for _, api := range a.opts.APIPaths {
		if strings.HasPrefix(path, api) || path+"/" == api {
			return false
		}
	}
	return true
}

// callbackError carries the auth_error code a failed callback redirects with.
type callbackError struct {
	code string
	err  error
}

func (e *callbackError) Error() string {
	return "oauthagent: callback: " + e.code + ": " + e.err.Error()
}
func (e *callbackError) Unwrap() error { return e.err }

func cbErr(code string, err error) error { return &callbackError{code: code, err: err} }

// providerErrors are the provider's own error codes that reach the SPA as they are.
var providerErrors = map[string]bool{
	"access_denied": true, "login_required": true, "consent_required": true, "interaction_required": true,
}

// callback finishes a sign-in. Whatever happens, the attempt's login cookie is deleted;
// on any failure the browser lands on the error path with auth_error and no session.
func (a *Agent) callback(w http.ResponseWriter, r *http.Request) error {
	returnTo, cookies, err := a.finishLogin(r)
	web.SetCookies(w, cookies)
	if err != nil {
		code := "idp_error"
		var ce *callbackError
		if errors.As(err, &ce) {
			code = ce.code
		}
		a.obs.Login(code)
		a.log.InfoContext(r.Context(), "sign-in failed", "auth_error", code, "err", err)
		http.Redirect(w, r, a.errorURL(code), http.StatusFound)
		return nil
	}
	a.obs.Login("success")
	http.Redirect(w, r, returnTo, http.StatusFound)
	return nil
}

func (a *Agent) errorURL(code string) string {
	u, err := url.Parse(a.opts.ErrorPath)
	if err != nil {
		u = &url.URL{Path: "/"}
	}
	q := u.Query()
	q.Set("auth_error", code)
	u.RawQuery = q.Encode()
	return u.String()
}

// finishLogin returns where to send the browser and the cookies to set: the login
// cookie's deletion always, the session cookies on success only.
func (a *Agent) finishLogin(r *http.Request) (string, []*http.Cookie, error) {
	ctx := r.Context()
	q := r.URL.Query()
	states := q["state"]
	if len(states) != 1 || states[0] == "" {
		// Whatever the outcome, the login cookies this callback names are deleted.
		var cookies []*http.Cookie
		for _, st := range states {
			if st != "" {
				_, del, _ := a.logins.Finish(r, st)
				cookies = append(cookies, del...)
			}
		}
		return "", cookies, cbErr("invalid_state", errors.New("state missing, empty or repeated"))
	}
	login, cookies, err := a.logins.Finish(r, states[0])
	if err != nil {
		return "", cookies, cbErr("invalid_state", err)
	}
	p, err := a.ready()
	if err != nil {
		return "", cookies, cbErr("idp_unavailable", err)
	}
	code, returnTo, err := a.checkCallback(q, p, login)
	if err != nil {
		return "", cookies, err
	}
	s, err := a.exchangeCode(ctx, p, login, code)
	if err != nil {
		return "", cookies, err
	}
	if (s.Name == "" || s.Email == "") && p.meta.UserinfoEndpoint != "" {
		if err := a.addUserinfo(ctx, p, s); err != nil {
			return "", cookies, err
		}
	}
	sc, err := a.store.Save(ctx, r, s)
	if err != nil {
		// The callback's codes have no store outage of their own; the SPA retries either way.
		return "", cookies, cbErr("idp_unavailable", err)
	}
	a.log.InfoContext(ctx, "signed in", "session", s)
	return returnTo, append(cookies, sc...), nil
}

// checkCallback checks the provider's answer to the login: RFC 9207 iss (before the
// provider's error, which it covers too), the error, one code, and the login's
// return_to, still valid. Its errors are callbackErrors.
func (a *Agent) checkCallback(q url.Values, p *provider, login *session.Login) (code, returnTo string, err error) {
	if isses, ok := q["iss"]; ok || p.meta.AuthorizationResponseIss {
		if len(isses) != 1 || isses[0] != p.meta.Issuer {
			return "", "", cbErr("invalid_iss", errors.New("iss parameter missing or not the issuer"))
		}
	}
	if e := q.Get("error"); e != "" || len(q["error"]) > 0 {
		if providerErrors[e] {
			return "", "", cbErr(e, errors.New("the provider answered with an error"))
		}
		return "", "", cbErr("idp_error", errors.New("the provider answered with an error"))
	}
	codes := q["code"]
	if len(codes) != 1 || codes[0] == "" {
		return "", "", cbErr("invalid_state", errors.New("code missing, empty or repeated"))
	}
	returnTo, ok := ValidReturnTo(login.ReturnTo)
	if !ok || !a.isPage(returnTo) {
		return "", "", cbErr("invalid_state", errors.New("return_to no longer valid"))
	}
	return codes[0], returnTo, nil
}

// exchangeCode exchanges the code (PKCE verifier of the login), verifies the ID token
// (nonce of the login; at_hash when present) and returns the new session: a new session
// id, the absolute lifetime from now. Its errors are callbackErrors.
func (a *Agent) exchangeCode(ctx context.Context, p *provider, login *session.Login, code string) (*session.Session, error) {
	pctx := a.clientContext(ctx)
	tok, err := p.oauth2.Exchange(pctx, code, oauth2.VerifierOption(login.Verifier))
	if err != nil {
		if isOAuthError(err) {
			return nil, cbErr("token_exchange_failed", err)
		}
		return nil, cbErr("idp_unavailable", err)
	}
	rawID, _ := tok.Extra("id_token").(string)
	if rawID == "" {
		return nil, cbErr("invalid_id_token", errors.New("token response without id_token"))
	}
	now := a.now()
	idt, claims, err := verifyIDToken(pctx, p.verifier, a.opts.ClientID, rawID, login.Nonce, now)
	if err != nil {
		return nil, cbErr("invalid_id_token", err)
	}
	if idt.AccessTokenHash != "" {
		if err := idt.VerifyAccessToken(tok.AccessToken); err != nil {
			return nil, cbErr("invalid_id_token", err)
		}
	}
	return &session.Session{
		ID:           session.NewID(),
		Subject:      claims.Subject,
		SID:          claims.SID,
		Name:         claims.Name,
		Email:        claims.Email,
		IDToken:      rawID,
		AccessToken:  tok.AccessToken,
		TokenType:    a.tokenType(ctx, tok),
		AccessIssued: now,
		AccessExpiry: accessExpiry(tok),
		RefreshToken: tok.RefreshToken,
		Expiry:       now.Add(a.opts.Lifetime),
	}, nil
}

// addUserinfo fills the name and email the ID token lacked from one userinfo call,
// whose sub must be the session's. Its errors are callbackErrors.
func (a *Agent) addUserinfo(ctx context.Context, p *provider, s *session.Session) error {
	info, err := a.fetchUserinfo(ctx, p, s)
	if err != nil {
		if errors.Is(err, errInvalidUserinfo) {
			return cbErr("invalid_userinfo", err)
		}
		return cbErr("idp_unavailable", err)
	}
	if info.Subject != s.Subject {
		return cbErr("invalid_userinfo", errors.New("userinfo sub differs from the id token's"))
	}
	if s.Name == "" {
		s.Name, _ = info.claims["name"].(string)
	}
	if s.Email == "" {
		s.Email = info.Email
	}
	return nil
}

// tokenType is the TokenType for tok, the answer to a token request made under ctx:
// "DPoP" when the provider bound it, "" for a bearer token. A provider that answers a
// DPoP-proved request (oidc.dpop, or a route's token.dpop) with a bearer token did not
// bind it: the token is used as what it is, Bearer, and that is logged.
func (a *Agent) tokenType(ctx context.Context, tok *oauth2.Token) string {
	if session.IsDPoP(tok.TokenType) {
		return "DPoP"
	}
	if a.prooferFor(ctx) != nil {
		a.log.WarnContext(ctx, "a DPoP proof was sent but the provider issued a bearer token: it is not sender-constrained", "token_type", tok.TokenType)
	}
	return ""
}

// isOAuthError reports whether the token endpoint answered 4xx with an OAuth error body,
// that is, it refused the request rather than failed to answer.
func isOAuthError(err error) bool {
	var rerr *oauth2.RetrieveError
	return errors.As(err, &rerr) && rerr.Response != nil && rerr.Response.StatusCode/100 == 4 && rerr.ErrorCode != ""
}
