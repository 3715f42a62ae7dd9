package metrics

import (
	"bytes"
	"io"
	"mime"
	"net/http"
	"net/url"
)

// maxTokenForm bounds how much of a request body is read to find grant_type. Token
// requests are a few hundred bytes; a bigger body is not one, and is passed on untouched
// beyond this prefix.
const maxTokenForm = 64 << 10

// Transport returns an http.RoundTripper that counts calls to the provider's token
// endpoint in tokenhandler_token_endpoint_requests_total{grant_type,status}, then
// passes every request to next (nil means http.DefaultTransport).
//
// A token-endpoint call is recognised by what it is, not by its URL (discovery may hand
// out a rewritten endpoint): a POST with a form body holding grant_type. The body is read
// from GetBody when the request has one (x/oauth2's do), so the request itself is not
// touched; otherwise its first 64 KiB are read and put back in front of the rest on a
// shallow copy of the request. Nothing else of the request or the response is looked at.
func (m *Metrics) Transport(next http.RoundTripper) http.RoundTripper {
	if next == nil {
		next = http.DefaultTransport
	}
	if m == nil {
		return next
	}
	return &countingTransport{m: m, next: next}
}

type countingTransport struct {
	m    *Metrics
	next http.RoundTripper
}

func (t *countingTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	grant, req := grantType(req)
	resp, err := t.next.RoundTrip(req)
	if grant != "" {
		status := 0
		if err == nil {
			status = resp.StatusCode
		}
		t.m.tokenEndpoint.WithLabelValues(grant, statusLabel(status)).Inc()
	}
	return resp, err
}

// grantType returns the request's grant_type label ("" when it is not a token request)
// and the request to send, which is req itself unless its body had to be re-assembled.
func grantType(req *http.Request) (string, *http.Request) {
	if req.Method != http.MethodPost || req.Body == nil || req.Body == http.NoBody {
		return "", req
	}
	ct, _, err := mime.ParseMediaType(req.Header.Get("Content-Type"))
	if err != nil || ct != "application/x-www-form-urlencoded" {
		return "", req
	}
	var form []byte
	if req.GetBody != nil {
		body, err := req.GetBody()
		if err != nil {
			return "", req
		}
		form, _ = io.ReadAll(io.LimitReader(body, maxTokenForm))
		_ = body.Close()
	} else {
		form, err = io.ReadAll(io.LimitReader(req.Body, maxTokenForm))
		orig := req.Body
		req = req.Clone(req.Context())
		req.Body = &replayBody{Reader: io.MultiReader(bytes.NewReader(form), orig), closer: orig}
		if err != nil {
			// The next transport meets the same error when it reads on.
			return "", req
		}
	}
	// ParseQuery keeps every pair it could parse; a bad one elsewhere does not matter.
	vals, _ := url.ParseQuery(string(form))
	if !vals.Has("grant_type") {
		return "", req
	}
	return grantLabel(vals.Get("grant_type")), req
}

// grantLabel keeps the label bounded: a grant type we know, or "other".
func grantLabel(g string) string {
	switch g {
	case "authorization_code", "refresh_token", "client_credentials", "password",
		"urn:ietf:params:oauth:grant-type:token-exchange",
		"urn:ietf:params:oauth:grant-type:jwt-bearer",
		"urn:ietf:params:oauth:grant-type:device_code":
		return g
	}
	return "other"
}

type replayBody struct {
	io.Reader
	closer io.Closer
}

func (b *replayBody) Close() error { return b.closer.Close() }
