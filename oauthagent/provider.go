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

	"github.com/tokenhandler/tokenhandler/josekey"
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
	PAREndpoint               string   `json:"pushed_authorization_request_endpoint"`
	RequirePAR                bool     `json:"require_pushed_authorization_requests"`
	TokenAuthSigningAlgs      []string `json:"token_endpoint_auth_signing_alg_values_supported"`
	DPoPSigningAlgs           []string `json:"dpop_signing_alg_values_supported"`
	GrantTypes                []string `json:"grant_types_supported"`
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
	// usePAR: the authorization request is pushed (RFC 9126) to meta.PAREndpoint.
	usePAR bool
	// clientAlg is the alg of private_key_jwt assertions ("": the key's own).
	clientAlg string
	// clientEndpoints: the endpoints that authenticate the client, by HTU, to their kind.
	clientEndpoints map[string]string
}

// fapi2Algs are the ID-token algorithms FAPI 2.0 allows, the default under the profile.
var fapi2Algs = []string{oidc.PS256, oidc.ES256, oidc.EdDSA}

// ErrProviderUnfit means discovery succeeded but the provider cannot serve the
// configuration (oidc.par required without a PAR endpoint, oidc.profile fapi2 without RFC
// 9207 iss, a route token policy that Options.CheckProvider refuses): retrying will not
// help, so Run gives up with it.
var ErrProviderUnfit = errors.New("the provider cannot serve the configuration")

// ProviderFeatures is what Options.CheckProvider is told of a discovered provider.
type ProviderFeatures struct {
	// IntrospectionEndpoint is the endpoint introspections go to: Options'
	// IntrospectionEndpoint when set, else discovery's ("" when neither).
	IntrospectionEndpoint string
	// GrantTypes is discovery's grant_types_supported (nil when absent: not known).
	GrantTypes []string
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
	m, err := fetchMetadata(ctx, o, back)
	if err != nil {
		return nil, err
	}
	if o.IntrospectionEndpoint != "" {
		m.IntrospectionEndpoint = o.IntrospectionEndpoint
	}
	usePAR, err := checkFit(m, o)
	if err != nil {
		return nil, err
	}
	algs, err := idTokenAlgs(m, o)
	if err != nil {
		return nil, err
	}
	// The verifiers check signatures against our own key set, which refetches at most
	// once per interval (go-oidc's RemoteKeySet refetches for every unknown key).
	keys := newKeySet(m.JWKSURI, o.HTTPClient, o.Now)
	return &provider{
		meta:            *m,
		usePAR:          usePAR,
		clientAlg:       clientAssertionAlg(m, o),
		clientEndpoints: clientEndpoints(m),
		oauth2:          oauth2Config(m, o),
		verifier: oidc.NewVerifier(m.Issuer, keys, &oidc.Config{
			ClientID:             o.ClientID,
			SupportedSigningAlgs: algs,
			Now:                  o.Now,
		}),
		keys: keys,
		algs: algs,
	}, nil
}

// fetchMetadata fetches the discovery document, checks that it names the configured
// issuer exactly and has what every flow needs, and rebases the endpoints tokenhandler
// calls itself on back (the back-channel base URL), when set.
func fetchMetadata(ctx context.Context, o *Options, back *url.URL) (*metadata, error) {
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
		for _, e := range []*string{&m.TokenEndpoint, &m.JWKSURI, &m.UserinfoEndpoint, &m.RevocationEndpoint, &m.IntrospectionEndpoint, &m.PAREndpoint} {
			if *e == "" {
				continue
			}
			if *e, err = rebase(*e, back); err != nil {
				return nil, fmt.Errorf("oauthagent: backchannel base url: %w", err)
			}
		}
	}
	return &m, nil
}

// checkFit refuses a provider that cannot serve the configuration (PAR, the fapi2
// profile's RFC 9207 iss, what Options.CheckProvider refuses), with ErrProviderUnfit,
// and says whether logins use PAR.
func checkFit(m *metadata, o *Options) (usePAR bool, err error) {
	if o.CheckProvider != nil {
		if err := o.CheckProvider(ProviderFeatures{IntrospectionEndpoint: m.IntrospectionEndpoint, GrantTypes: m.GrantTypes}); err != nil {
			return false, fmt.Errorf("oauthagent: discovery: %w: %w", ErrProviderUnfit, err)
		}
	}
	fapi2 := o.Profile == "fapi2"
	usePAR = m.PAREndpoint != "" && o.PAR != "off"
	switch {
	case (o.PAR == "required" || fapi2) && m.PAREndpoint == "":
		return false, fmt.Errorf("oauthagent: discovery: %w: oidc.par is required (or oidc.profile fapi2) but the provider advertises no pushed_authorization_request_endpoint", ErrProviderUnfit)
	case m.RequirePAR && !usePAR:
		return false, fmt.Errorf("oauthagent: discovery: %w: the provider requires pushed authorization requests but oidc.par is off", ErrProviderUnfit)
	case fapi2 && !m.AuthorizationResponseIss:
		return false, fmt.Errorf("oauthagent: discovery: %w: oidc.profile fapi2 needs RFC 9207 iss, which the provider does not advertise (authorization_response_iss_parameter_supported)", ErrProviderUnfit)
	}
	return usePAR, nil
}

// clientAssertionAlg is the private_key_jwt algorithm of an RSA client key: PS256 where
// the provider offers it (FAPI 2.0 wants it), RS256 otherwise; "" for other keys, whose
// algorithm is their own.
func clientAssertionAlg(m *metadata, o *Options) string {
	if o.ClientKey == nil || (o.ClientKey.Alg() != josekey.RS256 && o.ClientKey.Alg() != josekey.PS256) {
		return ""
	}
	if slices.Contains(m.TokenAuthSigningAlgs, josekey.PS256) || (o.Profile == "fapi2" && len(m.TokenAuthSigningAlgs) == 0) {
		return josekey.PS256
	}
	return josekey.RS256
}

// idTokenAlgs are the ID-token algorithms accepted: oidc.id_token_signing_algs, else
// discovery's list (RS256 when it has none) intersected with the defaults (the fapi2
// profile's under it).
func idTokenAlgs(m *metadata, o *Options) ([]string, error) {
	if len(o.SigningAlgs) > 0 {
		return o.SigningAlgs, nil
	}
	accepted := defaultAlgs
	if o.Profile == "fapi2" {
		accepted = fapi2Algs
	}
	offered := m.SigningAlgs
	if len(offered) == 0 {
		offered = []string{oidc.RS256} // OIDC Discovery: RS256 is the default
	}
	var algs []string
	for _, a := range accepted {
		if slices.Contains(offered, a) {
			algs = append(algs, a)
		}
	}
	if len(algs) == 0 {
		return nil, fmt.Errorf("oauthagent: discovery: none of the provider's ID-token algorithms %v is accepted; pin oidc.id_token_signing_algs", offered)
	}
	return algs, nil
}

// oauth2Config is the one x/oauth2 configuration, built once, with the auth style set
// explicitly from oidc.token_auth_method: left on auto-detect, x/oauth2 sends each failed
// token request twice.
func oauth2Config(m *metadata, o *Options) *oauth2.Config {
	style, secret := oauth2.AuthStyleInHeader, o.ClientSecret
	switch o.TokenAuthMethod {
	case "client_secret_post":
		style = oauth2.AuthStyleInParams
	case "private_key_jwt":
		// client_id in the form and no secret: providerTransport adds the assertion.
		style, secret = oauth2.AuthStyleInParams, ""
	}
	return &oauth2.Config{
		ClientID:     o.ClientID,
		ClientSecret: secret,
		RedirectURL:  o.RedirectURL,
		Scopes:       o.Scopes,
		Endpoint: oauth2.Endpoint{
			AuthURL:   m.AuthorizationEndpoint,
			TokenURL:  m.TokenEndpoint,
			AuthStyle: style,
		},
	}
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
