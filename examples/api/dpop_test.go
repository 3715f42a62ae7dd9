package api

import (
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"

	"github.com/tokenhandler/tokenhandler/dpop"
	"github.com/tokenhandler/tokenhandler/josekey"
)

func TestDPoPProofChecks(t *testing.T) {
	idp := newIdP(t, "")
	iss := idp.srv.URL
	key, _ := josekey.Generate(josekey.EdDSA)
	other, _ := josekey.Generate(josekey.EdDSA)
	clock := func() time.Time { return now }
	proofer, _ := dpop.NewProofer(key, clock)
	otherProofer, _ := dpop.NewProofer(other, clock)
	oldProofer, _ := dpop.NewProofer(key, func() time.Time { return now.Add(-5 * time.Minute) })
	bound := sign(t, idp.key, jose.RS256, claimsFor(iss, func(c map[string]any) {
		c["cnf"] = map[string]any{"jkt": key.Thumbprint()}
	}))
	unbound := sign(t, idp.key, jose.RS256, claimsFor(iss, nil))
	const htu = "http://api.test/claims"
	must := func(s string, err error) string {
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	badTyp := must(key.JWT(map[string]any{"typ": "JWT", "jwk": key.PublicJWK()},
		map[string]any{"jti": "x1", "htm": "GET", "htu": htu, "iat": now.Unix()}))
	replayed := must(proofer.Proof("GET", htu, bound, ""))

	tests := []struct {
		name    string
		authz   string
		proofs  []string
		require bool
		want    int
	}{
		{"control: a valid proof", "DPoP " + bound, []string{must(proofer.Proof("GET", htu, bound, ""))}, false, 200},
		{"control: replayed proof's first use", "DPoP " + bound, []string{replayed}, false, 200},
		{"replayed jti", "DPoP " + bound, []string{replayed}, false, 401},
		{"another key", "DPoP " + bound, []string{must(otherProofer.Proof("GET", htu, bound, ""))}, false, 401},
		{"wrong htu", "DPoP " + bound, []string{must(proofer.Proof("GET", "http://api.test/other", bound, ""))}, false, 401},
		{"htu of another host", "DPoP " + bound, []string{must(proofer.Proof("GET", "http://evil.test/claims", bound, ""))}, false, 401},
		{"wrong htm", "DPoP " + bound, []string{must(proofer.Proof("POST", htu, bound, ""))}, false, 401},
		{"iat too old", "DPoP " + bound, []string{must(oldProofer.Proof("GET", htu, bound, ""))}, false, 401},
		{"ath of another token", "DPoP " + bound, []string{must(proofer.Proof("GET", htu, unbound, ""))}, false, 401},
		{"typ not dpop+jwt", "DPoP " + bound, []string{badTyp}, false, 401},
		{"no proof", "DPoP " + bound, nil, false, 401},
		{"two proofs", "DPoP " + bound, []string{must(proofer.Proof("GET", htu, bound, "")), must(proofer.Proof("GET", htu, bound, ""))}, false, 401},
		{"unbound token as DPoP", "DPoP " + unbound, []string{must(proofer.Proof("GET", htu, unbound, ""))}, false, 401},
		{"bound token as Bearer", "Bearer " + bound, nil, false, 401},
		{"control: bearer token", "Bearer " + unbound, nil, false, 200},
		{"bearer token where DPoP is required", "Bearer " + unbound, nil, true, 401},
		{"control: DPoP where required", "DPoP " + bound, []string{must(proofer.Proof("GET", htu, bound, ""))}, true, 200},
	}
	h, _ := New(Options{Issuer: iss, Now: clock})
	hr, _ := New(Options{Issuer: iss, Now: clock, RequireDPoP: true})
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			req := httptest.NewRequest("GET", htu+"?q=1", nil)
			req.Header.Set("Authorization", tc.authz)
			for _, p := range tc.proofs {
				req.Header.Add("DPoP", p)
			}
			rec := httptest.NewRecorder()
			handler := h
			if tc.require {
				handler = hr
			}
			handler.ServeHTTP(rec, req)
			if rec.Code != tc.want {
				t.Fatalf("status = %d %s, want %d", rec.Code, rec.Body, tc.want)
			}
			if tc.want == http.StatusUnauthorized && rec.Header().Get("WWW-Authenticate") == "" {
				t.Error("a 401 without WWW-Authenticate")
			}
		})
	}
}
