package oauthagent

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

// TestBackchannelBaseURL: discovery is fetched from the back-channel base; the endpoints
// tokenhandler calls itself are rewritten to it, while the browser keeps the published
// authorization and end-session endpoints, and the issuer is still checked exactly.
func TestBackchannelBaseURL(t *testing.T) {
	const public = "http://localhost:5556/dex"
	var discoveryPath string
	issuer := public
	back := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		discoveryPath = r.URL.Path
		_ = json.NewEncoder(w).Encode(map[string]any{
			"issuer":                 issuer,
			"authorization_endpoint": public + "/auth",
			"token_endpoint":         public + "/token",
			"jwks_uri":               public + "/keys",
			"userinfo_endpoint":      public + "/userinfo",
			"revocation_endpoint":    public + "/revoke",
			"end_session_endpoint":   public + "/logout",
		})
	}))
	defer back.Close()

	o := &Options{Issuer: public, BackchannelBaseURL: back.URL, ClientID: "c", HTTPClient: back.Client()}
	p, err := discover(context.Background(), o)
	if err != nil {
		t.Fatalf("discover() = %v", err)
	}
	if discoveryPath != "/dex/.well-known/openid-configuration" {
		t.Errorf("discovery fetched at %q, want the issuer's path on the back-channel base", discoveryPath)
	}
	for name, got := range map[string]string{
		"token": p.meta.TokenEndpoint, "jwks": p.meta.JWKSURI, "userinfo": p.meta.UserinfoEndpoint,
		"revocation": p.meta.RevocationEndpoint, "oauth2 token": p.oauth2.Endpoint.TokenURL,
	} {
		if !strings.HasPrefix(got, back.URL+"/dex/") {
			t.Errorf("%s endpoint = %q, want it on %s", name, got, back.URL)
		}
	}
	if p.meta.AuthorizationEndpoint != public+"/auth" || p.oauth2.Endpoint.AuthURL != public+"/auth" || p.meta.EndSessionEndpoint != public+"/logout" {
		t.Errorf("browser endpoints = %q, %q, want the public ones", p.meta.AuthorizationEndpoint, p.meta.EndSessionEndpoint)
	}

	issuer = "http://dex:5556/dex" // a provider that reports its internal name
	if _, err := discover(context.Background(), o); err == nil || !strings.Contains(err.Error(), "does not match") {
		t.Errorf("discover() with a different issuer = %v, want an exact-issuer error", err)
	}
}
