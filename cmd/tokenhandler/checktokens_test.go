package main

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/tokenhandler/tokenhandler/mint"
)

// TestCheckConfigTokenPolicies: check-config names the routes that derive tokens, and
// refuses, naming route and key, a policy the provider's discovery cannot serve.
func TestCheckConfigTokenPolicies(t *testing.T) {
	var meta map[string]any
	idp := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/.well-known/openid-configuration" {
			http.NotFound(w, r)
			return
		}
		_ = json.NewEncoder(w).Encode(meta)
	}))
	defer idp.Close()
	yaml := `
public_url: "https://app.example.com"
oidc:
  issuer: "` + idp.URL + `"
  client_id: "spa"
routes:
  - path: /orders/
    upstream: http://127.0.0.1:9000
    token:
      via: exchange
      audience: [orders]
  - path: /phantom/
    upstream: http://127.0.0.1:9001
    token:
      format: jwt
      jwt_from: introspection
  - path: /plain/
    upstream: http://127.0.0.1:9002
`
	e := env{"TH_OIDC_CLIENT_SECRET": "s", "TH_COOKIES_KEYS": testKey}

	meta = map[string]any{"issuer": idp.URL, "introspection_endpoint": idp.URL + "/introspect",
		"grant_types_supported": []string{"authorization_code", "refresh_token", "urn:ietf:params:oauth:grant-type:token-exchange"}}
	out, stderr, code, err := runCmd(t, e, "check-config", "--config", writeConfig(t, yaml))
	if err != nil || code != 0 {
		t.Fatalf("check-config = %v (exit %d), want success; stderr %s", err, code, stderr)
	}
	for _, want := range []string{"token: routes[0] /orders/ gets RFC 8693 token exchange", "token: routes[1] /phantom/ gets the session's access token, as the provider's signed introspection response"} {
		if !strings.Contains(out, want) {
			t.Errorf("check-config output = %q, want %q", out, want)
		}
	}
	if strings.Contains(out, "/plain/") {
		t.Errorf("check-config output = %q names a route that derives nothing", out)
	}

	meta = map[string]any{"issuer": idp.URL, "grant_types_supported": []string{"authorization_code", "refresh_token"}}
	_, stderr, code, err = runCmd(t, e, "check-config", "--config", writeConfig(t, yaml))
	if err == nil || code == 0 {
		t.Fatalf("check-config = success, want a refusal")
	}
	for _, want := range []string{
		"routes[0].token.via (TH_ROUTES) is exchange, but the provider's grant_types_supported lacks urn:ietf:params:oauth:grant-type:token-exchange",
		"routes[1].token.format (TH_ROUTES) is jwt, but the provider's discovery has no introspection_endpoint",
	} {
		if !strings.Contains(stderr+err.Error(), want) {
			t.Errorf("check-config error = %v %s, want %q", err, stderr, want)
		}
	}
}

func TestKeygenSigning(t *testing.T) {
	for _, kind := range []string{"ec", "ed25519"} {
		out, _, code, err := runCmd(t, nil, "keygen", "--signing", kind)
		if err != nil || code != 0 {
			t.Fatalf("keygen --signing %s = %v (exit %d)", kind, err, code)
		}
		if _, perr := mint.ParseKey([]byte(out)); perr != nil {
			t.Errorf("keygen --signing %s printed a key ParseKey refuses: %v", kind, perr)
		}
	}
	if _, _, code, _ := runCmd(t, nil, "keygen", "--signing", "rsa"); code != 2 {
		t.Errorf("keygen --signing rsa exit %d, want a usage error (2)", code)
	}
}
