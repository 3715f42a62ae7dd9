// Package mint signs the RFC 9068 JWT access tokens that tokenhandler makes for routes
// with token.format jwt and jwt_from mint, and publishes their public keys (a JWKS).
// It owns the signing key ring (token_signing.keys: EC P-256 for ES256, Ed25519 for
// EdDSA; the first key signs, all are published, kid = the RFC 7638 thumbprint) and the
// generation of new keys. It does not introspect tokens: the caller passes the claims.
package mint

import (
	"crypto"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/go-jose/go-jose/v4"

	"github.com/tokenhandler/tokenhandler/josekey"
)

// Key is one parsed signing key.
type Key struct {
	priv crypto.Signer
	alg  jose.SignatureAlgorithm
	kid  string
}

// KeyID returns the key's kid, its RFC 7638 SHA-256 thumbprint (base64url).
func (k *Key) KeyID() string { return k.kid }

// ParseKey parses a PEM private key (josekey.Parse, the one PEM key parser): EC P-256
// (ES256) or Ed25519 (EdDSA). Its errors never contain key material.
func ParseKey(pemBytes []byte) (*Key, error) {
	jk, err := josekey.Parse(pemBytes)
	if err != nil {
		return nil, fmt.Errorf("mint: %w", err)
	}
	k := &Key{priv: jk.Signer(), kid: jk.Thumbprint()}
	switch jk.Alg() {
	case josekey.ES256:
		k.alg = jose.ES256
	case josekey.EdDSA:
		k.alg = jose.EdDSA
	default:
		return nil, fmt.Errorf("mint: a %s key cannot sign minted tokens: use EC P-256 (ES256) or Ed25519 (EdDSA)", jk.Alg())
	}
	return k, nil
}

// GenerateKey returns a new PEM (PKCS #8) private key: kind "ec" (P-256, ES256) or
// "ed25519" (EdDSA).
func GenerateKey(kind string) ([]byte, error) {
	alg, ok := map[string]string{"ec": josekey.ES256, "ed25519": josekey.EdDSA}[kind]
	if !ok {
		return nil, fmt.Errorf("mint: key kind %q is not ec or ed25519", kind)
	}
	k, err := josekey.Generate(alg)
	if err != nil {
		return nil, fmt.Errorf("mint: generate: %w", err)
	}
	return k.PEM()
}

// Signer signs access tokens with the first key of its ring and publishes all of them.
type Signer struct {
	issuer string
	ttl    time.Duration
	now    func() time.Time
	signer jose.Signer
	jwks   []byte
}

// Options configure a Signer.
type Options struct {
	// Issuer is the iss of every token: tokenhandler's public_url. Required.
	Issuer string
	// TTL caps a token's life (token_signing.ttl). Zero means 5 minutes.
	TTL time.Duration
	// Now is the clock; nil means time.Now.
	Now func() time.Time
}

// NewSigner returns a Signer for keys (the first signs).
func NewSigner(keys []*Key, opts Options) (*Signer, error) {
	if len(keys) == 0 {
		return nil, errors.New("mint: no signing key")
	}
	if opts.Issuer == "" {
		return nil, errors.New("mint: an issuer is required")
	}
	s := &Signer{issuer: opts.Issuer, ttl: opts.TTL, now: opts.Now}
	if s.ttl <= 0 {
		s.ttl = 5 * time.Minute
	}
	if s.now == nil {
		s.now = time.Now
	}
	first := keys[0]
	sig, err := jose.NewSigner(jose.SigningKey{Algorithm: first.alg, Key: first.priv},
		(&jose.SignerOptions{}).WithType("at+jwt").WithHeader(jose.HeaderKey("kid"), first.kid))
	if err != nil {
		return nil, fmt.Errorf("mint: signer: %w", err)
	}
	s.signer = sig
	var set jose.JSONWebKeySet
	for _, k := range keys {
		set.Keys = append(set.Keys, jose.JSONWebKey{Key: k.priv.Public(), KeyID: k.kid, Algorithm: string(k.alg), Use: "sig"})
	}
	if s.jwks, err = json.Marshal(set); err != nil {
		return nil, fmt.Errorf("mint: jwks: %w", err)
	}
	return s, nil
}

// Claims are what the minted token says of the token it stands for (from the
// introspection) and of its audience.
type Claims struct {
	Subject  string
	ClientID string
	Scope    string
	Audience []string
	// Expiry is the underlying token's exp; the minted token never outlives it. Zero:
	// unknown, and the token lives TTL.
	Expiry time.Time
}

// Mint signs an RFC 9068 access token: typ at+jwt, iss, sub, client_id, scope, aud, iat,
// jti, exp = min(c.Expiry, now + TTL). It returns the token and its expiry.
func (s *Signer) Mint(c Claims) (string, time.Time, error) {
	now := s.now()
	exp := now.Add(s.ttl)
	if !c.Expiry.IsZero() && c.Expiry.Before(exp) {
		exp = c.Expiry
	}
	if !exp.After(now) {
		return "", time.Time{}, errors.New("mint: the underlying token has expired")
	}
	jti := make([]byte, 16)
	_, _ = rand.Read(jti)
	payload := map[string]any{
		"iss":       s.issuer,
		"sub":       c.Subject,
		"client_id": c.ClientID,
		"iat":       now.Unix(),
		"exp":       exp.Unix(),
		"jti":       base64.RawURLEncoding.EncodeToString(jti),
	}
	if c.Scope != "" {
		payload["scope"] = c.Scope
	}
	if len(c.Audience) == 1 {
		payload["aud"] = c.Audience[0]
	} else if len(c.Audience) > 1 {
		payload["aud"] = c.Audience
	}
	b, err := json.Marshal(payload)
	if err != nil {
		return "", time.Time{}, fmt.Errorf("mint: %w", err)
	}
	jws, err := s.signer.Sign(b)
	if err != nil {
		return "", time.Time{}, fmt.Errorf("mint: sign: %w", err)
	}
	tok, err := jws.CompactSerialize()
	if err != nil {
		return "", time.Time{}, fmt.Errorf("mint: %w", err)
	}
	return tok, time.Unix(exp.Unix(), 0), nil
}

// JWKSHandler serves the public key set with Cache-Control: public, max-age=300.
func (s *Signer) JWKSHandler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			w.Header().Set("Allow", "GET, HEAD")
			http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
			return
		}
		w.Header().Set("Content-Type", "application/jwk-set+json")
		w.Header().Set("Cache-Control", "public, max-age=300")
		_, _ = w.Write(s.jwks)
	})
}
