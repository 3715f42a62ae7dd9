package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"github.com/tokenhandler/tokenhandler/examples/api"
	"github.com/tokenhandler/tokenhandler/internal/testbench"
)

// The -fapi demo's account at oidc-provider (its development login form takes any
// password for a known login) and the example API as a resource server.
const (
	fapiLogin    = "alice"
	fapiResource = "urn:tokenhandler:example-api" // RFC 8707 indicator, also the tokens' aud
	fapiScope    = "api"                          // the resource's scope; tokenhandler asks for it
)

// errNoNode is wrapped when -fapi cannot run oidc-provider for want of Node.js.
var errNoNode = errors.New("-fapi runs panva oidc-provider on Node.js, and node is not on PATH (Debian: apt-get install nodejs npm; or run without -fapi, with Dex)")

// startOIDCProvider starts panva oidc-provider (e2e/idp/oidc-provider/provider.mjs, the
// tests' provider) configured for the FAPI 2.0 Security Profile: the client must push
// its authorization requests (PAR) and authenticate with private_key_jwt (a key made
// here with tokenhandler keygen, its public JWK registered in the provider's
// configuration), its access tokens are DPoP-bound, ID tokens are signed PS256, and
// RFC 9207 iss is in every authorization response. Every request defaults to the
// example API's resource indicator, so access tokens are JWTs for it carrying cnf.jkt,
// which the example API verifies with the proof (-require-dpop).
func (s *stack) startOIDCProvider(ctx context.Context, publicURL, apiURL string) (*provider, error) {
	o := s.o
	node, err := exec.LookPath("node")
	if err != nil {
		return nil, fmt.Errorf("oidc-provider: %w", errNoNode)
	}
	if o.opDir == "" {
		fmt.Fprintln(s.human, "stack: installing oidc-provider via scripts/idp-bin.sh oidc-provider (npm ci once, about 10 s; cached afterwards)")
		dir, err := s.output(ctx, o.root, filepath.Join(o.root, "scripts", "idp-bin.sh"), "oidc-provider")
		if err != nil {
			return nil, fmt.Errorf("installing oidc-provider (needs npm): %w", err)
		}
		o.opDir = dir
	}
	if _, err := os.Stat(filepath.Join(o.opDir, "node_modules", "oidc-provider", "package.json")); err != nil {
		return nil, fmt.Errorf("oidc-provider: %s holds no node_modules/oidc-provider (scripts/idp-bin.sh oidc-provider makes it): %w", o.opDir, err)
	}

	// The keys, made as a user would: tokenhandler keygen.
	clientKey := filepath.Join(s.dir, "client.pem")
	dpopKey := filepath.Join(s.dir, "dpop.pem")
	if err := s.keygen(ctx, clientKey, "-client-key", "PS256"); err != nil {
		return nil, err
	}
	if err := s.keygen(ctx, dpopKey, "-dpop-key", "EdDSA"); err != nil {
		return nil, err
	}
	jwk, err := s.output(ctx, o.root, o.thBin, "keygen", "-public-jwk", clientKey)
	if err != nil {
		return nil, fmt.Errorf("tokenhandler keygen -public-jwk: %w", err)
	}
	var pub map[string]any
	if err := json.Unmarshal([]byte(jwk), &pub); err != nil {
		return nil, fmt.Errorf("tokenhandler keygen -public-jwk: %w", err)
	}

	issuer := fmt.Sprintf("http://localhost:%d", o.opPort)
	back := fmt.Sprintf("http://127.0.0.1:%d", o.opPort)
	cfg := fapiProviderConfig(o.opDir, issuer, o.opPort, o.tokenTTL, publicURL, pub)
	cfgPath := filepath.Join(s.dir, "oidc-provider.json")
	if err := testbench.WriteConfig(cfgPath, cfg.Config()); err != nil {
		return nil, err
	}
	proc, err := s.start("oidc-provider", node, []string{testbench.OIDCProviderScript(o.root), cfgPath}, childEnv())
	if err != nil {
		return nil, err
	}
	if err := s.waitReady(ctx, proc, back+"/.well-known/openid-configuration"); err != nil {
		proc.Stop(5 * time.Second)
		return nil, err
	}
	return &provider{
		name: "panva oidc-provider, FAPI 2.0", proc: proc, issuer: issuer,
		username: fapiLogin, password: password,
		api: api.Options{
			Issuer: issuer, DiscoveryURL: back, Audience: fapiResource,
			RequireDPoP: true, BaseURL: apiURL,
		},
		thEnv: []string{
			"TH_OIDC_PROFILE=fapi2",
			"TH_OIDC_TOKEN_AUTH_METHOD=private_key_jwt",
			"TH_OIDC_CLIENT_KEY_FILE=" + clientKey,
			"TH_OIDC_PAR=required",
			"TH_OIDC_DPOP=true",
			"TH_DPOP_KEY_FILE=" + dpopKey,
			"TH_OIDC_SCOPES=" + strings.Join([]string{"openid", "profile", "email", "offline_access", fapiScope}, ","),
		},
		// A second refresh for the same resource, bound to the same DPoP key like every
		// token here (token.dpop defaults to oidc.dpop): the example API, which takes
		// DPoP only, accepts it as it accepts the session's.
		ordersToken: map[string]any{"via": "refresh", "resource": []string{fapiResource}, "scope": fapiScope},
		note: fmt.Sprintf(`
  FAPI 2.0   PAR, private_key_jwt (no client secret), DPoP-bound access tokens (JWTs
             for %s with cnf.jkt), ID tokens PS256, oidc.profile fapi2.
             The example API accepts only DPoP with a valid proof; any password works
             for %s at the provider's development login form.
`, fapiResource, fapiLogin),
	}, nil
}

// fapiProviderConfig is oidc-provider's configuration for the -fapi demo: the one
// client, tokenhandler's, with the FAPI 2.0 metadata, and the example API as the
// default resource, issuing JWT access tokens.
func fapiProviderConfig(modules, issuer string, port int, tokenTTL time.Duration, publicURL string, clientJWK map[string]any) testbench.OIDCProvider {
	return testbench.OIDCProvider{
		Modules: modules, Issuer: issuer, Port: port,
		AccessTokenTTL: tokenTTL, IDTokenTTL: tokenTTL,
		AccountID: fapiLogin, Email: username, Name: "Alice Example",
		Clients: []map[string]any{{
			"client_id":                             clientID,
			"client_name":                           "tokenhandler example (FAPI 2.0)",
			"grant_types":                           []string{"authorization_code", "refresh_token"},
			"response_types":                        []string{"code"},
			"redirect_uris":                         []string{publicURL + "/auth/callback"},
			"post_logout_redirect_uris":             []string{publicURL + "/"},
			"token_endpoint_auth_method":            "private_key_jwt",
			"token_endpoint_auth_signing_alg":       "PS256",
			"jwks":                                  map[string]any{"keys": []any{clientJWK}},
			"require_pushed_authorization_requests": true,
			"dpop_bound_access_tokens":              true,
			"id_token_signed_response_alg":          "PS256",
			// The provider's one key signs PS256 only; its default here is RS256.
			"introspection_signed_response_alg": "PS256",
		}},
		Resources: map[string]testbench.OIDCResource{
			fapiResource: {Audience: fapiResource, Scope: fapiScope, Format: "jwt"},
		},
		DPoP:            true,
		SigningAlg:      "PS256",
		DefaultResource: fapiResource,
	}
}

// keygen writes the PEM private key of tokenhandler keygen ARGS to path (0600); the
// public JWK it prints on stderr is read again with -public-jwk.
func (s *stack) keygen(ctx context.Context, path string, args ...string) error {
	cmd := exec.CommandContext(ctx, s.o.thBin, append([]string{"keygen"}, args...)...)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return fmt.Errorf("tokenhandler keygen %s: %w: %s", strings.Join(args, " "), err, strings.TrimSpace(stderr.String()))
	}
	if err := os.WriteFile(path, out, 0o600); err != nil {
		return fmt.Errorf("tokenhandler keygen: %w", err)
	}
	return nil
}
