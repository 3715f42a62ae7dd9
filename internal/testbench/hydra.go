package testbench

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"html/template"
	"io"
	"net/http"
	"net/url"
	"slices"
	"time"
)

// HydraLogin is the login, consent and logout app Ory Hydra redirects to: a real HTML
// login form (field names as Dex's, login and password, so one form filler serves both
// providers), consent granted at once with the profile claims in the ID token, logout
// accepted at once.
type HydraLogin struct {
	// Admin returns Hydra's admin URL; "" while Hydra is not running.
	Admin func() string
	// Username and Password are the one user's credentials at the form.
	Username, Password string
	// Subject, Name and Email are what the ID token carries for the user.
	Subject, Name, Email string
}

// Handler serves the app: GET and POST /login, GET /consent, GET /logout and
// GET /logged-out (Hydra's post-logout page).
func (h *HydraLogin) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /login", h.loginGet)
	mux.HandleFunc("POST /login", h.loginPost)
	mux.HandleFunc("GET /consent", h.consent)
	mux.HandleFunc("GET /logout", h.logout)
	mux.HandleFunc("GET /logged-out", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		io.WriteString(w, "<!doctype html><title>Logged out</title><h1>You have been logged out.</h1>")
	})
	return mux
}

// loginPage is the login form.
var loginPage = template.Must(template.New("login").Parse(`<!doctype html>
<html><head><title>Sign in (testbench)</title></head>
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

func (h *HydraLogin) loginGet(w http.ResponseWriter, r *http.Request) {
	challenge := r.URL.Query().Get("login_challenge")
	var lr struct {
		Skip    bool   `json:"skip"`
		Subject string `json:"subject"`
	}
	q := url.Values{"login_challenge": {challenge}}
	if err := HydraAdmin(r.Context(), h.Admin(), http.MethodGet, "/admin/oauth2/auth/requests/login", q, nil, &lr); err != nil {
		http.Error(w, "testbench login app: "+err.Error(), http.StatusBadGateway)
		return
	}
	if lr.Skip {
		// Hydra remembers the user (its session cookie): no form, as at a real provider.
		h.acceptLogin(w, r, challenge, lr.Subject)
		return
	}
	renderLogin(w, challenge, "", false)
}

func (h *HydraLogin) loginPost(w http.ResponseWriter, r *http.Request) {
	challenge := r.PostFormValue("login_challenge")
	login, password := r.PostFormValue("login"), r.PostFormValue("password")
	if login != h.Username || password != h.Password {
		renderLogin(w, challenge, login, true)
		return
	}
	h.acceptLogin(w, r, challenge, h.Subject)
}

func renderLogin(w http.ResponseWriter, challenge, login string, invalid bool) {
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	if invalid {
		w.WriteHeader(http.StatusUnauthorized)
	}
	loginPage.Execute(w, map[string]any{"Challenge": challenge, "Login": login, "Invalid": invalid})
}

func (h *HydraLogin) acceptLogin(w http.ResponseWriter, r *http.Request, challenge, subject string) {
	var red redirectTo
	q := url.Values{"login_challenge": {challenge}}
	accept := map[string]any{"subject": subject, "remember": true, "remember_for": 0}
	if err := HydraAdmin(r.Context(), h.Admin(), http.MethodPut, "/admin/oauth2/auth/requests/login/accept", q, accept, &red); err != nil {
		http.Error(w, "testbench login app: "+err.Error(), http.StatusBadGateway)
		return
	}
	http.Redirect(w, r, red.RedirectTo, http.StatusSeeOther)
}

func (h *HydraLogin) consent(w http.ResponseWriter, r *http.Request) {
	challenge := r.URL.Query().Get("consent_challenge")
	q := url.Values{"consent_challenge": {challenge}}
	var cr struct {
		RequestedScope    []string `json:"requested_scope"`
		RequestedAudience []string `json:"requested_access_token_audience"`
	}
	if err := HydraAdmin(r.Context(), h.Admin(), http.MethodGet, "/admin/oauth2/auth/requests/consent", q, nil, &cr); err != nil {
		http.Error(w, "testbench consent app: "+err.Error(), http.StatusBadGateway)
		return
	}
	// The claims a conforming provider releases for the granted scopes.
	claims := map[string]any{}
	if slices.Contains(cr.RequestedScope, "profile") {
		claims["name"] = h.Name
	}
	if slices.Contains(cr.RequestedScope, "email") {
		claims["email"] = h.Email
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
	if err := HydraAdmin(r.Context(), h.Admin(), http.MethodPut, "/admin/oauth2/auth/requests/consent/accept", q, accept, &red); err != nil {
		http.Error(w, "testbench consent app: "+err.Error(), http.StatusBadGateway)
		return
	}
	http.Redirect(w, r, red.RedirectTo, http.StatusFound)
}

func (h *HydraLogin) logout(w http.ResponseWriter, r *http.Request) {
	q := url.Values{"logout_challenge": {r.URL.Query().Get("logout_challenge")}}
	var red redirectTo
	if err := HydraAdmin(r.Context(), h.Admin(), http.MethodPut, "/admin/oauth2/auth/requests/logout/accept", q, nil, &red); err != nil {
		http.Error(w, "testbench logout app: "+err.Error(), http.StatusBadGateway)
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

var adminClient = &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{Proxy: nil}}

// HydraAdmin calls Hydra's admin API at admin (its base URL) with in as the JSON body
// (nil: none) and decodes the JSON answer into out (nil: ignored).
func HydraAdmin(ctx context.Context, admin, method, path string, query url.Values, in, out any) error {
	if admin == "" {
		return fmt.Errorf("hydra admin %s %s: hydra is not running", method, path)
	}
	var body io.Reader
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			return fmt.Errorf("hydra admin %s %s: %w", method, path, err)
		}
		body = bytes.NewReader(b)
	}
	u := admin + path
	if query != nil {
		u += "?" + query.Encode()
	}
	req, err := http.NewRequestWithContext(ctx, method, u, body)
	if err != nil {
		return fmt.Errorf("hydra admin %s %s: %w", method, path, err)
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := adminClient.Do(req)
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
