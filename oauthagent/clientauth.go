package oauthagent

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/tokenhandler/tokenhandler/dpop"
	"github.com/tokenhandler/tokenhandler/josekey"
)

// assertionType is RFC 7523's client_assertion_type.
const assertionType = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"

// providerTransport is the RoundTripper under every call tokenhandler makes to the
// provider. x/oauth2 cannot add parameters to a refresh grant, so the client
// authentication of private_key_jwt and the DPoP proofs are added here, below it, to
// every POST to an endpoint that authenticates the client (token: code exchange and
// refresh; revocation, introspection, PAR):
//
//   - private_key_jwt: a fresh client assertion in the form (iss = sub = client_id, aud =
//     the issuer, a unique jti, 60 s of life, kid = the key's thumbprint); any client
//     secret, in the form or in Basic, is removed: with this method none is ever sent;
//   - DPoP: a fresh proof (with the provider's latest nonce) in the DPoP header of token,
//     PAR and revocation requests; a 400 use_dpop_nonce with a DPoP-Nonce is retried
//     once with that nonce, under a new assertion and proof. The proofer is
//     Options.DPoP, or a derivation's own choice (withProofer: its policy's token.dpop).
//
// Other requests (discovery, keys, userinfo) pass through untouched.
type providerTransport struct {
	a    *Agent
	base http.RoundTripper
}

// maxFormBody bounds the form bodies the transport reads (they are ours: small).
const maxFormBody = 1 << 20

func (t *providerTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	p := t.a.provider.Load()
	if p == nil || req.Method != http.MethodPost || req.Body == nil {
		return t.base.RoundTrip(req)
	}
	kind := p.endpointKind(req.URL)
	proofer := t.a.prooferFor(req.Context())
	if kind == "" || (t.a.opts.ClientKey == nil && proofer == nil) {
		return t.base.RoundTrip(req)
	}
	raw, err := io.ReadAll(io.LimitReader(req.Body, maxFormBody))
	req.Body.Close()
	if err != nil {
		return nil, fmt.Errorf("oauthagent: read %s request: %w", kind, err)
	}
	form, err := url.ParseQuery(string(raw))
	if err != nil {
		return nil, fmt.Errorf("oauthagent: %s request: %w", kind, err)
	}
	if kind == "introspection" {
		proofer = nil
	}
	useDPoP := proofer != nil
	origin := dpop.Origin(req.URL)
	for attempt := 0; ; attempt++ {
		out, err := t.authenticated(req, p, form, proofer, t.a.nonces.Get(origin))
		if err != nil {
			return nil, err
		}
		res, err := t.base.RoundTrip(out)
		if err != nil || !useDPoP {
			return res, err
		}
		nonce := res.Header.Get(dpop.NonceHeader)
		t.a.nonces.Set(origin, nonce) // the latest nonce, whatever the answer
		if attempt > 0 || res.StatusCode != http.StatusBadRequest || !dpop.ValidNonce(nonce) {
			return res, nil
		}
		// Peek at the error: use_dpop_nonce is retried, anything else goes to the caller
		// as it came.
		body, rerr := io.ReadAll(io.LimitReader(res.Body, 64<<10))
		res.Body.Close()
		var e struct {
			Error string `json:"error"`
		}
		if rerr != nil {
			return nil, fmt.Errorf("oauthagent: read %s answer: %w", kind, rerr)
		}
		if json.Unmarshal(body, &e) != nil || e.Error != dpop.ErrUseNonce {
			res.Body = io.NopCloser(bytes.NewReader(body))
			return res, nil
		}
	}
}

// authenticated returns a copy of req carrying form with the client assertion and the
// DPoP proof of proofer (nil: none) added.
func (t *providerTransport) authenticated(req *http.Request, p *provider, form url.Values, proofer *dpop.Proofer, nonce string) (*http.Request, error) {
	out := req.Clone(req.Context())
	if k := t.a.opts.ClientKey; k != nil {
		assertion, err := t.assertion(k, p)
		if err != nil {
			return nil, err
		}
		f := make(url.Values, len(form)+2)
		for n, v := range form {
			f[n] = v
		}
		f.Del("client_secret")
		f.Set("client_id", t.a.opts.ClientID)
		f.Set("client_assertion_type", assertionType)
		f.Set("client_assertion", assertion)
		form = f
		out.Header.Del("Authorization") // never a Basic client secret
	}
	enc := form.Encode()
	out.Body = io.NopCloser(strings.NewReader(enc))
	out.GetBody = func() (io.ReadCloser, error) { return io.NopCloser(strings.NewReader(enc)), nil }
	out.ContentLength = int64(len(enc))
	out.Header.Set("Content-Length", strconv.Itoa(len(enc)))
	if proofer != nil {
		proof, err := proofer.Proof(http.MethodPost, dpop.HTU(req.URL), "", nonce)
		if err != nil {
			return nil, fmt.Errorf("oauthagent: %w", err)
		}
		out.Header.Set(dpop.Header, proof)
	}
	return out, nil
}

// prooferKey is the context key of a token call's own choice of DPoP proofer.
type prooferKey struct{}

// withProofer returns ctx under which the calls to the provider's client-authenticating
// endpoints prove possession of proofer's key (nil: carry no proof) instead of
// Options.DPoP's: a derivation's token call follows its policy's token.dpop.
func withProofer(ctx context.Context, proofer *dpop.Proofer) context.Context {
	return context.WithValue(ctx, prooferKey{}, proofer)
}

// prooferFor is the proofer of the provider calls made under ctx: withProofer's, else
// Options.DPoP.
func (a *Agent) prooferFor(ctx context.Context) *dpop.Proofer {
	if p, ok := ctx.Value(prooferKey{}).(*dpop.Proofer); ok {
		return p
	}
	return a.opts.DPoP
}

// assertion is an RFC 7523 client assertion: iss = sub = client_id, aud = the issuer, a
// unique jti, at most 60 s of life, kid = the key's RFC 7638 thumbprint.
func (t *providerTransport) assertion(k *josekey.Key, p *provider) (string, error) {
	now := t.a.now()
	if p.clientAlg != "" && p.clientAlg != k.Alg() {
		var err error
		if k, err = k.WithAlg(p.clientAlg); err != nil {
			return "", fmt.Errorf("oauthagent: client assertion: %w", err)
		}
	}
	a, err := k.JWT(map[string]any{"kid": k.Thumbprint(), "typ": "JWT"}, map[string]any{
		"iss": t.a.opts.ClientID,
		"sub": t.a.opts.ClientID,
		"aud": p.meta.Issuer,
		"jti": random128(),
		"iat": now.Unix(),
		"exp": now.Add(60 * time.Second).Unix(),
	})
	if err != nil {
		return "", fmt.Errorf("oauthagent: client assertion: %w", err)
	}
	return a, nil
}

// endpointKind names the client-authenticating endpoint u is ("token", "revocation",
// "introspection", "par"), or "" for any other URL. The query is ignored.
func (p *provider) endpointKind(u *url.URL) string {
	return p.clientEndpoints[dpop.HTU(u)]
}

// clientEndpoints maps the endpoints that authenticate the client, as HTU writes them,
// to their kind.
func clientEndpoints(m *metadata) map[string]string {
	out := make(map[string]string, 4)
	for kind, e := range map[string]string{"token": m.TokenEndpoint, "revocation": m.RevocationEndpoint,
		"introspection": m.IntrospectionEndpoint, "par": m.PAREndpoint} {
		if u, err := url.Parse(e); err == nil && e != "" {
			out[dpop.HTU(u)] = kind
		}
	}
	return out
}
