package api

import (
	"crypto"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/go-jose/go-jose/v4"
)

// dpopAlgs are the proof algorithms the example API accepts: asymmetric only.
var dpopAlgs = []jose.SignatureAlgorithm{jose.ES256, jose.EdDSA, jose.PS256, jose.RS256}

// DPoPVerifier checks DPoP proofs as RFC 9449 section 4.3 lists, with the access-token
// binding of section 7.1: typ dpop+jwt, an asymmetric alg, a public jwk in the header
// and a signature made with it, htm and htu of this request, iat within the window, a jti
// never seen before (a replay cache), ath = the token's hash, and the jwk's RFC 7638
// thumbprint equal to the token's cnf.jkt. It is safe for concurrent use.
type DPoPVerifier struct {
	// Window is how far iat may be from now, either way; 0 means 60 s. A jti is
	// remembered for twice as long.
	Window time.Duration
	// Now nil means time.Now.
	Now func() time.Time

	mu   sync.Mutex
	seen map[string]time.Time // jti -> when it may be forgotten
}

// ErrProof is wrapped by every refusal of a proof.
var ErrProof = errors.New("invalid DPoP proof")

// maxSeen bounds the replay cache; past it, proofs are refused until entries expire (a
// replay cache that forgets early would let a replay through).
const maxSeen = 1 << 20

// Verify checks proof for a request of method to htu (scheme://host/path, no query),
// presenting accessToken whose cnf.jkt is jkt.
func (v *DPoPVerifier) Verify(proof, method, htu, accessToken, jkt string) error {
	fail := func(format string, args ...any) error {
		return fmt.Errorf("%w: %s", ErrProof, fmt.Sprintf(format, args...))
	}
	jws, err := jose.ParseSigned(proof, dpopAlgs)
	if err != nil {
		return fail("not a JWS with an accepted alg: %v", err)
	}
	if len(jws.Signatures) != 1 {
		return fail("want one signature")
	}
	h := jws.Signatures[0].Protected
	if typ, _ := h.ExtraHeaders["typ"].(string); typ != "dpop+jwt" {
		return fail("typ %q, want dpop+jwt", typ)
	}
	if h.JSONWebKey == nil || !h.JSONWebKey.IsPublic() || !h.JSONWebKey.Valid() {
		return fail("no public jwk in the header")
	}
	payload, err := jws.Verify(h.JSONWebKey.Key)
	if err != nil {
		return fail("signature does not verify with the header's jwk")
	}
	var c struct {
		JTI   string          `json:"jti"`
		HTM   string          `json:"htm"`
		HTU   string          `json:"htu"`
		IAT   json.Number     `json:"iat"`
		ATH   string          `json:"ath"`
		Nonce json.RawMessage `json:"nonce"`
	}
	if err := json.Unmarshal(payload, &c); err != nil {
		return fail("claims do not decode")
	}
	if c.JTI == "" || c.HTM == "" || c.HTU == "" || c.IAT == "" {
		return fail("jti, htm, htu and iat are required")
	}
	if c.HTM != method {
		return fail("htm %q, want %q", c.HTM, method)
	}
	if !sameHTU(c.HTU, htu) {
		return fail("htu %q, want %q", c.HTU, htu)
	}
	iat, err := c.IAT.Int64()
	if err != nil {
		return fail("iat is not an integer")
	}
	now, window := v.now(), v.window()
	if d := now.Sub(time.Unix(iat, 0)); d > window || d < -window {
		return fail("iat is %v away from now, outside ±%v", d.Round(time.Second), window)
	}
	sum := sha256.Sum256([]byte(accessToken))
	if subtle.ConstantTimeCompare([]byte(c.ATH), []byte(base64.RawURLEncoding.EncodeToString(sum[:]))) != 1 {
		return fail("ath is not the hash of the access token")
	}
	tp, err := h.JSONWebKey.Thumbprint(crypto.SHA256)
	if err != nil || jkt == "" || base64.RawURLEncoding.EncodeToString(tp) != jkt {
		return fail("the proof's key is not the one the token is bound to (cnf.jkt)")
	}
	// Last: a proof that fails another check does not use up its jti.
	if !v.claim(c.JTI, now.Add(2*window)) {
		return fail("jti was used before (a replayed proof)")
	}
	return nil
}

// claim records jti until forget; false if it was recorded already.
func (v *DPoPVerifier) claim(jti string, forget time.Time) bool {
	v.mu.Lock()
	defer v.mu.Unlock()
	now := v.now()
	if v.seen == nil {
		v.seen = make(map[string]time.Time)
	}
	if len(v.seen) >= maxSeen {
		for k, t := range v.seen {
			if now.After(t) {
				delete(v.seen, k)
			}
		}
		if len(v.seen) >= maxSeen {
			return false
		}
	}
	if t, ok := v.seen[jti]; ok && !now.After(t) {
		return false
	}
	v.seen[jti] = forget
	return true
}

func (v *DPoPVerifier) now() time.Time {
	if v.Now != nil {
		return v.Now()
	}
	return time.Now()
}

func (v *DPoPVerifier) window() time.Duration {
	if v.Window > 0 {
		return v.Window
	}
	return 60 * time.Second
}

// sameHTU compares two htu values as RFC 9449 asks: without query and fragment, scheme
// and host case-insensitively (RFC 3986 section 6.2.2.1), the path exactly.
func sameHTU(got, want string) bool {
	g, err1 := url.Parse(got)
	w, err2 := url.Parse(want)
	if err1 != nil || err2 != nil {
		return false
	}
	return strings.EqualFold(g.Scheme, w.Scheme) && strings.EqualFold(g.Host, w.Host) && g.EscapedPath() == w.EscapedPath()
}

// DPoPToken returns the token of an "Authorization: DPoP TOKEN" header value.
func DPoPToken(header string) (string, bool) {
	scheme, tok, ok := strings.Cut(header, " ")
	if !ok || !strings.EqualFold(scheme, "DPoP") {
		return "", false
	}
	tok = strings.TrimLeft(tok, " ")
	if tok == "" || strings.ContainsAny(tok, " \t\r\n") {
		return "", false
	}
	return tok, true
}
