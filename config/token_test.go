package config

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

func tokenConfig(t *testing.T, routes ...Route) *Config {
	t.Helper()
	c := Default()
	c.PublicURL = "https://app.example.com"
	c.OIDC.Issuer = "https://idp.example.com"
	c.OIDC.ClientID = "spa"
	c.OIDC.ClientSecret = "s"
	c.Cookies.Keys = []Secret{testKey}
	c.OIDC.PostLogoutRedirectURL = "https://app.example.com/"
	for i := range routes {
		routes[i].Upstream = "http://127.0.0.1:9000"
		routes[i].Timeout = DefaultRouteTimeout
	}
	c.Routes = routes
	return c
}

func TestValidateRouteTokens(t *testing.T) {
	key := filepath.Join(t.TempDir(), "sign.pem")
	if err := os.WriteFile(key, []byte("x"), 0o600); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name    string
		token   RouteToken
		signing []string
		want    []string // each a problem's prefix; none: valid
	}{
		{name: "zero value", token: RouteToken{}},
		{name: "entra scope via refresh", token: RouteToken{Via: "refresh", Scope: "api://orders/.default"}},
		{name: "resource via refresh", token: RouteToken{Via: "refresh", Resource: []string{"https://orders.example.com"}}},
		{name: "exchange", token: RouteToken{Via: "exchange", Audience: []string{"orders"}, Scope: "read"}},
		{name: "mint with a key", token: RouteToken{Format: "jwt"}, signing: []string{key}},
		{name: "phantom token", token: RouteToken{Format: "jwt", JWTFrom: "introspection"}},
		{name: "unknown via", token: RouteToken{Via: "magic"}, want: []string{"routes[0].token.via (TH_ROUTES) must be one of session, refresh, exchange"}},
		{name: "unknown format", token: RouteToken{Format: "jws"}, want: []string{"routes[0].token.format (TH_ROUTES) must be one of as_issued, jwt"}},
		{name: "unknown jwt_from", token: RouteToken{Format: "jwt", JWTFrom: "idp"}, want: []string{"routes[0].token.jwt_from (TH_ROUTES) must be one of mint, introspection"}},
		{name: "session with a resource", token: RouteToken{Resource: []string{"https://x"}}, want: []string{"routes[0].token.via (TH_ROUTES) is session"}},
		{name: "session with an audience", token: RouteToken{Audience: []string{"orders"}}, want: []string{"routes[0].token.via (TH_ROUTES) is session"}},
		{name: "session with an audience, as_issued", token: RouteToken{Audience: []string{"orders"}, Format: "as_issued"}, want: []string{"routes[0].token.via (TH_ROUTES) is session"}},
		{name: "session with an audience, phantom", token: RouteToken{Audience: []string{"orders"}, Format: "jwt", JWTFrom: "introspection"}, want: []string{"routes[0].token.via (TH_ROUTES) is session"}},
		{name: "session minted for an audience", token: RouteToken{Audience: []string{"orders"}, Format: "jwt"}, signing: []string{key}},
		{name: "session minted with a scope", token: RouteToken{Scope: "a", Format: "jwt"}, signing: []string{key}, want: []string{"routes[0].token.via (TH_ROUTES) is session"}},
		{name: "refresh without resource or scope", token: RouteToken{Via: "refresh"}, want: []string{"routes[0].token.via (TH_ROUTES) is refresh: it needs"}},
		{name: "refresh with audience", token: RouteToken{Via: "refresh", Scope: "a", Audience: []string{"x"}}, want: []string{"routes[0].token.audience (TH_ROUTES) is RFC 8693"}},
		{name: "relative resource", token: RouteToken{Via: "exchange", Resource: []string{"/orders"}}, want: []string{"routes[0].token.resource[0] (TH_ROUTES) must be an absolute URI"}},
		{name: "resource with fragment", token: RouteToken{Via: "exchange", Resource: []string{"https://x/#a"}}, want: []string{"routes[0].token.resource[0] (TH_ROUTES) must be an absolute URI"}},
		{name: "bad scope", token: RouteToken{Via: "exchange", Scope: `a "b"`}, want: []string{"routes[0].token.scope (TH_ROUTES) has an invalid scope token"}},
		{name: "mint without keys", token: RouteToken{Format: "jwt"}, want: []string{"token_signing.keys (TH_TOKEN_SIGNING_KEYS) is required"}},
		{name: "missing key file", token: RouteToken{Format: "jwt"}, signing: []string{key + ".gone"}, want: []string{"token_signing.keys[0] (TH_TOKEN_SIGNING_KEYS) cannot be read"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c := tokenConfig(t, Route{Path: "/api/", Token: tc.token})
			c.TokenSigning.Keys = tc.signing
			got := joined(c.Validate())
			if len(got) != len(tc.want) {
				t.Fatalf("Validate() = %q, want %q", got, tc.want)
			}
			for i, w := range tc.want {
				if !strings.HasPrefix(got[i], w) {
					t.Errorf("Validate()[%d] = %q, want prefix %q", i, got[i], w)
				}
			}
		})
	}
}

func TestRouteTokenFromEnvAndYAML(t *testing.T) {
	env := map[string]string{"TH_ROUTES": `[{"path":"/o/","upstream":"http://127.0.0.1:1","token":{"via":"exchange","resource":["https://o"],"audience":["o"],"scope":"read","format":"jwt","jwt_from":"introspection","dpop":false}}]`}
	c, _, err := Load("", func(k string) string { return env[k] }, nil)
	if err != nil {
		t.Fatalf("Load error = %v", err)
	}
	f := false
	want := RouteToken{Via: "exchange", Resource: []string{"https://o"}, Audience: []string{"o"}, Scope: "read", Format: "jwt", JWTFrom: "introspection", DPoP: &f}
	got := c.Routes[0].Token
	if got.Via != want.Via || !slices.Equal(got.Resource, want.Resource) || !slices.Equal(got.Audience, want.Audience) ||
		got.Scope != want.Scope || got.Format != want.Format || got.JWTFrom != want.JWTFrom || got.DPoP == nil || *got.DPoP {
		t.Errorf("TH_ROUTES token = %+v, want %+v", got, want)
	}

	yml := filepath.Join(t.TempDir(), "c.yaml")
	if err := os.WriteFile(yml, []byte("routes:\n  - path: /o/\n    upstream: http://127.0.0.1:1\n    token:\n      via: refresh\n      scope: api://o/.default\n      dpop: true\ntoken_signing:\n  ttl: 2m\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	c, _, err = Load(yml, nil, nil)
	if err != nil {
		t.Fatalf("Load(yaml) error = %v", err)
	}
	if tk := c.Routes[0].Token; tk.Via != "refresh" || tk.Scope != "api://o/.default" || tk.DPoP == nil || !*tk.DPoP || c.TokenSigning.TTL.Minutes() != 2 {
		t.Errorf("YAML token = %+v, ttl %v", tk, c.TokenSigning.TTL)
	}

	if err := os.WriteFile(yml, []byte("routes:\n  - path: /o/\n    upstream: http://127.0.0.1:1\n    token:\n      vai: refresh\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, _, err := Load(yml, nil, nil); err == nil || !strings.Contains(err.Error(), "routes[0].token.vai") {
		t.Errorf("Load(unknown token key) error = %v, want it to name routes[0].token.vai", err)
	}
}

func TestCheckProvider(t *testing.T) {
	c := tokenConfig(t,
		Route{Path: "/a/", Token: RouteToken{Via: "exchange", Audience: []string{"a"}}},
		Route{Path: "/b/", Token: RouteToken{Format: "jwt", JWTFrom: "introspection"}},
		Route{Path: "/c/", Token: RouteToken{Via: "refresh", Scope: "c"}},
	)
	tests := []struct {
		name string
		f    ProviderFeatures
		want []string
	}{
		{name: "serves all", f: ProviderFeatures{IntrospectionEndpoint: "https://idp/introspect", GrantTypes: []string{"refresh_token", GrantTokenExchange}}},
		{name: "grant types not listed", f: ProviderFeatures{IntrospectionEndpoint: "https://idp/introspect"}},
		{name: "no exchange, no introspection", f: ProviderFeatures{GrantTypes: []string{"refresh_token"}}, want: []string{
			"routes[0].token.via (TH_ROUTES) is exchange, but the provider's grant_types_supported lacks urn:ietf:params:oauth:grant-type:token-exchange",
			"routes[1].token.format (TH_ROUTES) is jwt, but the provider's discovery has no introspection_endpoint and oidc.introspection_endpoint (TH_OIDC_INTROSPECTION_ENDPOINT) is not set",
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := joined(c.CheckProvider(tc.f)); !slices.Equal(got, tc.want) {
				t.Errorf("CheckProvider(%+v) = %q, want %q", tc.f, got, tc.want)
			}
		})
	}
	// oidc.introspection_endpoint stands in for discovery's.
	withKey := *c
	withKey.OIDC.IntrospectionEndpoint = "https://hydra-admin.internal/admin/oauth2/introspect"
	if got := joined(withKey.CheckProvider(ProviderFeatures{GrantTypes: []string{"refresh_token", GrantTokenExchange}})); len(got) != 0 {
		t.Errorf("CheckProvider without discovery's introspection_endpoint, with oidc.introspection_endpoint = %q, want none", got)
	}
	got := joined(c.CheckProvider(ProviderFeatures{GrantTypes: []string{"refresh_token", GrantTokenExchange}}))
	if len(got) != 1 || !strings.Contains(got[0], "oidc.introspection_endpoint (TH_OIDC_INTROSPECTION_ENDPOINT) is not set") {
		t.Errorf("CheckProvider without any introspection endpoint = %q, want the route named and the key suggested", got)
	}
	notes := c.TokenNotes()
	if len(notes) != 3 || !strings.Contains(notes[0], "routes[0] /a/ gets RFC 8693 token exchange") {
		t.Errorf("TokenNotes() = %q", notes)
	}
}

// token.dpop (DESIGN "Sender-constrained tokens"): a derived token is bound by default
// when oidc.dpop is, either way on request, except a format jwt token, which is a bearer
// token whatever the provider does: true (said or by default) is refused with the advice
// to say false. A route that derives nothing cannot change how the session's token is
// bound.
func TestValidateRouteTokenDPoP(t *testing.T) {
	yes, no := true, false
	tests := []struct {
		name     string
		oidcDPoP bool
		token    RouteToken
		want     string // the one problem's prefix; "": valid
		needsKey bool
	}{
		{name: "refresh, bound by oidc.dpop", oidcDPoP: true, token: RouteToken{Via: "refresh", Resource: []string{"https://o/"}}, needsKey: true},
		{name: "exchange, bound by oidc.dpop", oidcDPoP: true, token: RouteToken{Via: "exchange", Audience: []string{"o"}}, needsKey: true},
		{name: "refresh, unbound with oidc.dpop", oidcDPoP: true, token: RouteToken{Via: "refresh", Scope: "o", DPoP: &no}, needsKey: true},
		{name: "refresh, bound without oidc.dpop", token: RouteToken{Via: "refresh", Scope: "o", DPoP: &yes}, needsKey: true},
		{name: "exchange, unbound, oidc.dpop off", token: RouteToken{Via: "exchange", Audience: []string{"o"}, DPoP: &no}},
		{name: "phantom token, dpop false", oidcDPoP: true, token: RouteToken{Format: "jwt", JWTFrom: "introspection", DPoP: &no}, needsKey: true},
		{name: "phantom token, dpop by default", oidcDPoP: true, token: RouteToken{Format: "jwt", JWTFrom: "introspection"}, needsKey: true,
			want: "routes[0].token.dpop (TH_ROUTES) is true (oidc.dpop's default), but token.format jwt yields a bearer token (a minted JWT or a signed introspection response cannot be DPoP-bound): set token.dpop: false"},
		{name: "jwt via exchange, dpop true", token: RouteToken{Via: "exchange", Audience: []string{"o"}, Format: "jwt", JWTFrom: "introspection", DPoP: &yes}, needsKey: true,
			want: "routes[0].token.dpop (TH_ROUTES) is true, but token.format jwt yields a bearer token"},
		{name: "session token, dpop as oidc.dpop", oidcDPoP: true, token: RouteToken{DPoP: &yes}, needsKey: true},
		{name: "session token, dpop false with oidc.dpop", oidcDPoP: true, token: RouteToken{DPoP: &no}, needsKey: true,
			want: "routes[0].token.dpop (TH_ROUTES) is false, but the route derives no token"},
		{name: "session token, dpop true without oidc.dpop", token: RouteToken{DPoP: &yes},
			want: "routes[0].token.dpop (TH_ROUTES) is true, but the route derives no token"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c := tokenConfig(t, Route{Path: "/api/", Token: tc.token})
			c.OIDC.DPoP = tc.oidcDPoP
			got := joined(c.Validate())
			for _, g := range got {
				if strings.Contains(g, "not supported") {
					t.Errorf("Validate() still refuses as unsupported: %q", g)
				}
			}
			switch {
			case tc.want == "" && len(got) != 0:
				t.Errorf("Validate() = %q, want valid", got)
			case tc.want != "" && (len(got) != 1 || !strings.HasPrefix(got[0], tc.want)):
				t.Errorf("Validate() = %q, want one problem %q", got, tc.want)
			}
			if k := c.DPoPKeyNeeded(); k != tc.needsKey {
				t.Errorf("DPoPKeyNeeded() = %v, want %v", k, tc.needsKey)
			}
		})
	}
}

// check-config says which derived tokens are bound, and warns about an unbound exchange
// of a bound session token, and about a generated key for a bound route.
func TestRouteTokenDPoPNotes(t *testing.T) {
	no, yes := false, true
	c := tokenConfig(t,
		Route{Path: "/a/", Token: RouteToken{Via: "exchange", Audience: []string{"a"}}},
		Route{Path: "/b/", Token: RouteToken{Via: "exchange", Audience: []string{"b"}, DPoP: &no}},
	)
	c.OIDC.DPoP = true
	notes := c.TokenNotes()
	if len(notes) != 3 || !strings.HasSuffix(notes[0], ", DPoP-bound (sent as DPoP with a proof)") ||
		!strings.HasSuffix(notes[1], ", sent as Bearer") || !strings.Contains(notes[2], "routes[1] /b/ exchanges the session's DPoP-bound token without a proof") {
		t.Errorf("TokenNotes() = %q", notes)
	}
	c = tokenConfig(t, Route{Path: "/a/", Token: RouteToken{Via: "refresh", Scope: "a", DPoP: &yes}})
	if !slices.ContainsFunc(c.Notes(), func(s string) bool {
		return strings.HasPrefix(s, "a route's token.dpop is true and dpop.key_file is empty")
	}) {
		t.Errorf("Notes() = %q, want the generated-key note", c.Notes())
	}
}

// oidc.introspection_endpoint comes from TH_OIDC_INTROSPECTION_ENDPOINT, and check-config
// says whether it is used.
func TestIntrospectionEndpointKey(t *testing.T) {
	const hydra = "https://hydra-admin.internal/admin/oauth2/introspect"
	env := map[string]string{"TH_OIDC_INTROSPECTION_ENDPOINT": hydra}
	c, warnings, err := Load("", func(k string) string { return env[k] }, []string{"TH_OIDC_INTROSPECTION_ENDPOINT=" + hydra})
	if err != nil || len(warnings) != 0 || c.OIDC.IntrospectionEndpoint != hydra {
		t.Fatalf("Load = %q, warnings %q, error %v; want oidc.introspection_endpoint %s", c.OIDC.IntrospectionEndpoint, warnings, err, hydra)
	}
	c = tokenConfig(t, Route{Path: "/api/"})
	c.OIDC.IntrospectionEndpoint = hydra
	if n := c.Notes(); !containsLine(n, "oidc.introspection_endpoint is set but no route has token.format jwt") {
		t.Errorf("Notes() without a jwt route = %q, want it said that the key is unused", n)
	}
	c.Routes[0].Token = RouteToken{Format: "jwt", JWTFrom: "introspection"}
	if n := c.Notes(); !containsLine(n, "tokenhandler introspects at "+hydra) {
		t.Errorf("Notes() with a jwt route = %q, want the endpoint named", n)
	}
}
