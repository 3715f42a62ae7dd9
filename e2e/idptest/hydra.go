package idptest

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/rsa"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"html/template"
	"io"
	"math/big"
	"net/http"
	"net/url"
	"path/filepath"
	"slices"
)

// startHydra writes Hydra's configuration and starts `hydra serve all`.
func (p *Provider) startHydra(ctx context.Context, logPath string) (launched, error) {
	ports, err := freePorts(2)
	if err != nil {
		return launched{}, err
	}
	public := fmt.Sprintf("http://127.0.0.1:%d", ports[0])
	admin := fmt.Sprintf("http://127.0.0.1:%d", ports[1])
	strategy := "jwt"
	if p.opts.OpaqueAccessTokens {
		strategy = "opaque"
	}
	ttl := map[string]any{}
	if p.opts.AccessTokenTTL > 0 {
		ttl["access_token"] = duration(p.opts.AccessTokenTTL)
	}
	cfg := map[string]any{
		"dsn": "memory",
		"serve": map[string]any{
			"public": map[string]any{"host": "127.0.0.1", "port": ports[0]},
			"admin":  map[string]any{"host": "127.0.0.1", "port": ports[1]},
		},
		"urls": map[string]any{
			// The front proxy is the issuer and the public URL: discovery hands out
			// endpoints behind it, so every call to the provider passes through it.
			"self":                 map[string]any{"issuer": p.Issuer, "public": p.Issuer},
			"login":                p.login.URL + "/login",
			"consent":              p.login.URL + "/consent",
			"logout":               p.login.URL + "/logout",
			"post_logout_redirect": p.login.URL + "/logged-out",
		},
		"secrets":    map[string]any{"system": []string{randomHex(24)}},
		"strategies": map[string]any{"access_token": strategy},
		"ttl":        ttl,
		"oauth2": map[string]any{
			"pkce": map[string]any{"enforced": true},
			// Strict rotation: replaying a spent refresh token revokes the family.
			"grant": map[string]any{"refresh_token": map[string]any{"rotation_grace_period": "0s"}},
		},
		"log": map[string]any{"level": "info", "leak_sensitive_values": false},
	}
	cfgPath := filepath.Join(p.dir, fmt.Sprintf("hydra-%d.yaml", p.starts))
	if err := writeConfig(cfgPath, cfg); err != nil {
		return launched{}, err
	}
	// --dev allows the http issuer on loopback; --sqa-opt-out keeps it from sending
	// telemetry to an outside host.
	// Hydra makes its signing keys on first use: two RSA-4096 keys, 2 to 13 s here.
	// Fresh RSA-2048 keys, made while it starts and imported before first use, cost
	// about 0.1 s.
	keys := make(chan keySets, 1)
	go func() { keys <- newHydraKeys() }()
	proc, err := startProcess(p.bin, []string{"serve", "all", "--dev", "--sqa-opt-out", "--config", cfgPath}, baseEnv(), logPath)
	if err != nil {
		return launched{}, err
	}
	if err := waitReady(ctx, proc, admin+"/health/ready", public+"/health/ready"); err != nil {
		return launched{}, err
	}
	u, _ := url.Parse(public)
	return launched{proc: proc, backend: u, admin: admin, keys: <-keys}, nil
}

// keySets maps a Hydra key set name to the JSON Web Key Set to import into it.
type keySets map[string]any

// newHydraKeys makes one RS256 signing key for ID tokens and one for JWT access tokens.
func newHydraKeys() keySets {
	sets := keySets{}
	for _, set := range []string{"hydra.openid.id-token", "hydra.jwt.access-token"} {
		key, err := rsa.GenerateKey(rand.Reader, 2048)
		if err != nil {
			panic(fmt.Sprintf("idptest: rsa key: %v", err)) // crypto/rand does not fail
		}
		key.Precompute()
		b64 := func(n *big.Int) string { return base64.RawURLEncoding.EncodeToString(n.Bytes()) }
		sets[set] = map[string]any{"keys": []map[string]any{{
			"kty": "RSA", "use": "sig", "alg": "RS256", "kid": randomHex(8),
			"n": b64(key.N), "e": b64(big.NewInt(int64(key.E))), "d": b64(key.D),
			"p": b64(key.Primes[0]), "q": b64(key.Primes[1]),
			"dp": b64(key.Precomputed.Dp), "dq": b64(key.Precomputed.Dq), "qi": b64(key.Precomputed.Qinv),
		}}}
	}
	return sets
}

// setUpHydra imports the signing keys and registers the client; with dsn: memory both
// are gone after a restart.
func (p *Provider) setUpHydra(ctx context.Context, keys keySets) error {
	for set, jwks := range keys {
		if err := p.hydraAdmin(ctx, http.MethodPut, "/admin/keys/"+set, nil, jwks, nil); err != nil {
			return fmt.Errorf("import hydra keys: %w", err)
		}
	}
	return p.createHydraClient(ctx)
}

// createHydraClient registers the client.
func (p *Provider) createHydraClient(ctx context.Context) error {
	strategy := "jwt"
	if p.opts.OpaqueAccessTokens {
		strategy = "opaque"
	}
	auth := p.opts.TokenEndpointAuthMethod
	if auth == "" {
		auth = "client_secret_basic"
	}
	client := map[string]any{
		"client_id":                  p.ClientID,
		"client_secret":              p.ClientSecret,
		"client_name":                "tokenhandler",
		"grant_types":                []string{"authorization_code", "refresh_token"},
		"response_types":             []string{"code"},
		"scope":                      scopes,
		"redirect_uris":              []string{p.opts.RedirectURL},
		"token_endpoint_auth_method": auth,
		"skip_consent":               true,
		"access_token_strategy":      strategy,
	}
	if p.opts.PostLogoutRedirectURL != "" {
		client["post_logout_redirect_uris"] = []string{p.opts.PostLogoutRedirectURL}
	}
	if p.opts.BackchannelLogoutURL != "" {
		client["backchannel_logout_uri"] = p.opts.BackchannelLogoutURL
		client["backchannel_logout_session_required"] = true
	}
	var created struct {
		ClientID string `json:"client_id"`
	}
	if err := p.hydraAdmin(ctx, http.MethodPost, "/admin/clients", nil, client, &created); err != nil {
		return fmt.Errorf("create hydra client: %w", err)
	}
	if created.ClientID != p.ClientID {
		return fmt.Errorf("create hydra client: got client_id %q, want %q", created.ClientID, p.ClientID)
	}
	return nil
}

// hydraAdmin calls Hydra's admin API and decodes its JSON answer into out.
func (p *Provider) hydraAdmin(ctx context.Context, method, path string, query url.Values, in, out any) error {
	p.mu.Lock()
	admin := p.adminURL
	p.mu.Unlock()
	if admin == "" {
		return fmt.Errorf("hydra admin %s %s: hydra is not running", method, path)
	}
	var body io.Reader
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			return err
		}
		body = bytes.NewReader(b)
	}
	u := admin + path
	if query != nil {
		u += "?" + query.Encode()
	}
	req, err := http.NewRequestWithContext(ctx, method, u, body)
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := plainClient.Do(req)
	if err != nil {
		return fmt.Errorf("hydra admin %s %s: %w", method, path, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if resp.StatusCode/100 != 2 {
		return fmt.Errorf("hydra admin %s %s: %s: %s", method, path, resp.Status, b)
	}
	if out == nil {
		return nil
	}
	if err := json.Unmarshal(b, out); err != nil {
		return fmt.Errorf("hydra admin %s %s: %w", method, path, err)
	}
	return nil
}

// loginPage is the demo login form: the field names are Dex's (login, password), so one
// form filler serves both providers.
var loginPage = template.Must(template.New("login").Parse(`<!doctype html>
<html><head><title>Sign in (idptest)</title></head>
<body>
<h1>Sign in</h1>
{{if .Invalid}}<p id="login-error">Invalid username or password.</p>{{end}}
<form method="post" action="/login">
  <input type="hidden" name="login_challenge" value="{{.Challenge}}">
  <label>Email <input id="login" name="login" type="text" value="{{.Login}}" autofocus required></label>
  <label>Password <input id="password" name="password" type="password" required></label>
  <button id="submit-login" type="submit">Login</button>
</form>
</body></html>
`))

// hydraLoginApp is the login, consent and logout app Hydra redirects to: a real HTML
// login form, consent granted at once with the profile claims in the ID token, logout
// accepted at once.
func (p *Provider) hydraLoginApp() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /login", p.hydraLoginGet)
	mux.HandleFunc("POST /login", p.hydraLoginPost)
	mux.HandleFunc("GET /consent", p.hydraConsent)
	mux.HandleFunc("GET /logout", p.hydraLogout)
	mux.HandleFunc("GET /logged-out", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		io.WriteString(w, "<!doctype html><title>Logged out</title><h1>You have been logged out.</h1>")
	})
	return mux
}

func (p *Provider) hydraLoginGet(w http.ResponseWriter, r *http.Request) {
	challenge := r.URL.Query().Get("login_challenge")
	var lr struct {
		Skip    bool   `json:"skip"`
		Subject string `json:"subject"`
	}
	q := url.Values{"login_challenge": {challenge}}
	if err := p.hydraAdmin(r.Context(), http.MethodGet, "/admin/oauth2/auth/requests/login", q, nil, &lr); err != nil {
		http.Error(w, "idptest login app: "+err.Error(), http.StatusBadGateway)
		return
	}
	if lr.Skip {
		// Hydra remembers the user (its session cookie): no form, as at a real provider.
		p.hydraAcceptLogin(w, r, challenge, lr.Subject)
		return
	}
	p.renderLogin(w, challenge, "", false)
}

func (p *Provider) hydraLoginPost(w http.ResponseWriter, r *http.Request) {
	challenge := r.PostFormValue("login_challenge")
	login, password := r.PostFormValue("login"), r.PostFormValue("password")
	if login != p.Username || password != p.Password {
		p.renderLogin(w, challenge, login, true)
		return
	}
	p.hydraAcceptLogin(w, r, challenge, p.Subject)
}

func (p *Provider) renderLogin(w http.ResponseWriter, challenge, login string, invalid bool) {
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	if invalid {
		w.WriteHeader(http.StatusUnauthorized)
	}
	loginPage.Execute(w, map[string]any{"Challenge": challenge, "Login": login, "Invalid": invalid})
}

func (p *Provider) hydraAcceptLogin(w http.ResponseWriter, r *http.Request, challenge, subject string) {
	var red redirectTo
	q := url.Values{"login_challenge": {challenge}}
	accept := map[string]any{"subject": subject, "remember": true, "remember_for": 0}
	if err := p.hydraAdmin(r.Context(), http.MethodPut, "/admin/oauth2/auth/requests/login/accept", q, accept, &red); err != nil {
		http.Error(w, "idptest login app: "+err.Error(), http.StatusBadGateway)
		return
	}
	http.Redirect(w, r, red.RedirectTo, http.StatusSeeOther)
}

func (p *Provider) hydraConsent(w http.ResponseWriter, r *http.Request) {
	challenge := r.URL.Query().Get("consent_challenge")
	q := url.Values{"consent_challenge": {challenge}}
	var cr struct {
		RequestedScope    []string `json:"requested_scope"`
		RequestedAudience []string `json:"requested_access_token_audience"`
	}
	if err := p.hydraAdmin(r.Context(), http.MethodGet, "/admin/oauth2/auth/requests/consent", q, nil, &cr); err != nil {
		http.Error(w, "idptest consent app: "+err.Error(), http.StatusBadGateway)
		return
	}
	// The claims a conforming provider releases for the granted scopes.
	claims := map[string]any{}
	if slices.Contains(cr.RequestedScope, "profile") {
		claims["name"] = p.Name
	}
	if slices.Contains(cr.RequestedScope, "email") {
		claims["email"] = p.Email
		claims["email_verified"] = true
	}
	accept := map[string]any{
		"grant_scope":                 nonNil(cr.RequestedScope),
		"grant_access_token_audience": nonNil(cr.RequestedAudience),
		"remember":                    true,
		"remember_for":                0,
		"session":                     map[string]any{"id_token": claims},
	}
	var red redirectTo
	if err := p.hydraAdmin(r.Context(), http.MethodPut, "/admin/oauth2/auth/requests/consent/accept", q, accept, &red); err != nil {
		http.Error(w, "idptest consent app: "+err.Error(), http.StatusBadGateway)
		return
	}
	http.Redirect(w, r, red.RedirectTo, http.StatusFound)
}

func (p *Provider) hydraLogout(w http.ResponseWriter, r *http.Request) {
	q := url.Values{"logout_challenge": {r.URL.Query().Get("logout_challenge")}}
	var red redirectTo
	if err := p.hydraAdmin(r.Context(), http.MethodPut, "/admin/oauth2/auth/requests/logout/accept", q, nil, &red); err != nil {
		http.Error(w, "idptest logout app: "+err.Error(), http.StatusBadGateway)
		return
	}
	http.Redirect(w, r, red.RedirectTo, http.StatusFound)
}

type redirectTo struct {
	RedirectTo string `json:"redirect_to"`
}

func nonNil(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}
