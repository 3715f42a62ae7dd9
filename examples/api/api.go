// Package api is tokenhandler's example upstream: a tiny API that accepts a request only
// with a valid JWT from the provider, as Bearer or DPoP-bound with a proof it checks in
// full (DPoPVerifier), and answers with the caller's claims and the
// token's expiry, so the example SPA can show what arrived and when a refresh happened.
//
// It verifies the token with go-oidc against the provider's JWKS (signature, iss, exp,
// and aud when an audience is configured). It knows nothing of cookies or sessions: that
// is tokenhandler's job. Its main package is examples/api/cmd/example-api;
// examples/stack runs it in-process.
package api

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/coreos/go-oidc/v3/oidc"
)

// Options configure the API. Issuer is required.
type Options struct {
	// Issuer is the exact iss the tokens carry, e.g. http://localhost:5556/dex.
	Issuer string
	// DiscoveryURL is where the API fetches discovery and keys from, when that differs
	// from Issuer (in Docker: http://dex:5556/dex while the browser and iss say
	// localhost). The jwks_uri that discovery returns gets this URL's scheme and host.
	// Empty means Issuer.
	DiscoveryURL string
	// Audience, when set, must be in the token's aud. Empty accepts any audience:
	// Dex puts the client id (tokenhandler's) in an access token's aud and Hydra puts
	// none unless one is registered, so the demo cannot insist on a resource audience.
	// A real API should set it.
	Audience string
	// RequireDPoP refuses every token not presented as "Authorization: DPoP" with a valid
	// proof. Without it a bearer token is accepted, but a DPoP-bound one (cnf.jkt) never
	// as Bearer, and a DPoP-presented one always has its proof checked in full.
	RequireDPoP bool
	// BaseURL, when set, is the scheme://host[:port] the API is reached at, for the htu
	// of DPoP proofs; empty: http:// (https:// under TLS) and the request's Host.
	BaseURL string
	// JWKSURL, when set, is a key set to verify tokens against without discovery:
	// tokenhandler's own /.well-known/jwks.json for routes whose tokens it mints
	// (token.format jwt). Issuer is then tokenhandler's public_url, and only ES256 and
	// EdDSA are accepted.
	JWKSURL string
	// HTTPClient fetches discovery and keys; nil means a client with a 10 s timeout.
	HTTPClient *http.Client
	// Logger nil means slog.Default().
	Logger *slog.Logger
	// Now nil means time.Now.
	Now func() time.Time
}

// Handler serves GET / and GET /claims (the claims of the caller's token) and GET
// /healthz. It discovers the provider on first use and retries on the next request
// while discovery fails, so it may start before the provider.
type Handler struct {
	opts Options
	log  *slog.Logger
	now  func() time.Time

	mu       sync.Mutex
	verifier *oidc.IDTokenVerifier
	dpop     *DPoPVerifier
}

// New returns a Handler for opts.
func New(opts Options) (*Handler, error) {
	if opts.Issuer == "" {
		return nil, errors.New("api: Issuer is required")
	}
	if opts.HTTPClient == nil {
		opts.HTTPClient = &http.Client{Timeout: 10 * time.Second}
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	return &Handler{opts: opts, log: opts.Logger, now: opts.Now, dpop: &DPoPVerifier{Now: opts.Now}}, nil
}

// Response is what GET /claims answers.
type Response struct {
	Claims           map[string]any `json:"claims"`
	ExpiresAt        string         `json:"expires_at"` // RFC 3339
	ExpiresInSeconds int64          `json:"expires_in_seconds"`
}

func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Cache-Control", "no-store")
	switch r.URL.Path {
	case "/healthz":
		writeJSON(w, http.StatusOK, map[string]string{"status": "ok"})
		return
	case "/", "/claims":
	default:
		writeJSON(w, http.StatusNotFound, map[string]string{"error": "not_found"})
		return
	}
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		w.Header().Set("Allow", "GET, HEAD")
		writeJSON(w, http.StatusMethodNotAllowed, map[string]string{"error": "method_not_allowed"})
		return
	}
	authz := r.Header.Get("Authorization")
	raw, ok := BearerToken(authz)
	dpopToken, isDPoP := DPoPToken(authz)
	if isDPoP {
		raw, ok = dpopToken, true
	}
	if !ok || (h.opts.RequireDPoP && !isDPoP) {
		// RFC 6750 §3.1: no error code when the request carried no credentials.
		w.Header().Set("WWW-Authenticate", `Bearer realm="example-api"`)
		writeJSON(w, http.StatusUnauthorized, map[string]string{"error": "unauthenticated"})
		return
	}
	v, err := h.verifierFor(r.Context())
	if err != nil {
		h.log.ErrorContext(r.Context(), "example api: provider discovery failed", "err", err)
		writeJSON(w, http.StatusServiceUnavailable, map[string]string{"error": "provider_unavailable"})
		return
	}
	tok, err := v.Verify(r.Context(), raw)
	if err != nil {
		// An expired or otherwise invalid token: invalid_token tells tokenhandler that a
		// refresh may help (its reactive refresh). The reason goes to the log, not the
		// client, and never the token itself.
		var expired *oidc.TokenExpiredError
		h.log.InfoContext(r.Context(), "example api: token rejected", "expired", errors.As(err, &expired), "err", err)
		w.Header().Set("WWW-Authenticate", `Bearer realm="example-api", error="invalid_token"`)
		writeJSON(w, http.StatusUnauthorized, map[string]string{"error": "invalid_token"})
		return
	}
	var claims map[string]any
	if err := tok.Claims(&claims); err != nil {
		writeJSON(w, http.StatusUnauthorized, map[string]string{"error": "invalid_token"})
		return
	}
	cnf, _ := claims["cnf"].(map[string]any)
	jkt, _ := cnf["jkt"].(string)
	switch {
	case isDPoP:
		// RFC 9449 section 7.1: exactly one proof, checked in full, bound to this token.
		proofs := r.Header.Values("DPoP")
		err := errors.New("want exactly one DPoP header")
		if len(proofs) == 1 {
			err = h.dpop.Verify(proofs[0], r.Method, h.htu(r), raw, jkt)
		}
		if err != nil {
			h.log.InfoContext(r.Context(), "example api: DPoP proof rejected", "err", err)
			w.Header().Set("WWW-Authenticate", `DPoP algs="ES256 EdDSA PS256 RS256", error="invalid_dpop_proof"`)
			writeJSON(w, http.StatusUnauthorized, map[string]string{"error": "invalid_dpop_proof"})
			return
		}
	case jkt != "":
		// A DPoP-bound token presented as Bearer: refused (RFC 9449 section 7.2).
		h.log.InfoContext(r.Context(), "example api: a DPoP-bound token was presented as Bearer")
		w.Header().Set("WWW-Authenticate", `DPoP algs="ES256 EdDSA PS256 RS256", error="invalid_token"`)
		writeJSON(w, http.StatusUnauthorized, map[string]string{"error": "invalid_token"})
		return
	}
	writeJSON(w, http.StatusOK, Response{
		Claims:           claims,
		ExpiresAt:        tok.Expiry.UTC().Format(time.RFC3339),
		ExpiresInSeconds: int64(tok.Expiry.Sub(h.now()).Round(time.Second) / time.Second),
	})
}

// htu is the URL of r as this API is reached, without query: what a proof's htu must be.
func (h *Handler) htu(r *http.Request) string {
	base := h.opts.BaseURL
	if base == "" {
		scheme := "http"
		if r.TLS != nil {
			scheme = "https"
		}
		base = scheme + "://" + r.Host
	}
	return strings.TrimSuffix(base, "/") + r.URL.EscapedPath()
}

// BearerToken returns the token of an "Authorization: Bearer TOKEN" header value. The
// scheme is case-insensitive (RFC 9110 §11.1); the token must be non-empty and hold no
// whitespace.
func BearerToken(header string) (string, bool) {
	scheme, tok, ok := strings.Cut(header, " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") {
		return "", false
	}
	tok = strings.TrimLeft(tok, " ")
	if tok == "" || strings.ContainsAny(tok, " \t\r\n") {
		return "", false
	}
	return tok, true
}

// verifierFor returns the verifier, discovering the provider first if that has not yet
// succeeded.
func (h *Handler) verifierFor(ctx context.Context) (*oidc.IDTokenVerifier, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.verifier != nil {
		return h.verifier, nil
	}
	jwksURL, algs := h.opts.JWKSURL, []string{oidc.ES256, oidc.EdDSA}
	if jwksURL == "" {
		var err error
		if jwksURL, algs, err = h.discover(ctx); err != nil {
			return nil, err
		}
	}
	cfg := &oidc.Config{
		ClientID:             h.opts.Audience,
		SkipClientIDCheck:    h.opts.Audience == "", // see Options.Audience
		SupportedSigningAlgs: algs,
		Now:                  h.now,
	}
	// The key set lives as long as the handler: its context carries only our client.
	keys := oidc.NewRemoteKeySet(oidc.ClientContext(context.Background(), h.opts.HTTPClient), jwksURL)
	h.verifier = oidc.NewVerifier(h.opts.Issuer, keys, cfg)
	return h.verifier, nil
}

// discover fetches the discovery document, checks its issuer and returns the JWKS URL
// (on the discovery host) and the signing algorithms the API accepts.
func (h *Handler) discover(ctx context.Context) (string, []string, error) {
	base := h.opts.DiscoveryURL
	if base == "" {
		base = h.opts.Issuer
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, strings.TrimSuffix(base, "/")+"/.well-known/openid-configuration", nil)
	if err != nil {
		return "", nil, fmt.Errorf("api: discovery: %w", err)
	}
	resp, err := h.opts.HTTPClient.Do(req)
	if err != nil {
		return "", nil, fmt.Errorf("api: discovery: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return "", nil, fmt.Errorf("api: discovery: status %d", resp.StatusCode)
	}
	var doc struct {
		Issuer  string   `json:"issuer"`
		JWKSURI string   `json:"jwks_uri"`
		Algs    []string `json:"id_token_signing_alg_values_supported"`
	}
	if err := json.NewDecoder(io.LimitReader(resp.Body, 1<<20)).Decode(&doc); err != nil {
		return "", nil, fmt.Errorf("api: discovery: %w", err)
	}
	if doc.Issuer != h.opts.Issuer {
		return "", nil, fmt.Errorf("api: discovery: issuer %q, want %q", doc.Issuer, h.opts.Issuer)
	}
	jwks, err := url.Parse(doc.JWKSURI)
	if err != nil || jwks.Host == "" {
		return "", nil, fmt.Errorf("api: discovery: bad jwks_uri %q", doc.JWKSURI)
	}
	if h.opts.DiscoveryURL != "" {
		b, err := url.Parse(h.opts.DiscoveryURL)
		if err != nil {
			return "", nil, fmt.Errorf("api: discovery url: %w", err)
		}
		jwks.Scheme, jwks.Host = b.Scheme, b.Host
	}
	// Asymmetric algorithms only: "none" and HS256 are never accepted.
	var algs []string
	for _, a := range doc.Algs {
		switch a {
		case oidc.RS256, oidc.RS384, oidc.RS512, oidc.ES256, oidc.ES384, oidc.ES512, oidc.PS256, oidc.PS384, oidc.PS512, oidc.EdDSA:
			algs = append(algs, a)
		}
	}
	if len(algs) == 0 {
		algs = []string{oidc.RS256}
	}
	return jwks.String(), algs, nil
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}
