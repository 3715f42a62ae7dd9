package oauthagent

import (
	"context"
	"crypto"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"

	"github.com/tokenhandler/tokenhandler/dpop"
	"github.com/tokenhandler/tokenhandler/josekey"
	"github.com/tokenhandler/tokenhandler/session"
)

// strictProvider checks what a FAPI 2.0 authorization server checks on every request
// that authenticates the client: a private_key_jwt assertion (never a secret) and a DPoP
// proof made with the expected key and carrying its current nonce.
type strictProvider struct {
	t          *testing.T
	f          *fakeProvider
	clientKey  *josekey.Key
	dpopThumb  string
	mu         sync.Mutex
	jtis       map[string]bool
	nonce      string // the nonce a proof must carry; rotated by the test
	rotate     bool   // a new nonce at every request: every proof is refused
	nonceAsked map[string]int
	pushed     map[string]url.Values // request_uri -> the pushed authorization request
	calls      map[string]int
	problems   []string
}

func (s *strictProvider) problem(format string, args ...any) {
	s.problems = append(s.problems, fmt.Sprintf(format, args...))
}

// check verifies the client authentication and the proof of one request; false means
// it answered already (a nonce challenge).
func (s *strictProvider) check(w http.ResponseWriter, r *http.Request, kind string) (url.Values, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.calls[kind]++
	_ = r.ParseForm()
	form := r.PostForm
	if r.Header.Get("Authorization") != "" || form.Has("client_secret") {
		s.problem("%s: a client secret was sent", kind)
	}
	if form.Get("client_assertion_type") != assertionType || form.Get("client_id") != "spa" {
		s.problem("%s: client_assertion_type %q client_id %q", kind, form.Get("client_assertion_type"), form.Get("client_id"))
	}
	jws, err := jose.ParseSigned(form.Get("client_assertion"), []jose.SignatureAlgorithm{jose.PS256, jose.RS256, jose.ES256, jose.EdDSA})
	if err != nil {
		s.problem("%s: assertion does not parse: %v", kind, err)
		return nil, false
	}
	var pub jose.JSONWebKey
	_ = pub.UnmarshalJSON(s.clientKey.PublicJWKJSON())
	payload, err := jws.Verify(pub.Key)
	if err != nil {
		s.problem("%s: assertion signature: %v", kind, err)
	}
	if kid := jws.Signatures[0].Header.KeyID; kid != s.clientKey.Thumbprint() {
		s.problem("%s: assertion kid %q, want the thumbprint", kind, kid)
	}
	var c struct {
		Iss, Sub, Aud, JTI string
		IAT, Exp           int64
	}
	_ = json.Unmarshal(payload, &c)
	if c.Iss != "spa" || c.Sub != "spa" || c.Aud != s.f.srv.URL || c.JTI == "" || c.Exp-c.IAT > 60 || c.Exp < time.Now().Unix() {
		s.problem("%s: assertion claims %+v", kind, c)
	}
	if s.jtis[c.JTI] {
		s.problem("%s: assertion jti repeated", kind)
	}
	s.jtis[c.JTI] = true
	if kind == "introspection" {
		return form, true
	}
	// DPoP proof.
	pj, err := jose.ParseSigned(r.Header.Get("DPoP"), []jose.SignatureAlgorithm{jose.ES256, jose.EdDSA})
	if err != nil {
		s.problem("%s: DPoP proof: %v", kind, err)
		return nil, false
	}
	h := pj.Signatures[0].Protected
	tp, _ := h.JSONWebKey.Thumbprint(crypto.SHA256)
	pp, err := pj.Verify(h.JSONWebKey.Key)
	if err != nil || h.ExtraHeaders["typ"] != "dpop+jwt" || base64.RawURLEncoding.EncodeToString(tp) != s.dpopThumb {
		s.problem("%s: proof header or signature wrong (%v)", kind, err)
	}
	var pc struct{ HTM, HTU, Nonce, ATH string }
	_ = json.Unmarshal(pp, &pc)
	if pc.HTM != "POST" || pc.HTU != s.f.srv.URL+r.URL.Path || pc.ATH != "" {
		s.problem("%s: proof claims %+v", kind, pc)
	}
	if s.rotate {
		s.nonce += "x"
	}
	if pc.Nonce != s.nonce {
		s.nonceAsked[kind]++
		w.Header().Set("DPoP-Nonce", s.nonce)
		tokenJSON(w, http.StatusBadRequest, `{"error":"use_dpop_nonce"}`)
		return nil, false
	}
	return form, true
}

func newStrictProvider(t *testing.T) *strictProvider {
	f := newFakeProvider(t)
	ck, _ := josekey.Generate(josekey.PS256)
	s := &strictProvider{t: t, f: f, clientKey: ck, jtis: map[string]bool{}, nonce: "nonce-1",
		nonceAsked: map[string]int{}, pushed: map[string]url.Values{}, calls: map[string]int{}}
	f.extra = map[string]any{
		"pushed_authorization_request_endpoint":            "PAR",
		"revocation_endpoint":                              "REVOKE",
		"token_endpoint_auth_signing_alg_values_supported": []string{"PS256", "ES256"},
		"authorization_response_iss_parameter_supported":   true,
	}
	f.routes = map[string]http.HandlerFunc{
		"/par": func(w http.ResponseWriter, r *http.Request) {
			form, ok := s.check(w, r, "par")
			if !ok {
				return
			}
			s.mu.Lock()
			uri := "urn:ietf:params:oauth:request_uri:" + random128()
			s.pushed[uri] = form
			s.mu.Unlock()
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(http.StatusCreated)
			_ = json.NewEncoder(w).Encode(map[string]any{"request_uri": uri, "expires_in": 60})
		},
		"/revoke": func(w http.ResponseWriter, r *http.Request) {
			if _, ok := s.check(w, r, "revocation"); ok {
				w.WriteHeader(http.StatusOK)
			}
		},
	}
	return s
}

// discovery's PAR and revocation URLs are relative placeholders until the server runs.
func (s *strictProvider) fixURLs() {
	s.f.extra["pushed_authorization_request_endpoint"] = s.f.srv.URL + "/par"
	s.f.extra["revocation_endpoint"] = s.f.srv.URL + "/revoke"
}

func newFAPIAgent(t *testing.T, s *strictProvider, par string) (*Agent, *dpop.Proofer) {
	t.Helper()
	dk, _ := josekey.Generate(josekey.EdDSA)
	proofer, _ := dpop.NewProofer(dk, nil)
	s.dpopThumb = proofer.Thumbprint()
	kp, _ := session.GenerateKeyPair()
	opts := session.CookieOptions{Keys: []session.KeyPair{kp}, RefreshPaths: []string{"/auth/refresh", "/auth/logout", "/auth/userinfo"}, Lifetime: time.Hour}
	store, _ := session.NewCookieStore(opts)
	logins, _ := session.NewLoginJar(session.LoginOptions{Keys: opts.Keys})
	a, err := New(store, logins, session.NewCoordinator(session.CoordinatorOptions{}), Options{
		Issuer: s.f.srv.URL, ClientID: "spa", TokenAuthMethod: "private_key_jwt", ClientKey: s.clientKey,
		PAR: par, DPoP: proofer, RedirectURL: "https://app.test/auth/callback",
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := a.Discover(context.Background()); err != nil {
		t.Fatal(err)
	}
	return a, proofer
}

// TestFAPIClient runs login (PAR), callback, refresh and logout against a provider that
// requires private_key_jwt, DPoP and nonces, and rotates its nonce between steps.
func TestFAPIClient(t *testing.T) {
	s := newStrictProvider(t)
	s.fixURLs()
	a, _ := newFAPIAgent(t, s, "required")

	var tokenType = "DPoP"
	s.f.answer = func(w http.ResponseWriter, r *http.Request) {
		form, ok := s.check(w, r, "token")
		if !ok {
			return
		}
		resp := map[string]any{"access_token": "at-" + form.Get("grant_type"), "token_type": tokenType, "expires_in": 60, "refresh_token": "rt-2"}
		if form.Get("grant_type") == "authorization_code" {
			s.mu.Lock()
			var pushed url.Values
			for _, v := range s.pushed {
				pushed = v
			}
			s.mu.Unlock()
			now := time.Now()
			resp["id_token"] = signJSON(t, testKey, claimsJSON(t, map[string]any{"iss": s.f.srv.URL, "sub": "alice", "aud": "spa",
				"exp": now.Add(time.Hour).Unix(), "iat": now.Unix(), "nonce": pushed.Get("nonce"), "name": "A", "email": "a@x"}))
		}
		b, _ := json.Marshal(resp)
		tokenJSON(w, 200, string(b))
	}

	// Login: the browser is sent with client_id and request_uri only.
	rec := httptest.NewRecorder()
	a.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "https://app.test/auth/login", nil))
	loc, _ := url.Parse(rec.Header().Get("Location"))
	if rec.Code != http.StatusFound || loc.Path != "/auth" || len(loc.Query()) != 2 || loc.Query().Get("client_id") != "spa" ||
		!strings.HasPrefix(loc.Query().Get("request_uri"), "urn:ietf:params:oauth:request_uri:") {
		t.Fatalf("login = %d to %s, want the authorization endpoint with client_id and request_uri only", rec.Code, loc)
	}
	var pushed url.Values
	for _, v := range s.pushed {
		pushed = v
	}
	if pushed.Get("code_challenge_method") != "S256" || pushed.Get("state") == "" || pushed.Get("redirect_uri") != "https://app.test/auth/callback" {
		t.Fatalf("pushed request = %v", pushed)
	}
	var login *http.Cookie
	for _, c := range rec.Result().Cookies() {
		if strings.Contains(c.Name, "login") {
			login = c
		}
	}

	// Callback: the code exchange carries the assertion and a proof with the nonce.
	s.nonce = "nonce-2"
	cb := url.Values{"state": {pushed.Get("state")}, "code": {"c"}, "iss": {s.f.srv.URL}}
	req := httptest.NewRequest(http.MethodGet, "https://app.test/auth/callback?"+cb.Encode(), nil)
	req.AddCookie(&http.Cookie{Name: login.Name, Value: login.Value})
	rec = httptest.NewRecorder()
	a.ServeHTTP(rec, req)
	if got := rec.Header().Get("Location"); got != "/" {
		t.Fatalf("callback to %q, want / (problems: %q)", got, s.problems)
	}
	jar := map[string]*http.Cookie{}
	for _, c := range rec.Result().Cookies() {
		if c.MaxAge > 0 {
			jar[c.Name] = c
		}
	}
	withCookies := func(r *http.Request) *http.Request {
		for _, c := range jar {
			r.AddCookie(&http.Cookie{Name: c.Name, Value: c.Value})
		}
		r.Header.Set("X-CSRF", "1")
		return r
	}
	sess, err := a.store.Load(context.Background(), withCookies(httptest.NewRequest(http.MethodGet, "https://app.test/auth/refresh", nil)))
	if err != nil || sess.TokenType != "DPoP" || sess.AccessToken != "at-authorization_code" {
		t.Fatalf("session after callback = %v, %v; want a DPoP-bound token", sess, err)
	}

	// Refresh: the same key, a new nonce, the binding kept.
	s.nonce = "nonce-3"
	rec = httptest.NewRecorder()
	a.ServeHTTP(rec, withCookies(httptest.NewRequest(http.MethodPost, "https://app.test/auth/refresh", nil)))
	if rec.Code != http.StatusNoContent {
		t.Fatalf("refresh = %d %s (problems %q)", rec.Code, rec.Body, s.problems)
	}
	for _, c := range rec.Result().Cookies() {
		if c.MaxAge > 0 {
			jar[c.Name] = c
		}
	}
	sess, _ = a.store.Load(context.Background(), withCookies(httptest.NewRequest(http.MethodGet, "https://app.test/auth/refresh", nil)))
	if sess == nil || sess.TokenType != "DPoP" || sess.AccessToken != "at-refresh_token" {
		t.Fatalf("session after refresh = %v; want the refreshed token, still DPoP", sess)
	}

	// A provider that asks for a new nonce again after the retry: exactly one retry, and
	// the refresh fails as an outage (502), not as a dead refresh token: the session stays.
	s.mu.Lock()
	s.rotate = true
	before := s.calls["token"]
	s.mu.Unlock()
	other := *sess
	other.RefreshToken = "rt-not-spent-yet" // not served from the last refresh's grace entry
	_, err = a.refresher.Refresh(context.Background(), &other)
	s.mu.Lock()
	s.rotate = false
	retried := s.calls["token"] - before
	s.calls["token"], s.nonceAsked["token"] = before, 2 // keep the counts below as they were
	s.mu.Unlock()
	if !errors.Is(err, session.ErrIdPUnavailable) || errors.Is(err, session.ErrRefreshDenied) || retried != 2 {
		t.Fatalf("refresh against an always-new nonce = %v after %d token calls, want ErrIdPUnavailable after 2", err, retried)
	}

	// Logout: revocation authenticated the same way, with the latest nonce.
	s.nonce = "nonce-4"
	rec = httptest.NewRecorder()
	a.ServeHTTP(rec, withCookies(httptest.NewRequest(http.MethodPost, "https://app.test/auth/logout", nil)))
	if rec.Code != http.StatusOK {
		t.Fatalf("logout = %d", rec.Code)
	}

	if len(s.problems) > 0 {
		t.Errorf("the provider found problems:\n%s", strings.Join(s.problems, "\n"))
	}
	// Each step met a new nonce once and retried exactly once.
	wantCalls := map[string]int{"par": 2, "token": 4, "revocation": 2}
	wantAsked := map[string]int{"par": 1, "token": 2, "revocation": 1}
	for k, n := range wantCalls {
		if s.calls[k] != n || s.nonceAsked[k] != wantAsked[k] {
			t.Errorf("%s: %d calls with %d nonce challenges, want %d and %d", k, s.calls[k], s.nonceAsked[k], n, wantAsked[k])
		}
	}
}

// TestUnfitProvider: discovery that cannot serve the configuration makes Run give up
// with ErrProviderUnfit (serve then stops); a control case with everything offered
// becomes ready.
func TestUnfitProvider(t *testing.T) {
	dk, _ := josekey.Generate(josekey.ES256)
	proofer, _ := dpop.NewProofer(dk, nil)
	kp, _ := session.GenerateKeyPair()
	opts := session.CookieOptions{Keys: []session.KeyPair{kp}, Lifetime: time.Hour}
	store, _ := session.NewCookieStore(opts)
	logins, _ := session.NewLoginJar(session.LoginOptions{Keys: opts.Keys})
	tests := []struct {
		name, par, profile string
		noPAR, noIss       bool
		wantReady          bool
	}{
		{name: "par required, no PAR endpoint", par: "required", noPAR: true},
		{name: "fapi2 makes auto required", par: "auto", profile: "fapi2", noPAR: true},
		{name: "fapi2 without RFC 9207 iss", par: "required", profile: "fapi2", noIss: true},
		{name: "control: fapi2, everything offered", par: "required", profile: "fapi2", wantReady: true},
		{name: "control: auto without PAR endpoint", par: "auto", noPAR: true, wantReady: true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s := newStrictProvider(t)
			s.fixURLs()
			s.f.extra["id_token_signing_alg_values_supported"] = []string{"PS256"}
			if tc.noPAR {
				delete(s.f.extra, "pushed_authorization_request_endpoint")
			}
			if tc.noIss {
				delete(s.f.extra, "authorization_response_iss_parameter_supported")
			}
			a, _ := New(store, logins, session.NewCoordinator(session.CoordinatorOptions{}), Options{
				Issuer: s.f.srv.URL, ClientID: "spa", TokenAuthMethod: "private_key_jwt", ClientKey: s.clientKey,
				PAR: tc.par, Profile: tc.profile, DPoP: proofer, RedirectURL: "https://app.test/auth/callback",
				Logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
			})
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			err := a.Run(ctx)
			cancel()
			if tc.wantReady {
				if err != nil || !a.Ready() {
					t.Fatalf("Run = %v, ready %v; want ready", err, a.Ready())
				}
				return
			}
			if !errors.Is(err, ErrProviderUnfit) || a.Ready() {
				t.Errorf("Run = %v, want ErrProviderUnfit and not ready", err)
			}
		})
	}
}
