package mint

import (
	"crypto"
	"encoding/base64"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"
)

func mustKey(t *testing.T, kind string) *Key {
	t.Helper()
	b, err := GenerateKey(kind)
	if err != nil {
		t.Fatal(err)
	}
	k, err := ParseKey(b)
	if err != nil {
		t.Fatalf("ParseKey(GenerateKey(%s)) = %v", kind, err)
	}
	return k
}

func TestMintAndRotation(t *testing.T) {
	now := time.Unix(1_800_000_000, 0)
	for _, kind := range []string{"ec", "ed25519"} {
		t.Run(kind, func(t *testing.T) {
			signing, old := mustKey(t, kind), mustKey(t, "ec")
			s, err := NewSigner([]*Key{signing, old}, Options{Issuer: "https://app.example.com", TTL: 5 * time.Minute, Now: func() time.Time { return now }})
			if err != nil {
				t.Fatal(err)
			}
			rec := httptest.NewRecorder()
			s.JWKSHandler().ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/.well-known/jwks.json", nil))
			var set jose.JSONWebKeySet
			if err := json.Unmarshal(rec.Body.Bytes(), &set); err != nil || len(set.Keys) != 2 {
				t.Fatalf("JWKS = %s, want both keys", rec.Body)
			}
			if rec.Header().Get("Cache-Control") != "public, max-age=300" {
				t.Errorf("Cache-Control = %q", rec.Header().Get("Cache-Control"))
			}
			for _, k := range set.Keys {
				if !k.IsPublic() {
					t.Errorf("JWKS publishes a private key")
				}
				tp, _ := k.Thumbprint(crypto.SHA256)
				if k.KeyID != base64.RawURLEncoding.EncodeToString(tp) {
					t.Errorf("kid %q is not the RFC 7638 thumbprint", k.KeyID)
				}
			}

			for _, tc := range []struct {
				name    string
				expiry  time.Time
				wantExp time.Time
			}{
				{"capped by ttl", now.Add(time.Hour), now.Add(5 * time.Minute)},
				{"never beyond the token's exp", now.Add(time.Minute), now.Add(time.Minute)},
				{"unknown exp", time.Time{}, now.Add(5 * time.Minute)},
			} {
				tok, exp, err := s.Mint(Claims{Subject: "alice", ClientID: "spa", Scope: "a b", Audience: []string{"https://api"}, Expiry: tc.expiry})
				if err != nil || !exp.Equal(tc.wantExp) {
					t.Fatalf("%s: Mint = %v, exp %v, want exp %v", tc.name, err, exp, tc.wantExp)
				}
				jws, err := jose.ParseSigned(tok, []jose.SignatureAlgorithm{jose.ES256, jose.EdDSA})
				if err != nil {
					t.Fatal(err)
				}
				if kid := jws.Signatures[0].Header.KeyID; kid != signing.KeyID() {
					t.Errorf("signed with kid %q, want the first key %q", kid, signing.KeyID())
				}
				payload, err := jws.Verify(set.Key(signing.KeyID())[0])
				if err != nil {
					t.Fatal(err)
				}
				var c map[string]any
				_ = json.Unmarshal(payload, &c)
				if c["iss"] != "https://app.example.com" || c["sub"] != "alice" || c["aud"] != "https://api" || c["client_id"] != "spa" ||
					c["scope"] != "a b" || c["iat"] != float64(now.Unix()) || c["exp"] != float64(tc.wantExp.Unix()) || c["jti"] == "" {
					t.Errorf("%s: claims = %v", tc.name, c)
				}
			}
			if _, _, err := s.Mint(Claims{Subject: "alice", Expiry: now.Add(-time.Second)}); err == nil {
				t.Errorf("Mint(expired token) = nil error, want a refusal")
			}
		})
	}
}

func TestParseKeyRefuses(t *testing.T) {
	for _, tc := range []struct{ name, pem string }{
		{"no pem", "hello"},
		{"public key", "-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n"},
		{"garbage", "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n"},
	} {
		if _, err := ParseKey([]byte(tc.pem)); err == nil {
			t.Errorf("ParseKey(%s) = nil error", tc.name)
		} else if strings.Contains(err.Error(), "AAAA") {
			t.Errorf("ParseKey(%s) error repeats the input", tc.name)
		}
	}
	if _, err := GenerateKey("rsa"); err == nil {
		t.Errorf("GenerateKey(rsa) = nil error")
	}
}
