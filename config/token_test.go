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

// Derived tokens are sent as Bearer: with DPoP on they are refused, naming the route.
func TestRouteTokensRefusedWithDPoP(t *testing.T) {
	c := validConfig()
	c.OIDC.DPoP = true
	c.Routes[0].Token = RouteToken{Via: "exchange", Audience: []string{"reports"}}
	got := joined(c.Validate())
	if !slices.ContainsFunc(got, func(s string) bool {
		return strings.Contains(s, "routes[0].token (TH_ROUTES) derives a token, which is not supported with oidc.dpop: true yet")
	}) {
		t.Errorf("Validate() = %q, want routes[0].token refused with oidc.dpop", got)
	}
	yes := true
	c = validConfig()
	c.Routes[0].Token = RouteToken{Via: "exchange", Audience: []string{"reports"}, DPoP: &yes}
	got = joined(c.Validate())
	if !slices.ContainsFunc(got, func(s string) bool {
		return strings.Contains(s, "routes[0].token.dpop (TH_ROUTES) true is not supported yet")
	}) {
		t.Errorf("Validate() = %q, want routes[0].token.dpop refused", got)
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
