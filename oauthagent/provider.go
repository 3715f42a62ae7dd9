package oauthagent

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"slices"
	"strings"

	"github.com/coreos/go-oidc/v3/oidc"
	"golang.org/x/oauth2"
)

// defaultAlgs are the ID-token signing algorithms accepted when the configuration pins
// none: discovery's list intersected with these.
var defaultAlgs = []string{oidc.RS256, oidc.ES256, oidc.PS256}

// metadata is the part of the discovery document tokenhandler uses.
type metadata struct {
	Issuer                    string   `json:"issuer"`
	AuthorizationEndpoint     string   `json:"authorization_endpoint"`
	TokenEndpoint             string   `json:"token_endpoint"`
	UserinfoEndpoint          string   `json:"userinfo_endpoint"`
	JWKSURI                   string   `json:"jwks_uri"`
	RevocationEndpoint        string   `json:"revocation_endpoint"`
	IntrospectionEndpoint     string   `json:"introspection_endpoint"`
	EndSessionEndpoint        string   `json:"end_session_endpoint"`
	SigningAlgs               []string `json:"id_token_signing_alg_values_supported"`
	CodeChallengeMethods      []string `json:"code_challenge_methods_supported"`
	AuthorizationResponseIss  bool     `json:"authorization_response_iss_parameter_supported"`
	BackchannelLogoutSupport  bool     `json:"backchannel_logout_supported"`
	BackchannelLogoutSessions bool     `json:"backchannel_logout_session_supported"`
}

// provider is what one successful discovery yields: endpoints, the oauth2 config (built
// once, with an explicit auth style) and the ID-token verifier.
type provider struct {
	meta     metadata
	oauth2   *oauth2.Config
	verifier *oidc.IDTokenVerifier
	keys     *keySet // the provider's JWKS, refetched at most once per interval
	algs     []string
}

// discover fetches the discovery document from the issuer (with BackchannelBaseURL set,
// from the issuer's URL with its scheme and host replaced by the base's, and the endpoints
// tokenhandler calls itself are rewritten the same way, while the authorization and
// end-session endpoints, which the browser visits, stay as published),
// checks that the issuer matches exactly, and builds the client.
func discover(ctx context.Context, o *Options) (*provider, error) {
	var back *url.URL
	if o.BackchannelBaseURL != "" {
		var err error
		if back, err = url.Parse(o.BackchannelBaseURL); err != nil || back.Host == "" {
			return nil, fmt.Errorf("oauthagent: backchannel base url %q is not an absolute URL", o.BackchannelBaseURL)
		}
	}
	wellKnown := strings.TrimSuffix(o.Issuer, "/") + "/.well-known/openid-configuration"
	if back != nil {
		var err error
		if wellKnown, err = rebase(wellKnown, back); err != nil {
			return nil, fmt.Errorf("oauthagent: discovery: %w", err)
		}
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, wellKnown, nil)
	if err != nil {
		return nil, fmt.Errorf("oauthagent: discovery: %w", err)
	}
	req.Header.Set("Accept", "application/json")
	resp, err := o.HTTPClient.Do(req)
	if err != nil {
		return nil, fmt.Errorf("oauthagent: discovery: %w", err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return nil, fmt.Errorf("oauthagent: discovery: read: %w", err)
	}
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("oauthagent: discovery: %s", resp.Status)
	}
	var m metadata
	if err := json.Unmarshal(body, &m); err != nil {
		return nil, fmt.Errorf("oauthagent: discovery: decode: %w", err)
	}
	if m.Issuer != o.Issuer {
		return nil, fmt.Errorf("oauthagent: discovery: issuer %q does not match oidc.issuer %q exactly", m.Issuer, o.Issuer)
	}
	if m.AuthorizationEndpoint == "" || m.TokenEndpoint == "" || m.JWKSURI == "" {
		return nil, errors.New("oauthagent: discovery: authorization_endpoint, token_endpoint and jwks_uri are required")
	}
	if len(m.CodeChallengeMethods) > 0 && !slices.Contains(m.CodeChallengeMethods, "S256") {
		return nil, errors.New("oauthagent: discovery: the provider does not support PKCE S256")
	}
	if back != nil {
		// The browser keeps the published authorization and end-session endpoints; the
		// endpoints tokenhandler calls itself go through the back-channel base.
		for _, e := range []*string{&m.TokenEndpoint, &m.JWKSURI, &m.UserinfoEndpoint, &m.RevocationEndpoint, &m.IntrospectionEndpoint} {
			if *e == "" {
				continue
			}
			if *e, err = rebase(*e, back); err != nil {
				return nil, fmt.Errorf("oauthagent: backchannel base url: %w", err)
			}
		}
	}

	algs := o.SigningAlgs
	if len(algs) == 0 {
		offered := m.SigningAlgs
		if len(offered) == 0 {
			offered = []string{oidc.RS256} // OIDC Discovery: RS256 is the default
		}
		for _, a := range defaultAlgs {
			if slices.Contains(offered, a) {
				algs = append(algs, a)
			}
		}
		if len(algs) == 0 {
			return nil, fmt.Errorf("oauthagent: discovery: none of the provider's ID-token algorithms %v is accepted; pin oidc.id_token_signing_algs", offered)
		}
	}

	// The verifiers check signatures against our own key set, which refetches at most
	// once per interval (go-oidc's RemoteKeySet refetches for every unknown key).
	keys := newKeySet(m.JWKSURI, o.HTTPClient, o.Now)

	style := oauth2.AuthStyleInHeader
	if o.TokenAuthMethod == "client_secret_post" {
		style = oauth2.AuthStyleInParams
	}
	return &provider{
		meta: m,
		oauth2: &oauth2.Config{
			ClientID:     o.ClientID,
			ClientSecret: o.ClientSecret,
			RedirectURL:  o.RedirectURL,
			Scopes:       o.Scopes,
			Endpoint: oauth2.Endpoint{
				AuthURL:   m.AuthorizationEndpoint,
				TokenURL:  m.TokenEndpoint,
				AuthStyle: style,
			},
		},
		verifier: oidc.NewVerifier(m.Issuer, keys, &oidc.Config{
			ClientID:             o.ClientID,
			SupportedSigningAlgs: algs,
			Now:                  o.Now,
		}),
		keys: keys,
		algs: algs,
	}, nil
}

// rebase replaces the scheme and host of endpoint with those of base, keeping its path.
func rebase(endpoint string, base *url.URL) (string, error) {
	u, err := url.Parse(endpoint)
	if err != nil {
		return "", err
	}
	u.Scheme, u.Host = base.Scheme, base.Host
	return u.String(), nil
}
