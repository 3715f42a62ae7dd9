package josekey

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"strings"
	"testing"

	"github.com/go-jose/go-jose/v4"
)

// TestSignVerifiesWithGoJose proves each algorithm's signature, thumbprint and
// registration JWK against an independent implementation.
func TestSignVerifiesWithGoJose(t *testing.T) {
	for _, alg := range []string{ES256, EdDSA, RS256, PS256} {
		t.Run(alg, func(t *testing.T) {
			k, err := Generate(alg)
			if err != nil {
				t.Fatal(err)
			}
			tok, err := k.JWT(map[string]any{"typ": "JWT", "kid": k.Thumbprint()}, map[string]any{"sub": "x"})
			if err != nil {
				t.Fatal(err)
			}
			var reg jose.JSONWebKey
			if err := reg.UnmarshalJSON(k.RegistrationJWK()); err != nil {
				t.Fatalf("RegistrationJWK does not parse: %v", err)
			}
			if reg.KeyID != k.Thumbprint() || (reg.Algorithm != alg) != (alg == RS256 || alg == PS256) || reg.Use != "sig" || !reg.IsPublic() {
				t.Errorf("RegistrationJWK = kid %q alg %q use %q public %v", reg.KeyID, reg.Algorithm, reg.Use, reg.IsPublic())
			}
			tp, _ := reg.Thumbprint(crypto.SHA256)
			if got := base64.RawURLEncoding.EncodeToString(tp); got != k.Thumbprint() {
				t.Errorf("Thumbprint() = %s, go-jose says %s", k.Thumbprint(), got)
			}
			jws, err := jose.ParseSigned(tok, []jose.SignatureAlgorithm{jose.SignatureAlgorithm(alg)})
			if err != nil {
				t.Fatal(err)
			}
			payload, err := jws.Verify(reg.Key)
			if err != nil {
				t.Fatalf("Verify = %v", err)
			}
			if string(payload) != `{"sub":"x"}` {
				t.Errorf("payload = %s", payload)
			}
			// A different key of the same kind must not verify it.
			other, _ := Generate(alg)
			var oj jose.JSONWebKey
			_ = oj.UnmarshalJSON(other.PublicJWKJSON())
			if _, err := jws.Verify(oj.Key); err == nil {
				t.Error("a signature verified with another key")
			}
		})
	}
}

func TestParsePEMForms(t *testing.T) {
	ec, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	sec1, _ := x509.MarshalECPrivateKey(ec)
	p384, _ := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	p384der, _ := x509.MarshalPKCS8PrivateKey(p384)
	ed, _ := Generate(EdDSA)
	edPEM, _ := ed.PEM()
	tests := []struct {
		name    string
		pem     string
		wantAlg string // "" means an error
	}{
		{"pkcs8 ed25519", string(edPEM), EdDSA},
		{"sec1 p256 after a certificate block", "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n" + string(pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: sec1})), ES256},
		{"p384 refused", string(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: p384der})), ""},
		{"garbage block", "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n", ""},
		{"no pem", "hello", ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			k, err := Parse([]byte(tc.pem))
			if tc.wantAlg == "" {
				if err == nil {
					t.Fatalf("Parse = %s key, want an error", k.Alg())
				}
				return
			}
			if err != nil || k.Alg() != tc.wantAlg {
				t.Fatalf("Parse = %v, %v; want %s", k, err, tc.wantAlg)
			}
		})
	}
	// The PEM round trip keeps the key.
	back, err := Parse(edPEM)
	if err != nil || back.Thumbprint() != ed.Thumbprint() {
		t.Errorf("Parse(PEM()) thumbprint = %v, %v; want %s", back, err, ed.Thumbprint())
	}
}

func TestWithAlg(t *testing.T) {
	rsa, _ := Generate(RS256)
	if k, err := rsa.WithAlg(PS256); err != nil || k.Alg() != PS256 || rsa.Alg() != RS256 {
		t.Errorf("WithAlg(PS256) = %v, %v", k, err)
	}
	ec, _ := Generate(ES256)
	if _, err := ec.WithAlg(PS256); err == nil {
		t.Error("an EC key accepted PS256")
	}
	var m map[string]string
	_ = json.Unmarshal(ec.PublicJWKJSON(), &m)
	if m["d"] != "" || strings.Contains(string(ec.RegistrationJWK()), `"d"`) {
		t.Error("a public JWK carries the private part")
	}
}
