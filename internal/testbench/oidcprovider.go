package testbench

import (
	"path/filepath"
	"time"
)

// OIDCProviderScript is e2e/idp/oidc-provider/provider.mjs of the source tree at root:
// panva oidc-provider run with node, configured by an OIDCProvider document.
func OIDCProviderScript(root string) string {
	return filepath.Join(root, "e2e", "idp", "oidc-provider", "provider.mjs")
}

// OIDCProvider is the configuration document provider.mjs reads (its header lists the
// keys): one account, the clients' metadata as oidc-provider takes it, RFC 8707
// resource servers, DPoP. Write it with WriteConfig and start node with
// OIDCProviderScript and the file's path.
type OIDCProvider struct {
	// Modules is the directory holding node_modules/oidc-provider (scripts/idp-bin.sh
	// oidc-provider).
	Modules string
	Issuer  string
	Port    int // loopback port it listens on
	// Lifetimes; zero: one hour (access and ID tokens), a day (refresh tokens).
	AccessTokenTTL, IDTokenTTL, RefreshTokenTTL time.Duration
	// The one account: its ID is also the login at the form, which takes any password.
	AccountID, Email, Name string
	Clients                []map[string]any
	Resources              map[string]OIDCResource // by resource indicator
	DPoP, DPoPNonce        bool
	// SigningAlg is the signing key's algorithm (ID tokens, JWT access tokens): RS256
	// (empty) or PS256.
	SigningAlg string
	// DefaultResource, if set, is the resource of every request that names none.
	DefaultResource string
}

// OIDCResource is a resource server: its tokens' audience, the scopes it grants, the
// access-token format ("jwt" or "opaque").
type OIDCResource struct {
	Audience, Scope, Format string
	TTL                     time.Duration // zero: the provider's access-token TTL
	Exchange                bool          // may be a token-exchange target
}

// Config is the JSON document.
func (c OIDCProvider) Config() map[string]any {
	seconds := func(d, def time.Duration) int64 {
		if d <= 0 {
			d = def
		}
		return int64((d + time.Second - 1) / time.Second)
	}
	resources := map[string]any{}
	for ind, r := range c.Resources {
		format := r.Format
		if format == "" {
			format = "opaque"
		}
		resources[ind] = map[string]any{
			"audience": r.Audience, "scope": r.Scope, "accessTokenFormat": format,
			"accessTokenTTL": seconds(r.TTL, 0), "exchange": r.Exchange,
		}
	}
	clients := make([]any, len(c.Clients))
	for i, cl := range c.Clients {
		clients[i] = cl
	}
	cfg := map[string]any{
		"modules": c.Modules,
		"issuer":  c.Issuer,
		"port":    c.Port,
		"ttl": map[string]any{
			"accessToken":  seconds(c.AccessTokenTTL, time.Hour),
			"idToken":      seconds(c.IDTokenTTL, time.Hour),
			"refreshToken": seconds(c.RefreshTokenTTL, 24*time.Hour),
		},
		"account":   map[string]any{"id": c.AccountID, "email": c.Email, "name": c.Name},
		"clients":   clients,
		"resources": resources,
		"dpop":      map[string]any{"enabled": c.DPoP, "requireNonce": c.DPoPNonce},
	}
	if c.SigningAlg != "" {
		cfg["signingAlg"] = c.SigningAlg
	}
	if c.DefaultResource != "" {
		cfg["defaultResource"] = c.DefaultResource
	}
	return cfg
}
