package testbench

import (
	"crypto/rand"
	"crypto/rsa"
	"encoding/json"
	"fmt"

	jose "github.com/go-jose/go-jose/v4"
)

// Signer signs JWTs with one RSA key (RS256), as a provider does.
type Signer struct {
	Key   *rsa.PrivateKey
	KeyID string // the kid header; empty: none
}

// NewSigner returns a Signer with a fresh 2048-bit key.
func NewSigner(keyID string) (*Signer, error) {
	k, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		return nil, fmt.Errorf("testbench: RSA key: %w", err)
	}
	return &Signer{Key: k, KeyID: keyID}, nil
}

// Sign returns claims as a compact RS256 JWT (typ JWT). claims is JSON-encoded, unless
// it is a []byte or json.RawMessage, which is signed as it is.
func (s *Signer) Sign(claims any) (string, error) {
	return SignJWT(s.Key, jose.RS256, s.KeyID, claims)
}

// JWKS is the key set a provider publishes for s: its public key.
func (s *Signer) JWKS() jose.JSONWebKeySet {
	return jose.JSONWebKeySet{Keys: []jose.JSONWebKey{
		{Key: &s.Key.PublicKey, KeyID: s.KeyID, Algorithm: string(jose.RS256), Use: "sig"},
	}}
}

// SignJWT returns claims as a compact JWT (typ JWT) signed with key by alg: an RSA or
// ECDSA private key, or a []byte for HMAC, which hostile-token tests use. claims is
// JSON-encoded, unless it is a []byte or json.RawMessage, which is signed as it is.
func SignJWT(key any, alg jose.SignatureAlgorithm, keyID string, claims any) (string, error) {
	var payload []byte
	switch c := claims.(type) {
	case []byte:
		payload = c
	case json.RawMessage:
		payload = c
	default:
		b, err := json.Marshal(claims)
		if err != nil {
			return "", fmt.Errorf("testbench: sign JWT: %w", err)
		}
		payload = b
	}
	opts := (&jose.SignerOptions{}).WithType("JWT")
	if keyID != "" {
		opts = opts.WithHeader("kid", keyID)
	}
	signer, err := jose.NewSigner(jose.SigningKey{Algorithm: alg, Key: key}, opts)
	if err != nil {
		return "", fmt.Errorf("testbench: sign JWT: %w", err)
	}
	jws, err := signer.Sign(payload)
	if err != nil {
		return "", fmt.Errorf("testbench: sign JWT: %w", err)
	}
	out, err := jws.CompactSerialize()
	if err != nil {
		return "", fmt.Errorf("testbench: sign JWT: %w", err)
	}
	return out, nil
}
