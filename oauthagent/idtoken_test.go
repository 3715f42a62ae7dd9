package oauthagent

import (
	"context"
	"crypto"
	"crypto/rand"
	"crypto/rsa"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/coreos/go-oidc/v3/oidc"
	"github.com/go-jose/go-jose/v4"
)

const testIssuer = "https://idp.test"

var testKey = func() *rsa.PrivateKey {
	k, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		panic(err)
	}
	return k
}()

// signJSON signs an arbitrary JSON payload (so tests can write quoted numbers and other
// shapes a struct would not produce).
func signJSON(t testing.TB, key *rsa.PrivateKey, payload string) string {
	t.Helper()
	signer, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.RS256, Key: key}, (&jose.SignerOptions{}).WithType("JWT"))
	if err != nil {
		t.Fatal(err)
	}
	jws, err := signer.Sign([]byte(payload))
	if err != nil {
		t.Fatal(err)
	}
	s, err := jws.CompactSerialize()
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func claimsJSON(t testing.TB, m map[string]any) string {
	t.Helper()
	b, err := json.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func TestVerifyIDToken(t *testing.T) {
	now := time.Unix(1_900_000_000, 0)
	verifier := oidc.NewVerifier(testIssuer, &oidc.StaticKeySet{PublicKeys: []crypto.PublicKey{testKey.Public()}},
		&oidc.Config{ClientID: "spa", SupportedSigningAlgs: []string{"RS256"}, Now: func() time.Time { return now }})
	base := func() map[string]any {
		return map[string]any{
			"iss": testIssuer, "sub": "alice", "aud": "spa", "nonce": "n-1",
			"exp": now.Add(time.Hour).Unix(), "iat": now.Unix(), "name": "Alice", "email": "a@x.test", "sid": "s1",
		}
	}
	with := func(f func(m map[string]any)) string {
		m := base()
		f(m)
		return claimsJSON(t, m)
	}
	otherKey, _ := rsa.GenerateKey(rand.Reader, 2048)

	tests := []struct {
		name    string
		token   string
		nonce   string
		wantErr string
	}{
		{"valid", signJSON(t, testKey, with(func(map[string]any) {})), "n-1", ""},
		{"valid azp equal to client", signJSON(t, testKey, with(func(m map[string]any) { m["azp"] = "spa" })), "n-1", ""},
		{"valid several audiences with azp", signJSON(t, testKey, with(func(m map[string]any) { m["aud"] = []string{"spa", "api"}; m["azp"] = "spa" })), "n-1", ""},
		{"bad signature", signJSON(t, otherKey, with(func(map[string]any) {})), "n-1", "signature"},
		{"wrong issuer", signJSON(t, testKey, with(func(m map[string]any) { m["iss"] = "https://evil.test" })), "n-1", "issued by a different provider"},
		{"wrong audience", signJSON(t, testKey, with(func(m map[string]any) { m["aud"] = "other" })), "n-1", "audience"},
		{"expired", signJSON(t, testKey, with(func(m map[string]any) { m["exp"] = now.Add(-time.Minute).Unix() })), "n-1", "expired"},
		{"wrong nonce", signJSON(t, testKey, with(func(map[string]any) {})), "n-2", "nonce"},
		{"missing nonce", signJSON(t, testKey, with(func(m map[string]any) { delete(m, "nonce") })), "n-1", "nonce"},
		{"azp of another client", signJSON(t, testKey, with(func(m map[string]any) { m["azp"] = "other" })), "n-1", "azp"},
		{"several audiences without azp", signJSON(t, testKey, with(func(m map[string]any) { m["aud"] = []string{"spa", "api"} })), "n-1", "azp is required"},
		{"iat missing", signJSON(t, testKey, with(func(m map[string]any) { delete(m, "iat") })), "n-1", "iat is missing"},
		{"iat in the future", signJSON(t, testKey, with(func(m map[string]any) { m["iat"] = now.Add(5 * time.Minute).Unix() })), "n-1", "iat is in the future"},
		{"sub empty", signJSON(t, testKey, with(func(m map[string]any) { m["sub"] = "" })), "n-1", "sub"},
		{"sub too long", signJSON(t, testKey, with(func(m map[string]any) { m["sub"] = strings.Repeat("a", 256) })), "n-1", "sub"},
		{"sub not ASCII", signJSON(t, testKey, with(func(m map[string]any) { m["sub"] = "alicé" })), "n-1", "sub"},
		{"sub with control character", signJSON(t, testKey, with(func(m map[string]any) { m["sub"] = "a\nb" })), "n-1", "sub"},
		{"exp as quoted number", signJSON(t, testKey, strings.Replace(with(func(m map[string]any) { m["exp"] = "EXP" }), `"EXP"`, `"9999999999"`, 1)), "n-1", "exp is not a JSON number"},
		{"iat as quoted number", signJSON(t, testKey, strings.Replace(with(func(m map[string]any) { m["iat"] = "IAT" }), `"IAT"`, `"1900000000"`, 1)), "n-1", "iat is not a JSON number"},
		{"nbf as quoted number", signJSON(t, testKey, with(func(m map[string]any) { m["nbf"] = "1900000000" })), "n-1", "nbf is not a JSON number"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, c, err := verifyIDToken(context.Background(), verifier, "spa", tc.token, tc.nonce, now)
			if tc.wantErr == "" {
				if err != nil {
					t.Fatalf("verifyIDToken() = %v, want success", err)
				}
				if c.Subject != "alice" || c.SID != "s1" || c.Name != "Alice" || c.Email != "a@x.test" {
					t.Errorf("verifyIDToken() claims = %+v", c)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("verifyIDToken() = %v, want an error containing %q", err, tc.wantErr)
			}
		})
	}
}

func TestSameParty(t *testing.T) {
	base := idClaims{Issuer: testIssuer, Subject: "alice", Audience: []string{"spa"}, AZP: ""}
	tests := []struct {
		name string
		edit func(c *idClaims)
		ok   bool
	}{
		{"same", func(*idClaims) {}, true},
		{"iss changed", func(c *idClaims) { c.Issuer = "https://other.test" }, false},
		{"sub changed", func(c *idClaims) { c.Subject = "bob" }, false},
		{"aud changed", func(c *idClaims) { c.Audience = []string{"spa", "api"} }, false},
		{"azp appeared", func(c *idClaims) { c.AZP = "spa" }, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			fresh := base
			tc.edit(&fresh)
			if err := sameParty(&base, &fresh); (err == nil) != tc.ok {
				t.Errorf("sameParty() = %v, want ok=%v", err, tc.ok)
			}
		})
	}
}

func TestJWTExpiry(t *testing.T) {
	tok := signJSON(t, testKey, `{"exp":1900000000}`)
	if got := jwtExpiry(tok); !got.Equal(time.Unix(1_900_000_000, 0)) {
		t.Errorf("jwtExpiry() = %v, want 1900000000", got)
	}
	for _, opaque := range []string{"ory_at_abc", "a.b", "", "x.!!!.y"} {
		if got := jwtExpiry(opaque); !got.IsZero() {
			t.Errorf("jwtExpiry(%q) = %v, want zero", opaque, got)
		}
	}
}
