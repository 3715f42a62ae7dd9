//go:build linux

package main

import (
	"crypto"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"strings"
	"time"
)

// jwtSigner signs RS256 JWTs with a test key, so the steady scenarios carry real
// tokens of an exact size without a provider in the loop.
type jwtSigner struct {
	key *rsa.PrivateKey
	iss string
}

func newJWTSigner(iss string) (*jwtSigner, error) {
	k, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		return nil, fmt.Errorf("bench: RSA key: %w", err)
	}
	return &jwtSigner{key: k, iss: iss}, nil
}

// token returns an RS256 JWT of size bytes (within 3: base64 comes in steps of 4 per 3
// bytes), valid until exp, padded with a claim of filler scopes as providers pad theirs
// with groups and roles.
func (s *jwtSigner) token(size int, sub string, exp time.Time) (string, error) {
	enc := base64.RawURLEncoding
	head := enc.EncodeToString([]byte(`{"alg":"RS256","typ":"JWT","kid":"bench-1"}`))
	claims := map[string]any{
		"iss":   s.iss,
		"sub":   sub,
		"aud":   []string{"bench-api"},
		"iat":   time.Now().Unix(),
		"exp":   exp.Unix(),
		"jti":   randomHex(16),
		"scope": "openid profile email offline_access",
	}
	const sigLen = 342 // base64url of a 256-byte RS256 signature
	for pad := 0; ; {
		if pad > 0 {
			claims["ext"] = strings.Repeat("x", pad)
		}
		body, err := json.Marshal(claims)
		if err != nil {
			return "", err
		}
		payload := enc.EncodeToString(body)
		n := len(head) + 1 + len(payload) + 1 + sigLen
		if n < size-2 {
			pad += max((size-n)*3/4, 1)
			continue
		}
		signing := head + "." + payload
		sum := sha256.Sum256([]byte(signing))
		sig, err := rsa.SignPKCS1v15(rand.Reader, s.key, crypto.SHA256, sum[:])
		if err != nil {
			return "", fmt.Errorf("bench: sign JWT: %w", err)
		}
		return signing + "." + enc.EncodeToString(sig), nil
	}
}

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return fmt.Sprintf("%x", b)
}
