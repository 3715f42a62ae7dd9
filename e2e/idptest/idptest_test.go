package idptest_test

import (
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/coreos/go-oidc/v3/oidc"
	"golang.org/x/oauth2"

	"github.com/tokenhandler/tokenhandler/e2e/idptest"
)

// How the two peers differ, as this harness relies on.
var quirks = map[string]struct {
	replayCode       string // the error for a spent refresh token
	newTokenLives    bool   // the token that replaced a replayed one survives the replay
	oneRefreshPerRP  bool   // a new login of the same user and client revokes the previous refresh token
	formBeforePKCEOK bool   // a request without code_challenge shows the login form before it fails
}{
	// Hydra revokes the whole family on a replay, and checks PKCE only after login and
	// consent.
	idptest.KindHydra: {replayCode: "invalid_grant", formBeforePKCEOK: true},
	// Dex keeps one refresh token per user, connector and client.
	idptest.KindDex: {replayCode: "invalid_request", newTokenLives: true, oneRefreshPerRP: true},
	// oidc-provider revokes the whole grant on a replay, and checks PKCE before login.
	idptest.KindOIDCProvider: {replayCode: "invalid_grant"},
}

// TestProviders runs a whole authorization-code flow against each real provider, done by
// the test itself with x/oauth2 and go-oidc, and checks every knob of the harness:
// counting, down, delay, restart, logout.
func TestProviders(t *testing.T) {
	for _, kind := range idptest.AllKinds() {
		t.Run(kind, func(t *testing.T) {
			t.Parallel()
			testProvider(t, kind)
		})
	}
}

func testProvider(t *testing.T, kind string) {
	logoutTokens := make(chan string, 10)
	rp := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodPost && r.URL.Path == "/backchannel" {
			logoutTokens <- r.PostFormValue("logout_token")
			return
		}
		io.WriteString(w, "relying party: "+r.URL.Path)
	}))
	t.Cleanup(rp.Close)
	redirect := rp.URL + "/callback"
	bye := rp.URL + "/bye"
	p := idptest.Start(t, kind, idptest.Options{
		RedirectURL:           redirect,
		PostLogoutRedirectURL: bye,
		BackchannelLogoutURL:  rp.URL + "/backchannel",
		AccessTokenTTL:        30 * time.Second,
	})

	// Discovery through the front proxy: the issuer is exactly the front URL, and every
	// endpoint sits behind it.
	doc := p.Discovery(t)
	if got := doc["issuer"]; got != p.Issuer {
		t.Fatalf("discovery issuer = %v, want %s", got, p.Issuer)
	}
	for _, key := range []string{"authorization_endpoint", "token_endpoint", "jwks_uri", "userinfo_endpoint", "end_session_endpoint"} {
		if s, _ := doc[key].(string); !strings.HasPrefix(s, p.Issuer+"/") {
			t.Errorf("discovery %s = %q, want it under %s", key, s, p.Issuer)
		}
	}
	jwks, _ := doc["jwks_uri"].(string)
	resp, err := http.Get(jwks)
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("GET jwks_uri = %v, %v, want 200", resp, err)
	}
	resp.Body.Close()
	if got := p.Calls(mustParse(t, jwks).Path); got != 1 {
		t.Errorf("Calls(jwks path) = %d, want 1", got)
	}

	ctx := t.Context()
	provider, err := oidc.NewProvider(ctx, p.Issuer) // checks the issuer matches too
	if err != nil {
		t.Fatalf("oidc.NewProvider(%s) = %v", p.Issuer, err)
	}
	endpoint := provider.Endpoint()
	endpoint.AuthStyle = oauth2.AuthStyleInHeader
	cfg := &oauth2.Config{
		ClientID:     p.ClientID,
		ClientSecret: p.ClientSecret,
		Endpoint:     endpoint,
		RedirectURL:  redirect,
		Scopes:       []string{oidc.ScopeOpenID, "profile", "email", oidc.ScopeOfflineAccess},
	}
	verifier := provider.Verifier(&oidc.Config{ClientID: p.ClientID})
	refresh := func(rt string) (*oauth2.Token, error) {
		return cfg.TokenSource(ctx, &oauth2.Token{RefreshToken: rt}).Token()
	}

	// PKCE is enforced: an authorization request without code_challenge yields no code.
	// (In a client of its own: Hydra signs the user in before it refuses.)
	noPKCE := p.SignIn(t, idptest.NewClient(t), cfg.AuthCodeURL(random()))
	noPKCE.Body.Close()
	if code := noPKCE.Request.URL.Query(); code.Get("code") != "" || code.Get("error") != "invalid_request" {
		t.Errorf("authorization without PKCE ended at %s, want error=invalid_request and no code", noPKCE.Request.URL.Redacted())
	}
	if got, want := p.LoginFormPosts(), map[bool]int64{true: 1}[quirks[kind].formBeforePKCEOK]; got != want {
		t.Errorf("login form posts before the PKCE error = %d, want %d", got, want)
	}

	c := idptest.NewClient(t)

	// The code flow, form filled by Authorize.
	tok, idToken := login(t, p, c, cfg, verifier, true)
	if got := p.TokenCalls(); got != 1 {
		t.Errorf("TokenCalls() after the code exchange = %d, want 1", got)
	}
	if got := p.RefreshCalls(); got != 0 {
		t.Errorf("RefreshCalls() after the code exchange = %d, want 0", got)
	}
	var claims map[string]any
	idToken.Claims(&claims)
	t.Logf("%s ID token claims: %v; access token expires in %v; refresh token %d bytes",
		kind, sortedKeys(claims), time.Until(tok.Expiry).Round(time.Second), len(tok.RefreshToken))
	if claims["name"] != p.Name || claims["email"] != p.Email {
		t.Errorf("ID token name, email = %v, %v, want %s, %s", claims["name"], claims["email"], p.Name, p.Email)
	}

	// Refresh rotates the refresh token, and is counted as a refresh.
	tok2, err := refresh(tok.RefreshToken)
	if err != nil {
		t.Fatalf("refresh = %v", err)
	}
	if tok2.RefreshToken == "" || tok2.RefreshToken == tok.RefreshToken {
		t.Errorf("refresh did not rotate the refresh token")
	}
	if got := [2]int64{p.TokenCalls(), p.RefreshCalls()}; got != [2]int64{2, 1} {
		t.Errorf("TokenCalls(), RefreshCalls() after a refresh = %v, want [2 1]", got)
	}

	// Down: the call fails without an HTTP answer (still counted); up again: it works,
	// and the refresh token that could not be spent is still good.
	p.SetDown(true)
	_, err = refresh(tok2.RefreshToken)
	var rerr *oauth2.RetrieveError
	if err == nil || errors.As(err, &rerr) {
		t.Errorf("refresh while down = %v, want a connection error", err)
	}
	if got := p.RefreshCalls(); got != 2 {
		t.Errorf("RefreshCalls() after a refused refresh = %d, want 2", got)
	}
	p.SetDown(false)
	tok3, err := refresh(tok2.RefreshToken)
	if err != nil {
		t.Fatalf("refresh after SetDown(false) = %v", err)
	}

	// Strict rotation: the spent refresh token is refused.
	_, err = refresh(tok2.RefreshToken)
	want := quirks[kind]
	if !errors.As(err, &rerr) || rerr.Response.StatusCode != http.StatusBadRequest || rerr.ErrorCode != want.replayCode {
		t.Fatalf("refresh with a spent refresh token = %v, want 400 %s", err, want.replayCode)
	}
	if _, err := refresh(tok3.RefreshToken); (err == nil) != want.newTokenLives {
		t.Errorf("refresh with the newest refresh token after a replay = %v, want success %v", err, want.newTokenLives)
	}

	// The provider remembers the user: the next logins show no form. At Dex, the second
	// one revokes the refresh token of the first.
	tokA, _ := login(t, p, c, cfg, verifier, false)
	tokA2, _ := login(t, p, c, cfg, verifier, false)
	if _, err := refresh(tokA.RefreshToken); (err != nil) != want.oneRefreshPerRP {
		t.Errorf("refresh of the first of two logins = %v, want failure %v", err, want.oneRefreshPerRP)
	}

	// Restart forgets every grant; the same client signs in again behind the same URL.
	p.Restart(t)
	_, err = refresh(tokA2.RefreshToken)
	if !errors.As(err, &rerr) || rerr.Response.StatusCode != http.StatusBadRequest {
		t.Errorf("refresh after Restart = %v, want 400", err)
	}
	t.Logf("%s: refresh of a forgotten grant: %v", kind, err)
	if got := p.Discovery(t)["issuer"]; got != p.Issuer {
		t.Errorf("discovery issuer after Restart = %v, want %s", got, p.Issuer)
	}
	provider, err = oidc.NewProvider(ctx, p.Issuer) // new signing keys
	if err != nil {
		t.Fatalf("oidc.NewProvider after Restart = %v", err)
	}
	verifier = provider.Verifier(&oidc.Config{ClientID: p.ClientID})

	// Delay: a token call takes at least the delay.
	const delay = 300 * time.Millisecond
	p.SetTokenDelay(delay)
	start := time.Now()
	tokB, idTokenB := login(t, p, c, cfg, verifier, true)
	if elapsed := time.Since(start); elapsed < delay {
		t.Errorf("login with SetTokenDelay(%v) took %v, want at least the delay", delay, elapsed)
	}
	p.SetTokenDelay(0)

	// RP-initiated logout ends at the registered post-logout redirect URI.
	end, _ := doc["end_session_endpoint"].(string)
	q := url.Values{"id_token_hint": {tokB.Extra("id_token").(string)}, "post_logout_redirect_uri": {bye}, "state": {"s1"}}
	out := p.Logout(t, c, end+"?"+q.Encode())
	out.Body.Close()
	if got := out.Request.URL; got.Path != "/bye" || got.Query().Get("state") != "s1" {
		t.Errorf("logout ended at %s (%s), want %s?state=s1", got.Redacted(), out.Status, bye)
	}
	// The provider told the client over the back channel, with a logout token for the
	// session of the ID token.
	select {
	case lt := <-logoutTokens:
		var claims map[string]any
		if err := parseUnverified(lt, &claims); err != nil {
			t.Fatalf("logout token: %v", err)
		}
		var idClaims struct {
			SID string `json:"sid"`
		}
		idTokenB.Claims(&idClaims)
		if claims["iss"] != p.Issuer || claims["sid"] != idClaims.SID {
			t.Errorf("logout token iss, sid = %v, %v, want %s, %s", claims["iss"], claims["sid"], p.Issuer, idClaims.SID)
		}
		t.Logf("%s logout token claims: %v", kind, sortedKeys(claims))
	case <-time.After(10 * time.Second):
		t.Errorf("no back-channel logout request within 10 s")
	}

	// Logout ends the provider's session, not the grant: the refresh token still works
	// (neither revokes it for this client), and the provider asks for the password again.
	if _, err := refresh(tokB.RefreshToken); err != nil {
		t.Errorf("refresh after RP-initiated logout = %v, want success", err)
	}
	login(t, p, c, cfg, verifier, true)
}

// login runs the code flow with PKCE S256 through Authorize and exchanges the code. form
// says whether the provider is expected to show its login form.
func login(t *testing.T, p *idptest.Provider, c *http.Client, cfg *oauth2.Config, v *oidc.IDTokenVerifier, form bool) (*oauth2.Token, *oidc.IDToken) {
	t.Helper()
	ctx := t.Context()
	pkce := oauth2.GenerateVerifier()
	state, nonce := random(), random()
	authURL := cfg.AuthCodeURL(state, oauth2.S256ChallengeOption(pkce), oidc.Nonce(nonce))
	before := p.LoginFormPosts()
	cb := p.Authorize(t, c, authURL, cfg.RedirectURL)
	if posted := p.LoginFormPosts() - before; posted != map[bool]int64{true: 1, false: 0}[form] {
		t.Errorf("login form posts = %d, want form shown = %v", posted, form)
	}
	if got := cb.Query().Get("state"); got != state {
		t.Fatalf("callback state = %q, want %q", got, state)
	}
	code := cb.Query().Get("code")
	if code == "" {
		t.Fatalf("callback %s has no code", cb.Redacted())
	}
	tok, err := cfg.Exchange(ctx, code, oauth2.VerifierOption(pkce))
	if err != nil {
		t.Fatalf("code exchange = %v", err)
	}
	raw, _ := tok.Extra("id_token").(string)
	idToken, err := v.Verify(ctx, raw)
	if err != nil {
		t.Fatalf("ID token: %v", err)
	}
	if idToken.Nonce != nonce {
		t.Errorf("ID token nonce = %q, want %q", idToken.Nonce, nonce)
	}
	if idToken.Subject != p.Subject {
		t.Errorf("ID token sub = %q, want %q", idToken.Subject, p.Subject)
	}
	if tok.RefreshToken == "" {
		t.Errorf("code exchange returned no refresh token")
	}
	return tok, idToken
}

// parseUnverified decodes a JWT's claims without checking its signature.
func parseUnverified(jwt string, claims any) error {
	parts := strings.Split(jwt, ".")
	if len(parts) != 3 {
		return fmt.Errorf("not a JWT: %d parts", len(parts))
	}
	b, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		return err
	}
	return json.Unmarshal(b, claims)
}

func random() string {
	b := make([]byte, 16)
	rand.Read(b)
	return hex.EncodeToString(b)
}

func mustParse(t *testing.T, s string) *url.URL {
	t.Helper()
	u, err := url.Parse(s)
	if err != nil {
		t.Fatalf("url.Parse(%q) = %v", s, err)
	}
	return u
}

func sortedKeys(m map[string]any) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}
