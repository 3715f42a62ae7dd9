package oauthagent

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/coreos/go-oidc/v3/oidc"

	"github.com/tokenhandler/tokenhandler/dpop"
	"github.com/tokenhandler/tokenhandler/session"
	"github.com/tokenhandler/tokenhandler/web"
)

// clientContext carries our timeout-bounded client to go-oidc and x/oauth2, which read it
// from the context.
func (a *Agent) clientContext(ctx context.Context) context.Context {
	return oidc.ClientContext(ctx, a.opts.HTTPClient)
}

// session tells the SPA whether it is signed in. It never refreshes.
func (a *Agent) session(w http.ResponseWriter, r *http.Request) error {
	s, err := a.store.Load(r.Context(), r)
	if errors.Is(err, session.ErrNoSession) {
		web.JSON(w, http.StatusOK, map[string]bool{"authenticated": false})
		return nil
	}
	if err != nil {
		return err
	}
	web.JSON(w, http.StatusOK, struct {
		Authenticated  bool   `json:"authenticated"`
		Subject        string `json:"sub"`
		Name           string `json:"name,omitempty"`
		Email          string `json:"email,omitempty"`
		AccessExpires  string `json:"access_token_expires_at,omitempty"`
		SessionExpires string `json:"session_expires_at"`
	}{true, s.Subject, s.Name, s.Email, rfc3339(s.AccessExpiry), rfc3339(s.Expiry)})
	return nil
}

func rfc3339(t time.Time) string {
	if t.IsZero() {
		return ""
	}
	return t.UTC().Format(time.RFC3339)
}

// claims returns the ID token's claims, verified when the session began.
func (a *Agent) claims(w http.ResponseWriter, r *http.Request) error {
	s, err := a.store.Load(r.Context(), r)
	if err != nil {
		return err
	}
	c, err := unverifiedClaims(s.IDToken)
	if err != nil {
		return fmt.Errorf("oauthagent: claims: %w", err)
	}
	web.JSON(w, http.StatusOK, c)
	return nil
}

// userinfo returns the provider's userinfo for the session, refreshing the access token
// first when it is expiring.
func (a *Agent) userinfo(w http.ResponseWriter, r *http.Request) error {
	ctx := r.Context()
	p, err := a.ready()
	if err != nil {
		return err
	}
	if p.meta.UserinfoEndpoint == "" {
		web.Error(w, http.StatusNotFound, web.CodeNotFound)
		return nil
	}
	s, err := a.store.Load(ctx, r)
	if err != nil {
		return err
	}
	s, err = a.freshen(ctx, w, r, s, false)
	if err != nil {
		return err
	}
	info, err := a.fetchUserinfo(ctx, p, s)
	if err != nil {
		return err
	}
	if info.Subject != s.Subject {
		return fmt.Errorf("oauthagent: userinfo: %w: sub differs from the session's", session.ErrIdPUnavailable)
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusOK)
	_, err = w.Write(info.raw)
	return err
}

// refresh is the explicit refresh: rarely needed, since the proxy refreshes by itself.
// It forces a refresh at most once per session per minute; beyond that it refreshes
// only an expiring token, so a client looping on it cannot make the session spend its
// refresh token at the provider over and over.
func (a *Agent) refresh(w http.ResponseWriter, r *http.Request) error {
	ctx := r.Context()
	s, err := a.store.Load(ctx, r)
	if err != nil {
		return err
	}
	force := a.forced.Allow(s.ID, a.now())
	if _, err := a.freshen(ctx, w, r, s, force); err != nil {
		return err
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

// freshen renews s (session.Renew, as the proxy does) when force is set or its access
// token is expiring, and puts the new cookies on w. When the provider refused the
// refresh token, the session's cookies are deleted and the error wraps
// session.ErrRefreshDenied.
func (a *Agent) freshen(ctx context.Context, w http.ResponseWriter, r *http.Request, s *session.Session, force bool) (*session.Session, error) {
	if !force && !s.NeedsRefresh(a.now(), a.opts.RefreshSkew) {
		return s, nil
	}
	if !force && s.RefreshToken == "" {
		// Nothing to refresh with (the provider issued no refresh token): use the access
		// token while it lasts, as the proxy does; after that the session is unusable,
		// but nothing was refused, so its cookies stay.
		if a.now().Before(s.AccessExpiry) {
			return s, nil
		}
		return nil, fmt.Errorf("oauthagent: access token expired and no refresh token: %w", session.ErrNoSession)
	}
	ns, cookies, err := session.Renew(ctx, a.store, r, s, a.refresher.Refresh)
	web.SetCookies(w, cookies) // the new session's, or the deletions of a refused one
	if err != nil {
		return nil, fmt.Errorf("oauthagent: refresh: %w", err)
	}
	return ns, nil
}

// logout ends the local session whatever else fails: it revokes the refresh token where
// the provider offers revocation (a failure is logged, never an error), clears every
// cookie, and tells the SPA where to send the browser for the provider's logout.
func (a *Agent) logout(w http.ResponseWriter, r *http.Request) error {
	ctx := r.Context()
	s, err := a.store.Load(ctx, r)
	if err != nil {
		if !errors.Is(err, session.ErrNoSession) {
			a.log.WarnContext(ctx, "logout without a readable session", "err", err)
		}
		s = nil
	}
	p := a.provider.Load()
	if s != nil && s.RefreshToken != "" && p != nil && p.meta.RevocationEndpoint != "" {
		if err := a.revoke(ctx, p, s.RefreshToken); err != nil {
			a.log.WarnContext(ctx, "refresh token revocation failed; the local session ends anyway", "err", err)
		}
	}
	del, err := a.store.Delete(ctx, r, s)
	if err != nil {
		a.log.WarnContext(ctx, "deleting the session from the store failed; its cookies are cleared", "err", err)
	}
	web.SetCookies(w, del)
	if s != nil {
		a.log.InfoContext(ctx, "signed out", "session", s)
	}
	web.JSON(w, http.StatusOK, map[string]string{"logout_url": a.logoutURL(p, s)})
	return nil
}

// logoutURL is the RP-initiated logout URL, or the post-logout URL itself when the
// provider has no end_session_endpoint.
func (a *Agent) logoutURL(p *provider, s *session.Session) string {
	if p == nil || p.meta.EndSessionEndpoint == "" {
		return a.opts.PostLogoutRedirectURL
	}
	u, err := url.Parse(p.meta.EndSessionEndpoint)
	if err != nil {
		return a.opts.PostLogoutRedirectURL
	}
	q := u.Query()
	q.Set("client_id", a.opts.ClientID)
	if a.opts.PostLogoutRedirectURL != "" {
		q.Set("post_logout_redirect_uri", a.opts.PostLogoutRedirectURL)
	}
	if s != nil && s.IDToken != "" {
		q.Set("id_token_hint", s.IDToken)
	}
	u.RawQuery = q.Encode()
	return u.String()
}

// revoke revokes a refresh token (RFC 7009), authenticating as the token endpoint does.
func (a *Agent) revoke(ctx context.Context, p *provider, token string) error {
	form := url.Values{"token": {token}, "token_type_hint": {"refresh_token"}}
	req, err := a.clientRequest(ctx, p.meta.RevocationEndpoint, form)
	if err != nil {
		return fmt.Errorf("oauthagent: revoke: %w", err)
	}
	resp, err := a.opts.HTTPClient.Do(req)
	if err != nil {
		return fmt.Errorf("oauthagent: revoke: %w", err)
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("oauthagent: revoke: provider answered %s", resp.Status)
	}
	return nil
}

// clientRequest is a form POST to an endpoint that authenticates the client, as the token
// endpoint does: client_secret_basic in Basic, client_secret_post in the form; for
// private_key_jwt only client_id here, and providerTransport adds the assertion.
func (a *Agent) clientRequest(ctx context.Context, endpoint string, form url.Values) (*http.Request, error) {
	switch a.opts.TokenAuthMethod {
	case "client_secret_post":
		form.Set("client_id", a.opts.ClientID)
		form.Set("client_secret", a.opts.ClientSecret)
	case "private_key_jwt":
		form.Set("client_id", a.opts.ClientID)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, endpoint, strings.NewReader(form.Encode()))
	if err != nil {
		return nil, err
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Accept", "application/json")
	if a.opts.TokenAuthMethod == "client_secret_basic" || a.opts.TokenAuthMethod == "" {
		req.SetBasicAuth(url.QueryEscape(a.opts.ClientID), url.QueryEscape(a.opts.ClientSecret))
	}
	return req, nil
}

// authorize puts s's access token on a request to the provider: as Bearer, or for a
// DPoP-bound token as "DPoP" with a fresh proof. A bound token is never sent as Bearer:
// without a DPoP key it is not sent at all.
func (a *Agent) authorize(req *http.Request, s *session.Session) error {
	if !s.DPoPBound() {
		req.Header.Set("Authorization", "Bearer "+s.AccessToken)
		return nil
	}
	if a.opts.DPoP == nil {
		return fmt.Errorf("%w: a DPoP-bound token, and oidc.dpop is off", session.ErrNoSession)
	}
	proof, err := a.opts.DPoP.Proof(req.Method, dpop.HTU(req.URL), s.AccessToken, a.nonces.Get(dpop.Origin(req.URL)))
	if err != nil {
		return err
	}
	req.Header.Set("Authorization", "DPoP "+s.AccessToken)
	req.Header.Set(dpop.Header, proof)
	return nil
}

var errInvalidUserinfo = errors.New("invalid userinfo response")

type userinfoResult struct {
	Subject string
	Email   string
	claims  map[string]any
	raw     json.RawMessage
}

// fetchUserinfo calls the userinfo endpoint with the access token. A refusal or outage
// wraps session.ErrIdPUnavailable; an answer that is not a JSON object with a sub wraps
// errInvalidUserinfo.
//
// A DPoP-bound token is sent as "Authorization: DPoP" with a proof (ath, the provider's
// latest nonce); a use_dpop_nonce challenge is answered by one retry with the new nonce.
func (a *Agent) fetchUserinfo(ctx context.Context, p *provider, s *session.Session) (*userinfoResult, error) {
	var resp *http.Response
	for attempt := 0; ; attempt++ {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, p.meta.UserinfoEndpoint, nil)
		if err != nil {
			return nil, fmt.Errorf("oauthagent: userinfo: %w", err)
		}
		if err := a.authorize(req, s); err != nil {
			return nil, fmt.Errorf("oauthagent: userinfo: %w", err)
		}
		req.Header.Set("Accept", "application/json")
		resp, err = a.opts.HTTPClient.Do(req)
		if err != nil {
			return nil, fmt.Errorf("oauthagent: userinfo: %w: %w", session.ErrIdPUnavailable, err)
		}
		if !s.DPoPBound() {
			break
		}
		a.nonces.Set(dpop.Origin(req.URL), resp.Header.Get(dpop.NonceHeader))
		if _, ask := dpop.NonceChallenge(resp.Header.Values("WWW-Authenticate"), resp.Header.Get(dpop.NonceHeader)); !ask || attempt > 0 || resp.StatusCode != http.StatusUnauthorized {
			break
		}
		_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
		resp.Body.Close()
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return nil, fmt.Errorf("oauthagent: userinfo: %w: %w", session.ErrIdPUnavailable, err)
	}
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("oauthagent: userinfo: %w: provider answered %s", session.ErrIdPUnavailable, resp.Status)
	}
	// A signed userinfo response (application/jwt) is not supported; anything else must
	// decode as a JSON object, whatever content type the provider labels it with.
	if mt, _, _ := mime.ParseMediaType(resp.Header.Get("Content-Type")); mt == "application/jwt" {
		return nil, fmt.Errorf("oauthagent: userinfo: %w: signed (application/jwt) userinfo is not supported", errInvalidUserinfo)
	}
	var m map[string]any
	if err := json.Unmarshal(body, &m); err != nil {
		return nil, fmt.Errorf("oauthagent: userinfo: %w: %w", errInvalidUserinfo, err)
	}
	sub, _ := m["sub"].(string)
	if sub == "" {
		return nil, fmt.Errorf("oauthagent: userinfo: %w: no sub", errInvalidUserinfo)
	}
	email, _ := m["email"].(string)
	return &userinfoResult{Subject: sub, Email: email, claims: m, raw: body}, nil
}
