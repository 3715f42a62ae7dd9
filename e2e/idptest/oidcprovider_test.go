package idptest_test

import (
	"encoding/json"
	"io"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	"golang.org/x/oauth2"

	"github.com/tokenhandler/tokenhandler/e2e/idptest"
)

// The resource servers of the oidc-provider tests.
const (
	apiJWT    = "https://api.example.test/"    // JWT access tokens, a token-exchange target
	apiOpaque = "https://opaque.example.test/" // opaque access tokens, not an exchange target
	redirect  = "http://127.0.0.1:9/callback"  // never followed: Authorize stops there
)

var testResources = []idptest.Resource{
	{Indicator: apiJWT, Audience: "api", Scopes: []string{"api:read", "api:write"}, Format: idptest.FormatJWT, TTL: 7 * time.Second, Exchange: true},
	{Indicator: apiOpaque, Scopes: []string{"opaque:read"}},
}

// rp is the relying party of a test, speaking to the provider with raw HTTP.
type rp struct {
	t    *testing.T
	p    *idptest.Provider
	doc  map[string]any
	auth func(form url.Values, req *http.Request) // client authentication
}

func newRP(t *testing.T, p *idptest.Provider) *rp {
	r := &rp{t: t, p: p, doc: p.Discovery(t)}
	r.auth = func(_ url.Values, req *http.Request) { req.SetBasicAuth(p.ClientID, p.ClientSecret) }
	return r
}

func (r *rp) endpoint(name string) string {
	s, _ := r.doc[name].(string)
	if s == "" {
		r.t.Fatalf("discovery has no %s", name)
	}
	return s
}

// reply is a provider's answer to a POST.
type reply struct {
	status int
	header http.Header
	body   map[string]any
	raw    string
}

func (rep reply) str(k string) string { s, _ := rep.body[k].(string); return s }

// post sends form to the endpoint with client authentication and extra headers.
func (r *rp) post(endpoint string, form url.Values, hdr map[string]string) reply {
	r.t.Helper()
	form = cloneForm(form)
	req, _ := http.NewRequestWithContext(r.t.Context(), http.MethodPost, r.endpoint(endpoint), nil)
	r.auth(form, req)
	req.Body = io.NopCloser(strings.NewReader(form.Encode()))
	req.ContentLength = int64(len(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		r.t.Fatalf("POST %s: %v", endpoint, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	rep := reply{status: resp.StatusCode, header: resp.Header, raw: string(b)}
	_ = json.Unmarshal(b, &rep.body)
	return rep
}

func cloneForm(f url.Values) url.Values {
	c := url.Values{}
	for k, v := range f {
		c[k] = slices.Clone(v)
	}
	return c
}

// token posts to the token endpoint and fails the test unless it answers 200.
func (r *rp) token(form url.Values, hdr map[string]string) reply {
	r.t.Helper()
	rep := r.post("token_endpoint", form, hdr)
	if rep.status != http.StatusOK {
		r.t.Fatalf("token request (%s) = %d %s", form.Get("grant_type"), rep.status, rep.raw)
	}
	return rep
}

// wantError fails the test unless rep is a 400 with the OAuth error code.
func wantError(t *testing.T, what string, rep reply, code string) {
	t.Helper()
	if rep.status != http.StatusBadRequest || rep.str("error") != code {
		t.Errorf("%s = %d %s, want 400 %s", what, rep.status, rep.raw, code)
	}
}

// authorize runs the authorization request with PKCE in a fresh browser (so a fresh
// provider session and grant) and returns the code and the verifier. extra adds
// parameters (resource, ...); with par the request goes through the PAR endpoint first.
func (r *rp) authorize(extra url.Values, par bool) (code, verifier string) {
	r.t.Helper()
	verifier = oauth2.GenerateVerifier()
	state := random()
	q := url.Values{
		"client_id": {r.p.ClientID}, "response_type": {"code"}, "redirect_uri": {redirect},
		"scope": {"openid profile email offline_access"}, "state": {state}, "nonce": {random()},
		"code_challenge": {oauth2.S256ChallengeFromVerifier(verifier)}, "code_challenge_method": {"S256"},
	}
	for k, v := range extra {
		q[k] = v
	}
	if par {
		rep := r.post("pushed_authorization_request_endpoint", q, nil)
		if rep.status != http.StatusCreated || rep.str("request_uri") == "" {
			r.t.Fatalf("PAR = %d %s, want 201 with request_uri", rep.status, rep.raw)
		}
		q = url.Values{"client_id": {r.p.ClientID}, "request_uri": {rep.str("request_uri")}}
	}
	cb := r.p.Authorize(r.t, idptest.NewClient(r.t), r.endpoint("authorization_endpoint")+"?"+q.Encode(), redirect)
	if got := cb.Query(); got.Get("state") != state || got.Get("code") == "" || got.Get("iss") != r.p.Issuer {
		r.t.Fatalf("callback %s: want state, code and iss (RFC 9207)", cb.Redacted())
	}
	return cb.Query().Get("code"), verifier
}

func (r *rp) exchangeCode(code, verifier string, hdr map[string]string) reply {
	r.t.Helper()
	return r.token(url.Values{"grant_type": {"authorization_code"}, "code": {code}, "redirect_uri": {redirect}, "code_verifier": {verifier}}, hdr)
}

func refreshForm(rt string, kv ...string) url.Values {
	f := url.Values{"grant_type": {"refresh_token"}, "refresh_token": {rt}}
	for i := 0; i+1 < len(kv); i += 2 {
		f.Add(kv[i], kv[i+1])
	}
	return f
}

func exchangeForm(subject string, kv ...string) url.Values {
	f := url.Values{"grant_type": {idptest.GrantTokenExchange}, "subject_token": {subject}, "subject_token_type": {idptest.TokenTypeAccessToken}}
	for i := 0; i+1 < len(kv); i += 2 {
		f.Add(kv[i], kv[i+1])
	}
	return f
}

// TestOIDCProviderTokens proves, with raw HTTP against the real oidc-provider, what the
// route-token work relies on: the code flow with PKCE, strict refresh rotation, RFC 8707
// resource indicators on the refresh grant, our strict RFC 8693 token exchange, RFC 9701
// JWT introspection, revocation, and the harness's counters.
func TestOIDCProviderTokens(t *testing.T) {
	t.Parallel()
	p := idptest.Start(t, idptest.KindOIDCProvider, idptest.Options{
		RedirectURL: redirect, AccessTokenTTL: 5 * time.Second, Resources: testResources,
	})
	r := newRP(t, p)

	// PKCE is required: an authorization request without it is refused before login.
	noPKCE := p.Authorize(t, idptest.NewClient(t), r.endpoint("authorization_endpoint")+"?"+url.Values{
		"client_id": {p.ClientID}, "response_type": {"code"}, "redirect_uri": {redirect}, "scope": {"openid"}, "state": {random()},
	}.Encode(), redirect)
	if q := noPKCE.Query(); q.Get("code") != "" || q.Get("error") != "invalid_request" || p.LoginFormPosts() != 0 {
		t.Errorf("authorization without PKCE ended at %s after %d logins, want error=invalid_request at once", noPKCE.Redacted(), p.LoginFormPosts())
	}

	// The code flow, asking for both resources' scopes.
	code, verifier := r.authorize(url.Values{
		"resource": {apiJWT, apiOpaque},
		"scope":    {"openid profile email offline_access api:read opaque:read"},
	}, false)
	// A wrong verifier is refused (and spends nothing).
	wantError(t, "code with a wrong code_verifier", r.post("token_endpoint", url.Values{
		"grant_type": {"authorization_code"}, "code": {code}, "redirect_uri": {redirect}, "code_verifier": {oauth2.GenerateVerifier()},
	}, nil), "invalid_grant")
	tok := r.exchangeCode(code, verifier, nil)
	at, rt := tok.str("access_token"), tok.str("refresh_token")
	if at == "" || rt == "" || tok.str("id_token") == "" || tok.str("token_type") != "Bearer" {
		t.Fatalf("code exchange = %s, want access, refresh and ID tokens, Bearer", tok.raw)
	}
	if in := p.Introspect(t, at); !in.Active || in.Subject != p.Subject || in.ClientID != p.ClientID || strings.Count(at, ".") == 2 {
		t.Errorf("session access token: introspection %+v (token %d bytes), want an active opaque token of %s", in.Raw, len(at), p.Subject)
	}

	// RFC 8707: refresh with resource gives a JWT for that audience, signed with the
	// provider's key, with the resource's scope only; the refresh token rotates.
	rep := r.token(refreshForm(rt, "resource", apiJWT), nil)
	jwtAT, rt2 := rep.str("access_token"), rep.str("refresh_token")
	if rt2 == "" || rt2 == rt {
		t.Errorf("refresh did not rotate the refresh token")
	}
	claims, typ := p.VerifyJWT(t, jwtAT)
	if claims["aud"] != "api" || claims["scope"] != "api:read" || claims["sub"] != p.Subject || claims["iss"] != p.Issuer || typ != "at+jwt" {
		t.Errorf("JWT access token for %s: typ %q claims %v, want at+jwt, aud api, scope api:read", apiJWT, typ, claims)
	}
	if exp, iat := claims["exp"].(float64), claims["iat"].(float64); exp-iat != 7 {
		t.Errorf("JWT access token lives %v s, want the resource's 7 s", exp-iat)
	}
	// The other resource: opaque, its own audience.
	rep = r.token(refreshForm(rt2, "resource", apiOpaque), nil)
	rt3, opaqueAT := rep.str("refresh_token"), rep.str("access_token")
	if in := p.Introspect(t, opaqueAT); !in.Active || !slices.Equal(in.Audience, []string{apiOpaque}) || in.Scope != "opaque:read" {
		t.Errorf("opaque resource token: introspection %v, want aud %s, scope opaque:read", in.Raw, apiOpaque)
	}
	// A resource that was not granted, or is unknown: invalid_target.
	wantError(t, "refresh for an unknown resource", r.post("token_endpoint", refreshForm(rt3, "resource", "https://other.example.test/"), nil), "invalid_target")

	// RFC 8693 token exchange: the session's access token for a JWT of the allowed API.
	tokenCalls := p.TokenCalls()
	rep = r.token(exchangeForm(at, "audience", "api", "scope", "api:read"), nil)
	if rep.str("issued_token_type") != idptest.TokenTypeAccessToken || rep.str("token_type") != "Bearer" || rep.str("scope") != "api:read" {
		t.Errorf("token exchange = %s", rep.raw)
	}
	claims, _ = p.VerifyJWT(t, rep.str("access_token"))
	if claims["aud"] != "api" || claims["sub"] != p.Subject || claims["scope"] != "api:read" || claims["client_id"] != p.ClientID {
		t.Errorf("exchanged token claims %v, want aud api, sub %s, scope api:read", claims, p.Subject)
	}
	// By resource, and without scope: all the resource's scopes.
	rep = r.token(exchangeForm(at, "resource", apiJWT), nil)
	if rep.str("scope") != "api:read api:write" {
		t.Errorf("token exchange without scope = %s, want all of the resource's scopes", rep.raw)
	}
	// Each refusal of the strict grant.
	refusals := []struct {
		name string
		form url.Values
		code string
	}{
		{"no subject_token", url.Values{"grant_type": {idptest.GrantTokenExchange}, "subject_token_type": {idptest.TokenTypeAccessToken}, "audience": {"api"}}, "invalid_request"},
		{"wrong subject_token_type", exchangeForm(at, "audience", "api", "subject_token_type", "urn:ietf:params:oauth:token-type:refresh_token"), "invalid_request"},
		{"actor token", exchangeForm(at, "audience", "api", "actor_token", at, "actor_token_type", idptest.TokenTypeAccessToken), "invalid_request"},
		{"other requested_token_type", exchangeForm(at, "audience", "api", "requested_token_type", "urn:ietf:params:oauth:token-type:id_token"), "invalid_request"},
		{"no target", exchangeForm(at), "invalid_target"},
		{"two targets", exchangeForm(at, "audience", "api", "resource", apiJWT), "invalid_target"},
		{"resource not allowed", exchangeForm(at, "resource", apiOpaque), "invalid_target"},
		{"unknown audience", exchangeForm(at, "audience", "evil"), "invalid_target"},
		{"scope beyond the resource", exchangeForm(at, "audience", "api", "scope", "api:read admin"), "invalid_scope"},
		{"refresh token as subject", exchangeForm(rt3, "audience", "api"), "invalid_grant"},
		{"unknown subject", exchangeForm("not-a-token-of-this-provider", "audience", "api"), "invalid_grant"},
	}
	for _, c := range refusals {
		wantError(t, "token exchange with "+c.name, r.post("token_endpoint", c.form, nil), c.code)
	}
	if got, want := p.TokenExchangeCalls(), int64(2+len(refusals)); got != want {
		t.Errorf("TokenExchangeCalls() = %d, want %d", got, want)
	}
	if got, want := p.TokenCalls()-tokenCalls, p.TokenExchangeCalls(); got != want {
		t.Errorf("token calls during the exchanges = %d, want %d", got, want)
	}

	// RFC 9701: introspection as a signed JWT, verifiable with the provider's keys (of
	// opaque tokens: oidc-provider refuses to introspect its JWT access tokens).
	raw, ct := p.IntrospectJWT(t, opaqueAT)
	if !strings.HasPrefix(ct, "application/token-introspection+jwt") {
		t.Errorf("JWT introspection Content-Type = %q", ct)
	}
	claims, typ = p.VerifyJWT(t, raw)
	inner, _ := claims["token_introspection"].(map[string]any)
	if typ != "token-introspection+jwt" || claims["iss"] != p.Issuer || inner["active"] != true || inner["aud"] != apiOpaque || inner["sub"] != p.Subject {
		t.Errorf("JWT introspection: typ %q claims %v", typ, claims)
	}
	// The product's introspection calls go through the front and are counted.
	if rep := r.post("introspection_endpoint", url.Values{"token": {opaqueAT}}, nil); rep.status != http.StatusOK || rep.body["active"] != true {
		t.Errorf("introspection through the front = %d %s", rep.status, rep.raw)
	}
	if got := p.IntrospectionCalls(); got != 1 {
		t.Errorf("IntrospectionCalls() = %d, want 1 (the harness's own are not counted)", got)
	}

	// Revocation: the revoked access token is inactive afterwards.
	if rep := r.post("revocation_endpoint", url.Values{"token": {at}, "token_type_hint": {"access_token"}}, nil); rep.status != http.StatusOK {
		t.Errorf("revocation = %d %s", rep.status, rep.raw)
	}
	if in := p.Introspect(t, at); in.Active {
		t.Errorf("revoked access token is still active")
	}
	wantError(t, "token exchange of a revoked token", r.post("token_endpoint", exchangeForm(at, "audience", "api"), nil), "invalid_grant")
	if got := p.RevocationCalls(); got != 1 {
		t.Errorf("RevocationCalls() = %d, want 1", got)
	}
	if got := p.SecretCalls(); got == 0 {
		t.Errorf("SecretCalls() = 0 with client_secret_basic")
	}

	// Strict rotation, in a grant of its own: the rotated-away refresh token is
	// refused, and the replay revokes the grant (the newest refresh token dies too).
	code, verifier = r.authorize(nil, false)
	old := r.exchangeCode(code, verifier, nil).str("refresh_token")
	newer := r.token(refreshForm(old), nil).str("refresh_token")
	wantError(t, "refresh with a rotated-away refresh token", r.post("token_endpoint", refreshForm(old), nil), "invalid_grant")
	wantError(t, "refresh with the newest refresh token after a replay", r.post("token_endpoint", refreshForm(newer), nil), "invalid_grant")
	if got := p.GrantCalls(idptest.GrantRefreshToken); got != p.RefreshCalls() || got != 6 {
		t.Errorf("GrantCalls(refresh_token) = %d, RefreshCalls() = %d, want 6", got, p.RefreshCalls())
	}

	// Access tokens expire after AccessTokenTTL, with no clock tolerance.
	if exp := tok.body["expires_in"].(float64); exp != 5 {
		t.Errorf("expires_in = %v, want 5", exp)
	}
}

// TestOIDCProviderPARAndPrivateKeyJWT proves PAR (required for the client) and
// private_key_jwt client authentication against the real provider.
func TestOIDCProviderPARAndPrivateKeyJWT(t *testing.T) {
	t.Parallel()
	key := idptest.NewTestKey(t)
	p := idptest.Start(t, idptest.KindOIDCProvider, idptest.Options{
		RedirectURL: redirect, TokenEndpointAuthMethod: "private_key_jwt", ClientJWKS: key.PublicJWKS(),
		PARRequired: true, DPoP: idptest.DPoPOff,
	})
	if p.ClientSecret != "" {
		t.Fatalf("ClientSecret = %q with private_key_jwt, want none", p.ClientSecret)
	}
	r := newRP(t, p)
	signWith := func(k *idptest.TestKey) func(url.Values, *http.Request) {
		return func(form url.Values, _ *http.Request) {
			form.Set("client_id", p.ClientID)
			form.Set("client_assertion_type", idptest.ClientAssertionType)
			form.Set("client_assertion", k.ClientAssertion(t, p.ClientID, p.Issuer))
		}
	}
	r.auth = signWith(key)
	if r.doc["require_pushed_authorization_requests"] == true {
		t.Errorf("PAR is required globally; want per client")
	}
	if _, ok := r.doc["dpop_signing_alg_values_supported"]; ok {
		t.Errorf("DPoPOff: discovery still advertises DPoP")
	}

	// A plain authorization request is refused: PAR is required for this client.
	plain := p.Authorize(t, idptest.NewClient(t), r.endpoint("authorization_endpoint")+"?"+url.Values{
		"client_id": {p.ClientID}, "response_type": {"code"}, "redirect_uri": {redirect}, "scope": {"openid"},
		"state": {random()}, "code_challenge": {oauth2.S256ChallengeFromVerifier(oauth2.GenerateVerifier())}, "code_challenge_method": {"S256"},
	}.Encode(), redirect)
	if q := plain.Query(); q.Get("code") != "" || q.Get("error") != "invalid_request" || p.LoginFormPosts() != 0 {
		t.Errorf("authorization without PAR ended at %s, want error=invalid_request without login", plain.Redacted())
	}

	// PAR with a client assertion; the browser carries only client_id and request_uri.
	code, verifier := r.authorize(nil, true)
	tok := r.exchangeCode(code, verifier, nil)
	if tok.str("refresh_token") == "" {
		t.Errorf("code exchange = %s, want a refresh token", tok.raw)
	}
	r.token(refreshForm(tok.str("refresh_token")), nil)
	reqs := p.AuthorizationRequests()
	last := reqs[len(reqs)-1]
	if len(last) != 2 || last.Get("client_id") != p.ClientID || !strings.HasPrefix(last.Get("request_uri"), "urn:ietf:params:oauth:request_uri:") {
		t.Errorf("authorization request after PAR carried %v, want client_id and request_uri only", last)
	}
	if got := p.PARCalls(); got != 1 {
		t.Errorf("PARCalls() = %d, want 1", got)
	}
	if got, want := p.SecretCalls(), int64(0); got != want {
		t.Errorf("SecretCalls() = %d, want %d", got, want)
	}

	// Client authentication fails with another key, a client secret, or a replayed
	// assertion.
	code, verifier = r.authorize(nil, true)
	form := url.Values{"grant_type": {"authorization_code"}, "code": {code}, "redirect_uri": {redirect}, "code_verifier": {verifier}}
	r.auth = signWith(idptest.NewTestKey(t))
	wantUnauthorized(t, "a client assertion signed with another key", r.post("token_endpoint", form, nil))
	r.auth = func(_ url.Values, req *http.Request) { req.SetBasicAuth(p.ClientID, "guess") }
	wantUnauthorized(t, "client_secret_basic for a private_key_jwt client", r.post("token_endpoint", form, nil))
	assertion := key.ClientAssertion(t, p.ClientID, p.Issuer)
	r.auth = func(form url.Values, _ *http.Request) {
		form.Set("client_id", p.ClientID)
		form.Set("client_assertion_type", idptest.ClientAssertionType)
		form.Set("client_assertion", assertion)
	}
	r.token(form, nil)
	wantUnauthorized(t, "a replayed client assertion", r.post("token_endpoint", refreshForm("x"), nil))
}

func wantUnauthorized(t *testing.T, what string, rep reply) {
	t.Helper()
	if rep.status != http.StatusUnauthorized || rep.str("error") != "invalid_client" {
		t.Errorf("%s = %d %s, want 401 invalid_client", what, rep.status, rep.raw)
	}
}

// TestOIDCProviderDPoP proves DPoP-bound tokens (RFC 9449) with server nonces required,
// against the real provider, with proofs made by a test key; the client authenticates
// with client_secret_post.
func TestOIDCProviderDPoP(t *testing.T) {
	t.Parallel()
	p := idptest.Start(t, idptest.KindOIDCProvider, idptest.Options{
		RedirectURL: redirect, DPoP: idptest.DPoPRequired, DPoPNonce: true, Resources: testResources,
		TokenEndpointAuthMethod: "client_secret_post",
	})
	r := newRP(t, p)
	r.auth = func(form url.Values, _ *http.Request) {
		form.Set("client_id", p.ClientID)
		form.Set("client_secret", p.ClientSecret)
	}
	key := idptest.NewTestKey(t)
	tokenURL := r.endpoint("token_endpoint")
	if algs, _ := r.doc["dpop_signing_alg_values_supported"].([]any); !slices.Contains(algs, any("ES256")) {
		t.Errorf("dpop_signing_alg_values_supported = %v, want ES256 among them", r.doc["dpop_signing_alg_values_supported"])
	}

	// withNonce sends a token request with a proof; when the provider answers
	// use_dpop_nonce, it retries once with the nonce it gave.
	var nonce string
	withNonce := func(form url.Values) reply {
		t.Helper()
		rep := r.post("token_endpoint", form, map[string]string{"DPoP": key.DPoPProof(t, http.MethodPost, tokenURL, nonce, "")})
		if rep.status == http.StatusBadRequest && rep.str("error") == "use_dpop_nonce" {
			nonce = rep.header.Get("DPoP-Nonce")
			rep = r.post("token_endpoint", form, map[string]string{"DPoP": key.DPoPProof(t, http.MethodPost, tokenURL, nonce, "")})
		}
		if rep.status != http.StatusOK {
			t.Fatalf("token request with DPoP = %d %s", rep.status, rep.raw)
		}
		if n := rep.header.Get("DPoP-Nonce"); n != "" {
			nonce = n
		}
		return rep
	}

	code, verifier := r.authorize(url.Values{"resource": {apiJWT}, "scope": {"openid offline_access api:read"}}, false)
	form := url.Values{"grant_type": {"authorization_code"}, "code": {code}, "redirect_uri": {redirect}, "code_verifier": {verifier}}
	// Without a nonce: 400 use_dpop_nonce and a DPoP-Nonce header.
	rep := r.post("token_endpoint", form, map[string]string{"DPoP": key.DPoPProof(t, http.MethodPost, tokenURL, "", "")})
	if rep.status != http.StatusBadRequest || rep.str("error") != "use_dpop_nonce" || rep.header.Get("DPoP-Nonce") == "" {
		t.Fatalf("DPoP proof without nonce = %d %s (DPoP-Nonce %q), want 400 use_dpop_nonce with a nonce", rep.status, rep.raw, rep.header.Get("DPoP-Nonce"))
	}
	tok := withNonce(form)
	at, rt := tok.str("access_token"), tok.str("refresh_token")
	if tok.str("token_type") != "DPoP" {
		t.Errorf("token_type = %q, want DPoP", tok.str("token_type"))
	}
	in := p.Introspect(t, at)
	if !in.Active || in.Cnf.JKT != key.Thumbprint() || in.TokenType != "DPoP" {
		t.Errorf("introspection of the bound token: %v, want cnf.jkt %s", in.Raw, key.Thumbprint())
	}
	if got := p.DPoPTokenCalls(); got != p.TokenCalls() || got != 3 {
		t.Errorf("DPoPTokenCalls() = %d of %d, want 3 of 3", got, p.TokenCalls())
	}
	if got := p.SecretCalls(); got != 3 {
		t.Errorf("SecretCalls() = %d with client_secret_post, want 3", got)
	}

	// A refresh keeps the binding, also for a resource's JWT (cnf.jkt in the JWT).
	rep = withNonce(refreshForm(rt, "resource", apiJWT))
	claims, _ := p.VerifyJWT(t, rep.str("access_token"))
	if cnf, _ := claims["cnf"].(map[string]any); cnf["jkt"] != key.Thumbprint() {
		t.Errorf("refreshed JWT cnf = %v, want jkt %s", claims["cnf"], key.Thumbprint())
	}
	rt = rep.str("refresh_token")
	// Refused: no proof (the client requires DPoP), a proof for another URL, a replayed proof.
	wantError(t, "refresh without a DPoP proof", r.post("token_endpoint", refreshForm(rt), nil), "invalid_grant")
	rep = r.post("token_endpoint", refreshForm(rt), map[string]string{"DPoP": key.DPoPProof(t, http.MethodPost, p.Issuer+"/elsewhere", nonce, "")})
	wantError(t, "refresh with a proof for another htu", rep, "invalid_dpop_proof")
	proof := key.DPoPProof(t, http.MethodPost, tokenURL, nonce, "")
	first := r.post("token_endpoint", refreshForm(rt), map[string]string{"DPoP": proof})
	if first.status != http.StatusOK {
		t.Fatalf("refresh with a fresh proof = %d %s", first.status, first.raw)
	}
	rep = r.post("token_endpoint", refreshForm(first.str("refresh_token")), map[string]string{"DPoP": proof})
	wantError(t, "refresh with a replayed proof", rep, "invalid_grant")

	// Token exchange of a bound token needs a proof of the same key, and binds the new one.
	wantError(t, "exchange of a bound token without proof", r.post("token_endpoint", exchangeForm(at, "audience", "api"), nil), "invalid_grant")
	other := idptest.NewTestKey(t)
	rep = r.post("token_endpoint", exchangeForm(at, "audience", "api"), map[string]string{"DPoP": other.DPoPProof(t, http.MethodPost, tokenURL, nonce, "")})
	wantError(t, "exchange of a bound token with another key's proof", rep, "invalid_grant")
	rep = withNonce(exchangeForm(at, "audience", "api"))
	claims, _ = p.VerifyJWT(t, rep.str("access_token"))
	if cnf, _ := claims["cnf"].(map[string]any); cnf["jkt"] != key.Thumbprint() || rep.str("token_type") != "DPoP" {
		t.Errorf("exchanged token: %s, claims %v, want bound to %s", rep.raw, claims, key.Thumbprint())
	}

	// The bound token at userinfo: DPoP scheme with a proof carrying ath.
	userinfo := r.endpoint("userinfo_endpoint")
	get := func(scheme, proof string) *http.Response {
		req, _ := http.NewRequestWithContext(t.Context(), http.MethodGet, userinfo, nil)
		req.Header.Set("Authorization", scheme+" "+at)
		if proof != "" {
			req.Header.Set("DPoP", proof)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp
	}
	if resp := get("Bearer", ""); resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("userinfo with the bound token as Bearer = %d, want 401", resp.StatusCode)
	}
	resp := get("DPoP", key.DPoPProof(t, http.MethodGet, userinfo, nonce, at))
	if resp.StatusCode == http.StatusUnauthorized && resp.Header.Get("DPoP-Nonce") != "" {
		nonce = resp.Header.Get("DPoP-Nonce")
		resp = get("DPoP", key.DPoPProof(t, http.MethodGet, userinfo, nonce, at))
	}
	if resp.StatusCode != http.StatusOK {
		t.Errorf("userinfo with the bound token and a proof = %d (%s)", resp.StatusCode, resp.Header.Get("WWW-Authenticate"))
	}
}
