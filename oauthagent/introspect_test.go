package oauthagent

import (
	"encoding/base64"
	"testing"
	"time"
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
