package dpop

import (
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"net/url"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"

	"github.com/tokenhandler/tokenhandler/josekey"
)

type claims struct {
	JTI   string `json:"jti"`
	HTM   string `json:"htm"`
	HTU   string `json:"htu"`
	IAT   int64  `json:"iat"`
	ATH   string `json:"ath"`
	Nonce string `json:"nonce"`
}

// verify checks a proof as a server would (header and signature with go-jose) and
// returns its claims.
func verify(t *testing.T, p *Proofer, proof string) claims {
	t.Helper()
	jws, err := jose.ParseSigned(proof, []jose.SignatureAlgorithm{jose.ES256, jose.EdDSA})
	if err != nil {
		t.Fatalf("proof does not parse: %v", err)
	}
	h := jws.Signatures[0].Protected
	if h.ExtraHeaders["typ"] != "dpop+jwt" || h.JSONWebKey == nil || !h.JSONWebKey.IsPublic() {
		t.Fatalf("header typ %v jwk %v", h.ExtraHeaders["typ"], h.JSONWebKey)
	}
	payload, err := jws.Verify(h.JSONWebKey.Key)
	if err != nil {
		t.Fatalf("proof signature: %v", err)
	}
	var c claims
	if err := json.Unmarshal(payload, &c); err != nil {
		t.Fatalf("payload %s: %v", payload, err)
	}
	return c
}

func TestProof(t *testing.T) {
	now := time.Unix(1_700_000_000, 0)
	for _, alg := range []string{josekey.ES256, josekey.EdDSA} {
		t.Run(alg, func(t *testing.T) {
			k, _ := josekey.Generate(alg)
			p, err := NewProofer(k, func() time.Time { return now })
			if err != nil {
				t.Fatal(err)
			}
			proof, err := p.Proof("POST", "https://api.example/x\"y", "the-token", `n-1!`)
			if err != nil {
				t.Fatal(err)
			}
			c := verify(t, p, proof)
			sum := sha256.Sum256([]byte("the-token"))
			want := claims{JTI: c.JTI, HTM: "POST", HTU: "https://api.example/x\"y", IAT: now.Unix(),
				ATH: base64.RawURLEncoding.EncodeToString(sum[:]), Nonce: "n-1!"}
			if c != want || len(c.JTI) < 22 {
				t.Errorf("claims = %+v, want %+v", c, want)
			}
			// Without token and nonce: neither claim.
			c = verify(t, p, must(p.Proof("GET", "https://idp/token", "", "")))
			if c.ATH != "" || c.Nonce != "" {
				t.Errorf("claims without token and nonce = %+v", c)
			}
		})
	}
	rsa, _ := josekey.Generate(josekey.PS256)
	if _, err := NewProofer(rsa, nil); err == nil {
		t.Error("NewProofer accepted an RSA key")
	}
}

func must(s string, err error) string {
	if err != nil {
		panic(err)
	}
	return s
}

func TestJTIUnique(t *testing.T) {
	k, _ := josekey.Generate(josekey.EdDSA)
	p, _ := NewProofer(k, nil)
	seen := map[string]bool{}
	for range 3000 {
		c := verify(t, p, must(p.Proof("GET", "https://a/b", "t", "")))
		if seen[c.JTI] {
			t.Fatalf("jti %s repeated", c.JTI)
		}
		seen[c.JTI] = true
	}
}

func TestHTU(t *testing.T) {
	for in, want := range map[string]string{
		"https://api.example:8443/v1/a%2Fb?q=1#f": "https://api.example:8443/v1/a%2Fb",
		"http://h/":   "http://h/",
		"http://h/x?": "http://h/x",
	} {
		u, _ := url.Parse(in)
		if got := HTU(u); got != want {
			t.Errorf("HTU(%s) = %s, want %s", in, got, want)
		}
	}
}

func TestNonces(t *testing.T) {
	var n Nonces
	n.Set("https://a", "one")
	n.Set("https://a", "two")
	n.Set("https://b", "bad nonce") // space: refused
	n.Set("https://b", `q"uote`)
	if got := n.Get("https://a"); got != "two" {
		t.Errorf("Get(a) = %q, want the latest, two", got)
	}
	if got := n.Get("https://b"); got != "" {
		t.Errorf("Get(b) = %q, want none (invalid nonces are ignored)", got)
	}
}

func TestNonceChallenge(t *testing.T) {
	tests := []struct {
		name  string
		www   []string
		nonce string
		want  string
		ok    bool
	}{
		{"dpop challenge", []string{`DPoP error="use_dpop_nonce", error_description="fresh nonce"`}, "abc", "abc", true},
		{"token error form", []string{`DPoP algs="ES256 EdDSA", error=use_dpop_nonce`}, "abc", "abc", true},
		{"after a bearer challenge", []string{`Bearer realm="x", error="invalid_token", DPoP error="use_dpop_nonce"`}, "n", "n", true},
		{"second header value", []string{`Bearer`, `dpop error="use_dpop_nonce"`}, "n", "n", true},
		{"bearer only", []string{`Bearer error="use_dpop_nonce"`}, "n", "", false},
		{"other error", []string{`DPoP error="invalid_token"`}, "n", "", false},
		{"no nonce header", []string{`DPoP error="use_dpop_nonce"`}, "", "", false},
		{"bad nonce", []string{`DPoP error="use_dpop_nonce"`}, "a b", "", false},
		{"nothing", nil, "n", "", false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, ok := NonceChallenge(tc.www, tc.nonce)
			if got != tc.want || ok != tc.ok {
				t.Errorf("NonceChallenge(%q, %q) = %q, %v; want %q, %v", tc.www, tc.nonce, got, ok, tc.want, tc.ok)
			}
		})
	}
}

func FuzzChallenge(f *testing.F) {
	for _, s := range []string{`DPoP error="use_dpop_nonce"`, `Bearer realm="a\"b", DPoP error=x`, `DPoP abc==, error="`, `,,=""\`, ""} {
		f.Add(s, "nonce")
	}
	f.Fuzz(func(t *testing.T, www, nonce string) {
		got, ok := NonceChallenge([]string{www}, nonce)
		if ok && (got != nonce || !ValidNonce(got)) {
			t.Fatalf("NonceChallenge(%q, %q) = %q, true: not the valid nonce given", www, nonce, got)
		}
		_ = ChallengeError([]string{www, www}, "Bearer")
		var n Nonces
		n.Set("o", nonce)
		if g := n.Get("o"); g != "" && !ValidNonce(g) {
			t.Fatalf("kept an invalid nonce %q", g)
		}
	})
}

func BenchmarkProof(b *testing.B) {
	for _, alg := range []string{josekey.EdDSA, josekey.ES256} {
		b.Run(alg, func(b *testing.B) {
			k, _ := josekey.Generate(alg)
			p, _ := NewProofer(k, nil)
			token := string(make([]byte, 1200))
			b.ReportAllocs()
			for b.Loop() {
				if _, err := p.Proof("GET", "https://api.example.com/v1/orders/42", token, "nonce-value-123"); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
