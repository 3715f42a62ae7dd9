package oauthagent

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/tokenhandler/tokenhandler/mint"
	"github.com/tokenhandler/tokenhandler/session"
)

// contentTypeIntrospectionJWT is RFC 9701's media type.
const contentTypeIntrospectionJWT = "application/token-introspection+jwt"

// maxIntrospection bounds an introspection response.
const maxIntrospection = 64 << 10

// introspection is what tokenhandler reads of an RFC 7662 response.
type introspection struct {
	Active   bool
	Subject  string
	ClientID string
	Scope    string
	Audience []string
	Expiry   time.Time // zero: none said
}

var errBadIntrospection = errors.New("malformed introspection response")

// parseIntrospection reads an RFC 7662 JSON response (or RFC 9701's token_introspection
// claim). active must be a JSON boolean; exp a number; aud a string or a list of strings.
func parseIntrospection(b []byte) (*introspection, error) {
	var raw struct {
		Active   *bool           `json:"active"`
		Subject  string          `json:"sub"`
		ClientID string          `json:"client_id"`
		Scope    string          `json:"scope"`
		Aud      json.RawMessage `json:"aud"`
		Exp      *json.Number    `json:"exp"`
	}
	dec := json.NewDecoder(strings.NewReader(string(b)))
	dec.UseNumber()
	if err := dec.Decode(&raw); err != nil {
		return nil, fmt.Errorf("%w: %w", errBadIntrospection, err)
	}
	if raw.Active == nil {
		return nil, fmt.Errorf("%w: no active member", errBadIntrospection)
	}
	in := &introspection{Active: *raw.Active, Subject: raw.Subject, ClientID: raw.ClientID, Scope: raw.Scope}
	if raw.Exp != nil {
		f, err := raw.Exp.Float64()
		if err != nil || f < 0 || f > 1<<40 {
			return nil, fmt.Errorf("%w: exp is not a time", errBadIntrospection)
		}
		in.Expiry = time.Unix(int64(f), 0)
	}
	if len(raw.Aud) > 0 && string(raw.Aud) != "null" {
		aud, err := parseAudience(raw.Aud)
		if err != nil {
			return nil, fmt.Errorf("%w: aud: %w", errBadIntrospection, err)
		}
		in.Audience = aud
	}
	return in, nil
}

// parseIntrospectionJWT reads the payload of an RFC 9701 response, unverified (the
// upstream verifies it against the provider's keys; tokenhandler only needs to know
// whether the token is active and until when to keep the response).
func parseIntrospectionJWT(jwt string) (*introspection, error) {
	parts := strings.Split(jwt, ".")
	if len(parts) != 3 {
		return nil, fmt.Errorf("%w: not a compact JWS", errBadIntrospection)
	}
	payload, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		return nil, fmt.Errorf("%w: payload: %w", errBadIntrospection, err)
	}
	var outer struct {
		TI json.RawMessage `json:"token_introspection"`
	}
	if err := json.Unmarshal(payload, &outer); err != nil || len(outer.TI) == 0 {
		return nil, fmt.Errorf("%w: no token_introspection claim", errBadIntrospection)
	}
	return parseIntrospection(outer.TI)
}

// isJWS reports whether a token is a JWS compact serialization (three base64url parts
// whose header is a JSON object): such a token is not opaque.
func isJWS(tok string) bool {
	parts := strings.Split(tok, ".")
	if len(parts) != 3 || parts[0] == "" {
		return false
	}
	h, err := base64.RawURLEncoding.DecodeString(parts[0])
	return err == nil && json.Valid(h) && strings.HasPrefix(strings.TrimSpace(string(h)), "{")
}

// introspect posts token to the introspection endpoint, authenticating as at the token
// endpoint, and returns the body and its media type. accept "" asks for JSON.
func (a *Agent) introspect(ctx context.Context, p *provider, token, accept string) ([]byte, string, error) {
	if p.meta.IntrospectionEndpoint == "" {
		return nil, "", fmt.Errorf("oauthagent: introspect: %w: the provider has no introspection_endpoint", session.ErrTokenUnavailable)
	}
	form := url.Values{"token": {token}, "token_type_hint": {"access_token"}}
	// Authenticated as every call of the client is (clientRequest; a private_key_jwt
	// assertion is added by the provider transport).
	req, err := a.clientRequest(ctx, p.meta.IntrospectionEndpoint, form)
	if err != nil {
		return nil, "", fmt.Errorf("oauthagent: introspect: %w: %w", session.ErrIdPUnavailable, err)
	}
	if accept != "" {
		req.Header.Set("Accept", accept)
	}
	resp, err := a.opts.HTTPClient.Do(req)
	if err != nil {
		return nil, "", fmt.Errorf("oauthagent: introspect: %w: %w", session.ErrIdPUnavailable, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxIntrospection))
	switch {
	case err != nil:
		return nil, "", fmt.Errorf("oauthagent: introspect: %w: %w", session.ErrIdPUnavailable, err)
	case resp.StatusCode/100 == 4 && resp.StatusCode != http.StatusTooManyRequests:
		a.log.ErrorContext(ctx, "the provider refused tokenhandler's introspection request", "status", resp.StatusCode)
		return nil, "", fmt.Errorf("oauthagent: introspect: %w: introspection endpoint answered %s", session.ErrTokenUnavailable, resp.Status)
	case resp.StatusCode != http.StatusOK:
		return nil, "", fmt.Errorf("oauthagent: introspect: %w: introspection endpoint answered %s", session.ErrIdPUnavailable, resp.Status)
	}
	mt, _, _ := mime.ParseMediaType(resp.Header.Get("Content-Type"))
	return body, mt, nil
}

// toJWT turns an opaque token into the JWT that p promises the upstream: the provider's
// signed introspection response (jwt_from introspection) or a JWT tokenhandler signs
// from the introspection (jwt_from mint). An inactive token wraps
// session.ErrSubjectRejected (refresh once, then the session is over).
func (r *Refresher) toJWT(ctx context.Context, under *session.DerivedToken, p *session.TokenPolicy) (*session.DerivedToken, error) {
	a := r.agent
	prov, err := a.ready()
	if err != nil {
		return nil, fmt.Errorf("oauthagent: introspect: %w: %w", session.ErrIdPUnavailable, err)
	}
	if p.JWTFrom == "introspection" {
		body, mt, err := a.introspect(ctx, prov, under.Token, contentTypeIntrospectionJWT)
		if err != nil {
			return nil, err
		}
		if mt != contentTypeIntrospectionJWT {
			return nil, fmt.Errorf("oauthagent: introspect: %w: the provider answered %q, not a signed introspection response", session.ErrTokenUnavailable, mt)
		}
		jwt := strings.TrimSpace(string(body))
		in, err := parseIntrospectionJWT(jwt)
		if err != nil {
			return nil, fmt.Errorf("oauthagent: introspect: %w: %w", session.ErrIdPUnavailable, err)
		}
		if !in.Active {
			return nil, fmt.Errorf("oauthagent: introspect: %w: the token is not active", session.ErrSubjectRejected)
		}
		exp := in.Expiry
		if exp.IsZero() {
			exp = under.Expiry
		}
		return &session.DerivedToken{Token: jwt, Issued: a.now(), Expiry: exp}, nil
	}
	if r.signer == nil {
		return nil, fmt.Errorf("oauthagent: mint: %w: no token_signing keys", session.ErrTokenUnavailable)
	}
	body, _, err := a.introspect(ctx, prov, under.Token, "")
	if err != nil {
		return nil, err
	}
	in, err := parseIntrospection(body)
	if err != nil {
		return nil, fmt.Errorf("oauthagent: introspect: %w: %w", session.ErrIdPUnavailable, err)
	}
	if !in.Active {
		return nil, fmt.Errorf("oauthagent: introspect: %w: the token is not active", session.ErrSubjectRejected)
	}
	aud := p.Audience
	if len(aud) == 0 {
		aud = p.Resource
	}
	if len(aud) == 0 && p.Upstream != "" {
		aud = []string{p.Upstream}
	}
	exp := in.Expiry
	if exp.IsZero() {
		exp = under.Expiry
	}
	tok, until, err := r.signer.Mint(mint.Claims{Subject: in.Subject, ClientID: in.ClientID, Scope: in.Scope, Audience: aud, Expiry: exp})
	if err != nil {
		return nil, fmt.Errorf("oauthagent: mint: %w: %w", session.ErrSubjectRejected, err)
	}
	return &session.DerivedToken{Token: tok, Issued: a.now(), Expiry: until}, nil
}
