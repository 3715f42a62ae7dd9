package oauthagent

import (
	"bytes"
	"context"
	"crypto/subtle"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/coreos/go-oidc/v3/oidc"
)

// iatLeeway is how far in the future an ID token's iat may lie (clock skew between the
// provider and us); anything later is refused.
const iatLeeway = 30 * time.Second

// idClaims are the ID-token claims tokenhandler reads, beyond what go-oidc checks.
type idClaims struct {
	Issuer   string
	Subject  string
	Audience []string
	AZP      string
	SID      string
	Name     string
	Email    string
	Nonce    string
	IssuedAt time.Time
}

// rawIDClaims mirrors the JSON with the time claims kept raw, so that their JSON type can
// be checked: go-oidc also accepts quoted numbers such as "exp":"9999999999".
type rawIDClaims struct {
	Issuer string          `json:"iss"`
	Sub    string          `json:"sub"`
	Aud    json.RawMessage `json:"aud"`
	AZP    *string         `json:"azp"`
	SID    string          `json:"sid"`
	Name   string          `json:"name"`
	Email  string          `json:"email"`
	Nonce  string          `json:"nonce"`
	Exp    json.RawMessage `json:"exp"`
	Iat    json.RawMessage `json:"iat"`
	Nbf    json.RawMessage `json:"nbf"`
}

// verifyIDToken checks raw with go-oidc (signature with the pinned algorithms, iss, aud,
// exp) and then what go-oidc leaves to its caller: nonce (when want is not empty), azp,
// iat, sub, and that exp/iat/nbf are JSON numbers.
func verifyIDToken(ctx context.Context, v *oidc.IDTokenVerifier, clientID, raw, nonce string, now time.Time) (*oidc.IDToken, *idClaims, error) {
	tok, err := v.Verify(ctx, raw)
	if err != nil {
		return nil, nil, fmt.Errorf("oauthagent: id token: %w", err)
	}
	var payload json.RawMessage
	if err := tok.Claims(&payload); err != nil {
		return nil, nil, fmt.Errorf("oauthagent: id token: claims: %w", err)
	}
	c, err := checkIDClaims(payload, clientID, nonce, now)
	if err != nil {
		return nil, nil, err
	}
	return tok, c, nil
}

// checkIDClaims applies the checks go-oidc does not to a verified token's payload.
func checkIDClaims(payload []byte, clientID, nonce string, now time.Time) (*idClaims, error) {
	var r rawIDClaims
	if err := json.Unmarshal(payload, &r); err != nil {
		return nil, fmt.Errorf("oauthagent: id token: claims: %w", err)
	}
	var errs []error
	for _, f := range []struct {
		name     string
		v        json.RawMessage
		required bool
	}{{"exp", r.Exp, true}, {"iat", r.Iat, true}, {"nbf", r.Nbf, false}} {
		switch {
		case len(f.v) == 0:
			if f.required {
				errs = append(errs, fmt.Errorf("%s is missing", f.name))
			}
		case !isJSONNumber(f.v):
			errs = append(errs, fmt.Errorf("%s is not a JSON number", f.name))
		}
	}
	var iat time.Time
	if isJSONNumber(r.Iat) {
		var secs float64
		_ = json.Unmarshal(r.Iat, &secs)
		iat = time.Unix(int64(secs), 0)
		if iat.After(now.Add(iatLeeway)) {
			errs = append(errs, errors.New("iat is in the future"))
		}
	}
	if !validSubject(r.Sub) {
		errs = append(errs, errors.New("sub must be 1 to 255 printable ASCII characters"))
	}
	aud, err := parseAudience(r.Aud)
	if err != nil {
		errs = append(errs, err)
	}
	switch {
	case r.AZP != nil && *r.AZP != clientID:
		errs = append(errs, errors.New("azp is not our client id"))
	case r.AZP == nil && len(aud) > 1:
		errs = append(errs, errors.New("azp is required with several audiences"))
	}
	if nonce != "" && subtle.ConstantTimeCompare([]byte(r.Nonce), []byte(nonce)) != 1 {
		errs = append(errs, errors.New("nonce does not match the login"))
	}
	if len(errs) > 0 {
		return nil, fmt.Errorf("oauthagent: id token: %w", errors.Join(errs...))
	}
	c := &idClaims{
		Issuer: r.Issuer, Subject: r.Sub, Audience: aud, SID: r.SID,
		Name: r.Name, Email: r.Email, Nonce: r.Nonce, IssuedAt: iat,
	}
	if r.AZP != nil {
		c.AZP = *r.AZP
	}
	return c, nil
}

// sameParty reports whether a refreshed ID token belongs to the same sign-in as the
// original: same iss, sub and aud, and azp unchanged (absent if it was absent).
func sameParty(old, fresh *idClaims) error {
	switch {
	case old.Issuer != fresh.Issuer:
		return errors.New("oauthagent: refreshed id token: iss changed")
	case old.Subject != fresh.Subject:
		return errors.New("oauthagent: refreshed id token: sub changed")
	case !slices.Equal(old.Audience, fresh.Audience):
		return errors.New("oauthagent: refreshed id token: aud changed")
	case old.AZP != fresh.AZP:
		return errors.New("oauthagent: refreshed id token: azp changed")
	}
	return nil
}

func isJSONNumber(v json.RawMessage) bool {
	v = bytes.TrimSpace(v)
	if len(v) == 0 {
		return false
	}
	var n json.Number
	d := json.NewDecoder(bytes.NewReader(v))
	d.UseNumber()
	if err := d.Decode(&n); err != nil {
		return false
	}
	return v[0] == '-' || (v[0] >= '0' && v[0] <= '9')
}

func validSubject(s string) bool {
	if s == "" || len(s) > 255 {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < 0x20 || s[i] > 0x7e {
			return false
		}
	}
	return true
}

func parseAudience(raw json.RawMessage) ([]string, error) {
	if len(raw) == 0 {
		return nil, errors.New("aud is missing")
	}
	var one string
	if err := json.Unmarshal(raw, &one); err == nil {
		return []string{one}, nil
	}
	var many []string
	if err := json.Unmarshal(raw, &many); err != nil {
		return nil, errors.New("aud is neither a string nor a list of strings")
	}
	return many, nil
}

// unverifiedClaims decodes a JWT's payload without checking anything. It is used only on
// tokens that were verified when they entered the session (the ID token for /claims and
// for comparing a refreshed ID token), and to read an access token's exp when the token
// response had no expires_in.
func unverifiedClaims(jwt string) (map[string]any, error) {
	b, err := jwtPayload(jwt)
	if err != nil {
		return nil, err
	}
	var m map[string]any
	d := json.NewDecoder(bytes.NewReader(b))
	d.UseNumber()
	if err := d.Decode(&m); err != nil {
		return nil, fmt.Errorf("oauthagent: jwt payload: %w", err)
	}
	return m, nil
}

// jwtPayload decodes a JWT's payload segment, unverified.
func jwtPayload(jwt string) ([]byte, error) {
	parts := strings.Split(jwt, ".")
	if len(parts) != 3 {
		return nil, errors.New("oauthagent: not a JWT")
	}
	b, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		return nil, fmt.Errorf("oauthagent: jwt payload: %w", err)
	}
	return b, nil
}

// jwtExpiry returns the exp of a JWT access token, or the zero time when the token is
// opaque or has none.
func jwtExpiry(token string) time.Time {
	m, err := unverifiedClaims(token)
	if err != nil {
		return time.Time{}
	}
	n, ok := m["exp"].(json.Number)
	if !ok {
		return time.Time{}
	}
	secs, err := n.Int64()
	if err != nil {
		return time.Time{}
	}
	return time.Unix(secs, 0)
}
