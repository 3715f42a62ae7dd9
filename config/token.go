package config

import (
	"errors"
	"fmt"
	"os"
	"slices"
	"strings"
	"time"
)

// Values of routes[].token, in the order messages list them.
var (
	tokenVias    = []string{"session", "refresh", "exchange"}
	tokenFormats = []string{"as_issued", "jwt"}
	jwtSources   = []string{"mint", "introspection"}
)

// GrantTokenExchange is the RFC 8693 grant type a provider lists in
// grant_types_supported when it offers token exchange.
const GrantTokenExchange = "urn:ietf:params:oauth:grant-type:token-exchange"

// RouteToken is a route's token policy (routes[].token): which token the upstream
// receives. The zero value is the session's access token as issued.
type RouteToken struct {
	// Via is "session" (default: the session's access token), "refresh" (a refresh-token
	// grant carrying Resource and/or Scope) or "exchange" (RFC 8693 with the session's
	// access token as subject_token).
	Via string `yaml:"via" json:"via"`
	// Resource are RFC 8707 resource indicators (absolute URIs).
	Resource []string `yaml:"resource" json:"resource"`
	// Audience are RFC 8693 audience values (via exchange), or the aud of the JWT
	// tokenhandler mints (format jwt, jwt_from mint; with any via).
	Audience []string `yaml:"audience" json:"audience"`
	// Scope is space-separated, e.g. "api://orders/.default".
	Scope string `yaml:"scope" json:"scope"`
	// Format is "as_issued" (default) or "jwt": a JWT even when the provider issues
	// opaque tokens.
	Format string `yaml:"format" json:"format"`
	// JWTFrom is where a format jwt token comes from: "mint" (default; signed by
	// tokenhandler with token_signing.keys from an RFC 7662 introspection) or
	// "introspection" (the provider's RFC 9701 signed introspection response).
	JWTFrom string `yaml:"jwt_from" json:"jwt_from"`
	// DPoP binds (true) or does not bind (false) a derived token; nil: oidc.dpop.
	DPoP *bool `yaml:"dpop" json:"dpop"`
}

// EffectiveDPoP reports whether the route's derived token is DPoP-bound: DPoP, else
// oidc.dpop (oidcDPoP).
func (t RouteToken) EffectiveDPoP(oidcDPoP bool) bool {
	if t.DPoP != nil {
		return *t.DPoP
	}
	return oidcDPoP
}

// EffectiveVia returns Via with its default filled in.
func (t RouteToken) EffectiveVia() string { return cmpOr(t.Via, "session") }

// EffectiveFormat returns Format with its default filled in.
func (t RouteToken) EffectiveFormat() string { return cmpOr(t.Format, "as_issued") }

// EffectiveJWTFrom returns JWTFrom with its default filled in.
func (t RouteToken) EffectiveJWTFrom() string { return cmpOr(t.JWTFrom, "mint") }

// Derives reports whether the policy asks for anything but the session's token as
// issued.
func (t RouteToken) Derives() bool {
	return t.EffectiveVia() != "session" || t.EffectiveFormat() != "as_issued"
}

// Describe says in words how the route's token is obtained, for check-config.
func (t RouteToken) Describe() string {
	var b strings.Builder
	switch t.EffectiveVia() {
	case "session":
		b.WriteString("the session's access token")
	case "refresh":
		b.WriteString("a refresh-token grant (spends the session's refresh token)")
	case "exchange":
		b.WriteString("RFC 8693 token exchange of the session's access token")
	}
	if len(t.Resource) > 0 {
		fmt.Fprintf(&b, ", resource %s", strings.Join(t.Resource, " "))
	}
	if len(t.Audience) > 0 {
		fmt.Fprintf(&b, ", audience %s", strings.Join(t.Audience, " "))
	}
	if t.Scope != "" {
		fmt.Fprintf(&b, ", scope %q", t.Scope)
	}
	if t.EffectiveFormat() == "jwt" {
		if t.EffectiveJWTFrom() == "mint" {
			b.WriteString(", as a JWT signed by tokenhandler (RFC 7662 introspection, RFC 9068)")
		} else {
			b.WriteString(", as the provider's signed introspection response (RFC 9701)")
		}
	}
	return b.String()
}

// TokenSigning is the key ring of the JWTs tokenhandler mints (format jwt, jwt_from
// mint).
type TokenSigning struct {
	// Keys are PEM files of EC P-256 (ES256) or Ed25519 (EdDSA) private keys; the first
	// signs, all are published at /.well-known/jwks.json.
	Keys []string `yaml:"keys"`
	// TTL caps a minted JWT's lifetime (it never outlives the token it stands for).
	TTL time.Duration `yaml:"ttl"`
}

func cmpOr(s, def string) string {
	if s == "" {
		return def
	}
	return s
}

// validateTokens checks every routes[].token and token_signing.
func (c *Config) validateTokens(p *problems) {
	mints := false
	for i, r := range c.Routes {
		t := r.Token
		if t.Via != "" && !slices.Contains(tokenVias, t.Via) {
			p.addIndexed("routes", i, "token.via", "must be one of %s, got %q", strings.Join(tokenVias, ", "), t.Via)
		}
		if t.Format != "" && !slices.Contains(tokenFormats, t.Format) {
			p.addIndexed("routes", i, "token.format", "must be one of %s, got %q", strings.Join(tokenFormats, ", "), t.Format)
		}
		if t.JWTFrom != "" && !slices.Contains(jwtSources, t.JWTFrom) {
			p.addIndexed("routes", i, "token.jwt_from", "must be one of %s, got %q", strings.Join(jwtSources, ", "), t.JWTFrom)
		}
		mintsHere := t.EffectiveFormat() == "jwt" && t.EffectiveJWTFrom() == "mint"
		switch t.EffectiveVia() {
		case "session":
			// A JWT minted from the session's token takes audience as its aud.
			if len(t.Resource) > 0 || (len(t.Audience) > 0 && !mintsHere) || t.Scope != "" {
				p.addIndexed("routes", i, "token.via", "is session: resource and scope need via refresh or exchange, audience too unless format is jwt with jwt_from mint")
			}
		case "refresh":
			if len(t.Resource) == 0 && t.Scope == "" {
				p.addIndexed("routes", i, "token.via", "is refresh: it needs token.resource or token.scope")
			}
			if len(t.Audience) > 0 {
				p.addIndexed("routes", i, "token.audience", "is RFC 8693 (via exchange) only; a refresh takes resource and scope")
			}
		}
		for j, res := range t.Resource {
			// RFC 8707 §2: an absolute URI without a fragment.
			if u, err := parseAbsoluteURI(res); err != nil || u == "" {
				p.addIndexed("routes", i, fmt.Sprintf("token.resource[%d]", j), "must be an absolute URI without a fragment, got %q", res)
			}
		}
		for j, a := range t.Audience {
			if a == "" || hasControl(a) {
				p.addIndexed("routes", i, fmt.Sprintf("token.audience[%d]", j), "must be a non-empty string")
			}
		}
		if t.Scope != "" {
			for s := range strings.FieldsSeq(t.Scope) {
				if !isScopeToken(s) {
					p.addIndexed("routes", i, "token.scope", "has an invalid scope token %q", s)
				}
			}
		}
		mints = mints || mintsHere
		c.validateTokenDPoP(p, i, t)
	}
	if mints && len(c.TokenSigning.Keys) == 0 {
		p.add("token_signing.keys", "is required: a route has token.format jwt with jwt_from mint")
	}
	for i, k := range c.TokenSigning.Keys {
		if fi, err := os.Stat(k); err != nil {
			p.addIndexed("token_signing.keys", i, "", "cannot be read: %v", err)
		} else if fi.IsDir() {
			p.addIndexed("token_signing.keys", i, "", "%s is a directory", k)
		}
	}
	if c.TokenSigning.TTL <= 0 {
		p.add("token_signing.ttl", "must be a positive duration, got %v", c.TokenSigning.TTL)
	}
}

// validateTokenDPoP checks routes[i].token.dpop against the route's policy.
func (c *Config) validateTokenDPoP(p *problems, i int, t RouteToken) {
	switch {
	case !t.Derives():
		// The session's token goes as it is: bound exactly when oidc.dpop binds it.
		if t.DPoP != nil && *t.DPoP != c.OIDC.DPoP {
			p.addIndexed("routes", i, "token.dpop", "is %v, but the route derives no token: it gets the session's token as issued, which oidc.dpop (%v) binds or not", *t.DPoP, c.OIDC.DPoP)
		}
	case t.EffectiveFormat() == "jwt" && t.EffectiveDPoP(c.OIDC.DPoP):
		// A JWT tokenhandler mints, or the provider's signed introspection response, is
		// not a token the provider issued to a DPoP key: it is always a bearer token.
		what := "is true"
		if t.DPoP == nil {
			what = "is true (oidc.dpop's default)"
		}
		p.addIndexed("routes", i, "token.dpop", "%s, but token.format jwt yields a bearer token (a minted JWT or a signed introspection response cannot be DPoP-bound): set token.dpop: false", what)
	}
}

// DPoPKeyNeeded reports whether start-up needs a DPoP key: oidc.dpop, or a route whose
// derived token is DPoP-bound (token.dpop: true).
func (c *Config) DPoPKeyNeeded() bool {
	if c.OIDC.DPoP {
		return true
	}
	for _, r := range c.Routes {
		if r.Token.Derives() && r.Token.EffectiveDPoP(false) {
			return true
		}
	}
	return false
}

// parseAbsoluteURI returns s if it is an absolute URI (a scheme) without a fragment.
func parseAbsoluteURI(s string) (string, error) {
	scheme, rest, ok := strings.Cut(s, ":")
	if !ok || scheme == "" || rest == "" || strings.Contains(s, "#") || hasControl(s) || strings.ContainsAny(s, " ") {
		return "", errors.New("not an absolute URI")
	}
	for i, r := range scheme {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || i > 0 && (r >= '0' && r <= '9' || r == '+' || r == '-' || r == '.')) {
			return "", errors.New("not an absolute URI")
		}
	}
	return s, nil
}

// ProviderFeatures is what check-config reads from the provider's discovery document to
// tell whether the routes' token policies can be served.
type ProviderFeatures struct {
	// IntrospectionEndpoint is discovery's introspection_endpoint ("" when absent).
	IntrospectionEndpoint string
	// GrantTypes is discovery's grant_types_supported (nil when absent: not known).
	GrantTypes []string
}

// CheckProvider reports every route token policy that a provider with features f cannot
// serve, naming the route and key: format jwt without an introspection endpoint (neither
// discovery's nor oidc.introspection_endpoint), via exchange when the provider lists its
// grant types and token exchange is not among them. check-config and serve (once
// discovery has answered) both ask it.
func (c *Config) CheckProvider(f ProviderFeatures) error {
	var p problems
	for i, r := range c.Routes {
		t := r.Token
		if t.EffectiveFormat() == "jwt" && f.IntrospectionEndpoint == "" && c.OIDC.IntrospectionEndpoint == "" {
			p.addIndexed("routes", i, "token.format", "is jwt, but the provider's discovery has no introspection_endpoint and oidc.introspection_endpoint (TH_OIDC_INTROSPECTION_ENDPOINT) is not set")
		}
		if t.EffectiveVia() == "exchange" && f.GrantTypes != nil && !slices.Contains(f.GrantTypes, GrantTokenExchange) {
			p.addIndexed("routes", i, "token.via", "is exchange, but the provider's grant_types_supported lacks %s", GrantTokenExchange)
		}
	}
	return errors.Join(p...)
}

// TokenNotes says, for check-config, which routes derive their tokens and how.
func (c *Config) TokenNotes() []string {
	var notes []string
	for i, r := range c.Routes {
		t := r.Token
		if !t.Derives() {
			continue
		}
		bind := ", sent as Bearer"
		if t.EffectiveDPoP(c.OIDC.DPoP) {
			bind = ", DPoP-bound (sent as DPoP with a proof)"
		}
		notes = append(notes, fmt.Sprintf("routes[%d] %s gets %s%s", i, r.Path, t.Describe(), bind))
		if t.EffectiveVia() == "exchange" && c.OIDC.DPoP && !t.EffectiveDPoP(true) {
			notes = append(notes, fmt.Sprintf("routes[%d] %s exchanges the session's DPoP-bound token without a proof (token.dpop: false): a provider that asks for the subject token's proof refuses the exchange (invalid_grant), which ends the session", i, r.Path))
		}
	}
	return notes
}
