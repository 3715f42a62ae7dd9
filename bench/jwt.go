//go:build linux

package main

import (
	"strings"
	"time"

	"github.com/tokenhandler/tokenhandler/internal/testbench"
)

// jwtSigner signs RS256 JWTs with a test key, so the steady scenarios carry real
// tokens of an exact size without a provider in the loop.
type jwtSigner struct {
	s   *testbench.Signer
	iss string
}

func newJWTSigner(iss string) (*jwtSigner, error) {
	s, err := testbench.NewSigner("bench-1")
	if err != nil {
		return nil, err
	}
	return &jwtSigner{s: s, iss: iss}, nil
}

// token returns an RS256 JWT of size bytes (within 3: base64 comes in steps of 4 per 3
// bytes), valid until exp, padded with a claim of filler scopes as providers pad theirs
// with groups and roles.
func (s *jwtSigner) token(size int, sub string, exp time.Time) (string, error) {
	claims := map[string]any{
		"iss":   s.iss,
		"sub":   sub,
		"aud":   []string{"bench-api"},
		"iat":   time.Now().Unix(),
		"exp":   exp.Unix(),
		"jti":   testbench.RandomHex(16),
		"scope": "openid profile email offline_access",
	}
	for pad := 0; ; {
		if pad > 0 {
			claims["ext"] = strings.Repeat("x", pad)
		}
		tok, err := s.s.Sign(claims)
		if err != nil {
			return "", err
		}
		if n := len(tok); n < size-2 {
			pad += max((size-n)*3/4, 1)
			continue
		}
		return tok, nil
	}
}
