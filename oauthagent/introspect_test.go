package oauthagent

import (
	"context"
	"encoding/base64"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"slices"
	"testing"
	"time"

	"github.com/tokenhandler/tokenhandler/session"
)

func TestParseIntrospection(t *testing.T) {
	tests := []struct {
		name   string
		in     string
		ok     bool
		active bool
		exp    time.Time
		aud    int
	}{
		{"active", `{"active":true,"sub":"a","client_id":"c","scope":"x y","exp":1800000000,"aud":["p","q"]}`, true, true, time.Unix(1800000000, 0), 2},
		{"aud string", `{"active":true,"aud":"p"}`, true, true, time.Time{}, 1},
		{"inactive", `{"active":false}`, true, false, time.Time{}, 0},
		{"no active", `{"sub":"a"}`, false, false, time.Time{}, 0},
		{"active not a bool", `{"active":"true"}`, false, false, time.Time{}, 0},
		{"exp a string", `{"active":true,"exp":"soon"}`, false, false, time.Time{}, 0},
		{"exp negative", `{"active":true,"exp":-1}`, false, false, time.Time{}, 0},
		{"not json", `<html>`, false, false, time.Time{}, 0},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := parseIntrospection([]byte(tc.in))
			if (err == nil) != tc.ok {
				t.Fatalf("parseIntrospection(%s) error = %v, want ok %v", tc.in, err, tc.ok)
			}
			if err == nil && (got.Active != tc.active || !got.Expiry.Equal(tc.exp) || len(got.Audience) != tc.aud) {
				t.Errorf("parseIntrospection(%s) = %+v", tc.in, got)
			}
		})
	}
	enc := base64.RawURLEncoding.EncodeToString
	jwt := enc([]byte(`{"alg":"RS256"}`)) + "." + enc([]byte(`{"token_introspection":{"active":true,"sub":"a"}}`)) + ".sig"
	if in, err := parseIntrospectionJWT(jwt); err != nil || !in.Active || in.Subject != "a" {
		t.Errorf("parseIntrospectionJWT = %+v, %v", in, err)
	}
	if _, err := parseIntrospectionJWT(enc([]byte(`{}`)) + "." + enc([]byte(`{"active":true}`)) + ".s"); err == nil {
		t.Errorf("parseIntrospectionJWT(no token_introspection claim) = nil error")
	}
	if !isJWS(jwt) || isJWS("opaque-token-43-chars") || isJWS("a.b.c") {
		t.Errorf("isJWS misjudges")
	}
}

// FuzzIntrospection: no input panics the parsers of introspection responses (RFC 7662
// JSON, RFC 9701 JWT) and of JWS detection, and an accepted answer says active.
func FuzzIntrospection(f *testing.F) {
	f.Add([]byte(`{"active":true,"sub":"a","exp":1800000000,"aud":["p"]}`))
	f.Add([]byte(`{"active":false}`))
	f.Add([]byte(`eyJhbGciOiJSUzI1NiJ9.eyJ0b2tlbl9pbnRyb3NwZWN0aW9uIjp7ImFjdGl2ZSI6dHJ1ZX19.c2ln`))
	f.Add([]byte(`{"active":true,"exp":1e300}`))
	// Ory Hydra's admin introspection answer: aud an empty list, token_use.
	f.Add([]byte(`{"active":true,"client_id":"c","sub":"alice","exp":1800000000,"iat":1700000000,"nbf":1700000000,"aud":[],"iss":"http://127.0.0.1:4444","token_type":"Bearer","token_use":"access_token","scope":"openid offline_access"}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		if in, err := parseIntrospection(b); err == nil && in == nil {
			t.Fatal("nil result without error")
		}
		_, _ = parseIntrospectionJWT(string(b))
		_ = isJWS(string(b))
	})
}

// FuzzTokenResponse: exchange and refresh-derivation answers are parsed by x/oauth2
// (internal.RetrieveToken); what tokenhandler itself reads of them is the access token's
// expiry when expires_in is missing: no token panics jwtExpiry.
func FuzzTokenResponse(f *testing.F) {
	f.Add("eyJhbGciOiJSUzI1NiJ9.eyJleHAiOjE4MDAwMDAwMDB9.c2ln")
	f.Add("opaque")
	f.Fuzz(func(t *testing.T, tok string) {
		_ = jwtExpiry(tok)
		_ = isJWS(tok)
	})
}

// TestIntrospectionEndpointOption: Options.IntrospectionEndpoint is where introspections
// go when discovery names none (Ory Hydra keeps introspection on its admin API), as is
// even with a back-channel base, with the client authenticated as at the token endpoint;
// CheckProvider is told that endpoint and the grant types, and its refusal makes Run give
// up with ErrProviderUnfit.
func TestIntrospectionEndpointOption(t *testing.T) {
	f := newFakeProvider(t)
	f.extra = map[string]any{"grant_types_supported": []string{"authorization_code", "refresh_token"}}
	admin := newFakeProvider(t) // another host: the provider's admin listener
	var gotAuth, gotToken string
	admin.routes = map[string]http.HandlerFunc{"/admin/oauth2/introspect": func(w http.ResponseWriter, r *http.Request) {
		user, pass, _ := r.BasicAuth()
		gotAuth, gotToken = user+":"+pass, r.PostFormValue("token")
		tokenJSON(w, 200, `{"active":true,"client_id":"spa","sub":"alice","exp":1800000000,"iat":1700000000,"aud":[],"iss":"x","token_type":"Bearer","token_use":"access_token","scope":"openid"}`)
	}}
	endpoint := admin.srv.URL + "/admin/oauth2/introspect"
	newAgent := func(check func(ProviderFeatures) error) *Agent {
		kp, _ := session.GenerateKeyPair()
		opts := session.CookieOptions{Keys: []session.KeyPair{kp}, Lifetime: time.Hour}
		store, _ := session.NewCookieStore(opts)
		logins, _ := session.NewLoginJar(session.LoginOptions{Keys: opts.Keys})
		a, err := New(store, logins, session.NewCoordinator(session.CoordinatorOptions{}), Options{
			Issuer: f.srv.URL, BackchannelBaseURL: f.srv.URL, ClientID: "spa", ClientSecret: "s3cret",
			RedirectURL: "https://app.test/auth/callback", IntrospectionEndpoint: endpoint, CheckProvider: check,
			Logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
		})
		if err != nil {
			t.Fatal(err)
		}
		return a
	}

	var told ProviderFeatures
	a := newAgent(func(pf ProviderFeatures) error { told = pf; return nil })
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := a.Run(ctx); err != nil || !a.Ready() {
		t.Fatalf("Run = %v, ready %v; want ready", err, a.Ready())
	}
	if told.IntrospectionEndpoint != endpoint || !slices.Equal(told.GrantTypes, []string{"authorization_code", "refresh_token"}) {
		t.Errorf("CheckProvider was told %+v, want the configured endpoint and discovery's grant types", told)
	}
	p, _ := a.ready()
	body, _, err := a.introspect(ctx, p, "opaque-at", "")
	if err != nil {
		t.Fatalf("introspect = %v", err)
	}
	if gotAuth != "spa:s3cret" || gotToken != "opaque-at" {
		t.Errorf("the introspection endpoint got client %q and token %q, want spa:s3cret and the token", gotAuth, gotToken)
	}
	in, err := parseIntrospection(body)
	if err != nil || !in.Active || in.Subject != "alice" || len(in.Audience) != 0 || !in.Expiry.Equal(time.Unix(1800000000, 0)) {
		t.Errorf("parseIntrospection(Hydra's answer) = %+v, %v", in, err)
	}

	refused := errors.New("routes[0].token.format (TH_ROUTES) is jwt, but ...")
	a = newAgent(func(ProviderFeatures) error { return refused })
	if err := a.Run(ctx); !errors.Is(err, ErrProviderUnfit) || !errors.Is(err, refused) || a.Ready() {
		t.Errorf("Run with CheckProvider refusing = %v (ready %v), want ErrProviderUnfit wrapping the refusal, not ready", err, a.Ready())
	}
}
