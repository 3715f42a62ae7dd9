package main

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/tokenhandler/tokenhandler/mint"
	"github.com/tokenhandler/tokenhandler/oauthagent"
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

// Without introspection_endpoint in discovery (Ory Hydra), oidc.introspection_endpoint
// serves format jwt.
func TestCheckConfigIntrospectionEndpointKey(t *testing.T) {
	idp := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_ = json.NewEncoder(w).Encode(map[string]any{"grant_types_supported": []string{"authorization_code", "refresh_token"}})
	}))
	defer idp.Close()
	yaml := `
public_url: "https://app.example.com"
oidc:
  issuer: "` + idp.URL + `"
  client_id: "spa"
routes:
  - path: /minted/
    upstream: http://127.0.0.1:9000
    token:
      format: jwt
      jwt_from: introspection
`
	e := env{"TH_OIDC_CLIENT_SECRET": "s", "TH_COOKIES_KEYS": testKey}
	if _, stderr, code, err := runCmd(t, e, "check-config", "--config", writeConfig(t, yaml)); err == nil || code == 0 ||
		!strings.Contains(stderr+err.Error(), "routes[0].token.format (TH_ROUTES) is jwt, but the provider's discovery has no introspection_endpoint and oidc.introspection_endpoint (TH_OIDC_INTROSPECTION_ENDPOINT) is not set") {
		t.Errorf("check-config without any introspection endpoint = %v (exit %d) %s, want the route and the key named", err, code, stderr)
	}
	e["TH_OIDC_INTROSPECTION_ENDPOINT"] = "http://127.0.0.1:4445/admin/oauth2/introspect"
	out, stderr, code, err := runCmd(t, e, "check-config", "--config", writeConfig(t, yaml))
	if err != nil || code != 0 {
		t.Fatalf("check-config with oidc.introspection_endpoint = %v (exit %d), want success; stderr %s", err, code, stderr)
	}
	if !strings.Contains(out, "tokenhandler introspects at http://127.0.0.1:4445/admin/oauth2/introspect") {
		t.Errorf("check-config output = %q, want the introspection endpoint named", out)
	}
}

// TestServeRefusesUnservableTokenPolicy: serve checks the routes' token policies against
// the discovery it fetched, as check-config does: a policy the provider cannot serve
// stops it before it is ready, logged at error level naming route and key; with
// oidc.introspection_endpoint set the same provider serves it.
func TestServeRefusesUnservableTokenPolicy(t *testing.T) {
	var idp *httptest.Server
	idp = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(map[string]any{"issuer": idp.URL, "authorization_endpoint": idp.URL + "/auth",
			"token_endpoint": idp.URL + "/token", "jwks_uri": idp.URL + "/jwks"})
	}))
	defer idp.Close()
	vars := map[string]string{
		"TH_LISTEN": "127.0.0.1:0", "TH_ADMIN_LISTEN": "", "TH_PUBLIC_URL": "http://127.0.0.1:8080",
		"TH_OIDC_ISSUER": idp.URL, "TH_OIDC_CLIENT_ID": "c", "TH_OIDC_CLIENT_SECRET": "s", "TH_COOKIES_KEYS": testKey,
		"TH_ROUTES": `[{"path":"/plain/","upstream":"http://127.0.0.1:9000"},{"path":"/phantom/","upstream":"http://127.0.0.1:9001","token":{"format":"jwt","jwt_from":"introspection"}}]`,
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	var logs syncBuffer
	err := serve(ctx, envConfig(t, vars), slog.New(slog.NewJSONHandler(&logs, nil)), nil)
	if !errors.Is(err, oauthagent.ErrProviderUnfit) || !strings.Contains(err.Error(), "routes[1].token.format (TH_ROUTES) is jwt") {
		t.Fatalf("serve = %v, want ErrProviderUnfit naming routes[1].token.format", err)
	}
	var logged bool
	for line := range strings.Lines(logs.String()) {
		logged = logged || strings.Contains(line, `"level":"ERROR"`) && strings.Contains(line, "routes[1].token.format (TH_ROUTES)")
	}
	if !logged {
		t.Errorf("no error-level log line names routes[1].token.format:\n%s", logs.String())
	}

	vars["TH_OIDC_INTROSPECTION_ENDPOINT"] = idp.URL + "/admin/oauth2/introspect"
	a, err := newApp(envConfig(t, vars), slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	defer a.closeRedis()
	if err := a.agent.Run(ctx); err != nil || !a.agent.Ready() {
		t.Errorf("Run with oidc.introspection_endpoint = %v, ready %v; want ready", err, a.agent.Ready())
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
