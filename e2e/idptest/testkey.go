package idptest

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"

	"github.com/tokenhandler/tokenhandler/internal/testbench"
)

// TestKey is an ECDSA P-256 key (ES256) that a test signs with as a client would:
// client assertions (private_key_jwt, RFC 7523) and DPoP proofs (RFC 9449). It is made
// here, independently of tokenhandler's own code, so tests can check the product
// against it.
type TestKey struct {
	Private *ecdsa.PrivateKey
	KeyID   string // the kid of its JWK and of its client assertions
}

// NewTestKey returns a fresh key with a random kid.
func NewTestKey(t testing.TB) *TestKey {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatalf("idptest: test key: %v", err)
	}
	return &TestKey{Private: k, KeyID: testbench.RandomHex(8)}
}

// PEM is the private key as a PKCS #8 PEM block ("PRIVATE KEY"), for a key file the
// product reads (oidc.client_key_file, dpop.key_file).
func (k *TestKey) PEM() []byte {
	der, err := x509.MarshalPKCS8PrivateKey(k.Private)
	if err != nil {
		panic("idptest: PKCS #8 of a P-256 key: " + err.Error()) // cannot fail
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})
}

// PublicJWK is the key's public JWK (use sig, alg ES256, kid KeyID).
func (k *TestKey) PublicJWK() jose.JSONWebKey {
	return jose.JSONWebKey{Key: &k.Private.PublicKey, KeyID: k.KeyID, Algorithm: string(jose.ES256), Use: "sig"}
}

// PublicJWKS is a key set of the public key alone: Options.ClientJWKS.
func (k *TestKey) PublicJWKS() *jose.JSONWebKeySet {
	return &jose.JSONWebKeySet{Keys: []jose.JSONWebKey{k.PublicJWK()}}
}

// Thumbprint is the RFC 7638 SHA-256 thumbprint of the public key, base64url without
// padding: the jkt of the tokens bound to it (Introspection.Cnf.JKT).
func (k *TestKey) Thumbprint() string {
	jwk := jose.JSONWebKey{Key: &k.Private.PublicKey}
	tp, err := jwk.Thumbprint(crypto.SHA256)
	if err != nil {
		panic("idptest: thumbprint of a P-256 key: " + err.Error()) // cannot fail
	}
	return base64.RawURLEncoding.EncodeToString(tp)
}

// ClientAssertion is a private_key_jwt client assertion for clientID (iss and sub),
// audience aud (the issuer, or the endpoint's URL), a random jti, valid for a minute.
// Send it as client_assertion with client_assertion_type ClientAssertionType.
func (k *TestKey) ClientAssertion(t testing.TB, clientID, aud string) string {
	t.Helper()
	now := time.Now().Unix()
	return k.sign(t, "JWT", false, map[string]any{
		"iss": clientID, "sub": clientID, "aud": aud, "jti": testbench.RandomHex(16),
		"iat": now, "exp": now + 60,
	})
}

// ClientAssertionType is the client_assertion_type of a JWT client assertion.
const ClientAssertionType = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"

// DPoPProof is a DPoP proof (typ dpop+jwt, the public JWK in its header) for a request
// of method to htu (scheme, host and path; no query or fragment), with a random jti
// and iat now; nonce is the server's nonce ("" for none); accessToken, when not
// empty, is hashed into ath (a proof for a resource request).
func (k *TestKey) DPoPProof(t testing.TB, method, htu, nonce, accessToken string) string {
	t.Helper()
	claims := map[string]any{"htm": method, "htu": htu, "iat": time.Now().Unix(), "jti": testbench.RandomHex(16)}
	if nonce != "" {
		claims["nonce"] = nonce
	}
	if accessToken != "" {
		sum := sha256.Sum256([]byte(accessToken))
		claims["ath"] = base64.RawURLEncoding.EncodeToString(sum[:])
	}
	return k.sign(t, "dpop+jwt", true, claims)
}

func (k *TestKey) sign(t testing.TB, typ string, embedJWK bool, claims map[string]any) string {
	t.Helper()
	opts := (&jose.SignerOptions{EmbedJWK: embedJWK}).WithType(jose.ContentType(typ))
	if !embedJWK {
		opts = opts.WithHeader("kid", k.KeyID)
	}
	signer, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.ES256, Key: k.Private}, opts)
	if err != nil {
		t.Fatalf("idptest: signer: %v", err)
	}
	payload, err := json.Marshal(claims)
	if err != nil {
		t.Fatalf("idptest: claims: %v", err)
	}
	jws, err := signer.Sign(payload)
	if err != nil {
		t.Fatalf("idptest: sign: %v", err)
	}
	out, err := jws.CompactSerialize()
	if err != nil {
		t.Fatalf("idptest: sign: %v", err)
	}
	return out
}
