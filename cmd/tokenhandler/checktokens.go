package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"

	"github.com/tokenhandler/tokenhandler/config"
)

// checkTokenPolicies is check-config's look at the provider for the routes that derive
// their tokens: it fetches discovery and refuses a policy the provider cannot serve
// (config.CheckProvider). Without such routes it asks nothing. A provider that cannot be
// reached is a warning, not a refusal: check-config also runs where the provider is not
// reachable (a build step).
func checkTokenPolicies(ctx context.Context, cfg *config.Config, client *http.Client) (warnings []string, err error) {
	derives := false
	for _, r := range cfg.Routes {
		derives = derives || r.Token.Derives()
	}
	if !derives {
		return nil, nil
	}
	f, err := fetchFeatures(ctx, cfg, client)
	if err != nil {
		return []string{fmt.Sprintf("the routes' token policies were not checked against the provider: %v", err)}, nil
	}
	return nil, cfg.CheckProvider(*f)
}

// fetchFeatures reads introspection_endpoint and grant_types_supported from discovery
// (fetched from oidc.backchannel_base_url's host when it is set, as serve does).
func fetchFeatures(ctx context.Context, cfg *config.Config, client *http.Client) (*config.ProviderFeatures, error) {
	wellKnown := strings.TrimSuffix(cfg.OIDC.Issuer, "/") + "/.well-known/openid-configuration"
	if cfg.OIDC.BackchannelBaseURL != "" {
		u, err := url.Parse(wellKnown)
		b, berr := url.Parse(cfg.OIDC.BackchannelBaseURL)
		if err != nil || berr != nil {
			return nil, fmt.Errorf("discovery url: %w", err)
		}
		u.Scheme, u.Host = b.Scheme, b.Host
		wellKnown = u.String()
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, wellKnown, nil)
	if err != nil {
		return nil, fmt.Errorf("discovery: %w", err)
	}
	res, err := client.Do(req)
	if err != nil {
		return nil, fmt.Errorf("discovery: %w", err)
	}
	defer res.Body.Close()
	if res.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("discovery: %s answered %s", wellKnown, res.Status)
	}
	var meta struct {
		Introspection string   `json:"introspection_endpoint"`
		GrantTypes    []string `json:"grant_types_supported"`
	}
	if err := json.NewDecoder(io.LimitReader(res.Body, 1<<20)).Decode(&meta); err != nil {
		return nil, fmt.Errorf("discovery: %w", err)
	}
	return &config.ProviderFeatures{IntrospectionEndpoint: meta.Introspection, GrantTypes: meta.GrantTypes}, nil
}
