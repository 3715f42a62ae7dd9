// Package dpop makes RFC 9449 DPoP proofs for tokenhandler: the proof JWT (typ dpop+jwt,
// the public jwk in its header, htm, htu, iat, a unique jti, ath for a bound access
// token, the server's nonce when it asked for one), the latest nonce per origin, and the
// parsing of what servers answer (WWW-Authenticate DPoP challenges, DPoP-Nonce).
//
// It does not decide when a proof is sent (the OAuth agent's provider transport and the
// proxy do) and it verifies nothing (the example API does).
package dpop

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/tokenhandler/tokenhandler/josekey"
)

// Header names and the token type of a DPoP-bound token.
const (
	Header      = "DPoP"
	NonceHeader = "DPoP-Nonce"
	TokenType   = "DPoP"
	// ErrUseNonce is the error code of a server that wants a (new) nonce.
	ErrUseNonce = "use_dpop_nonce"
)

// Proofer makes DPoP proofs with one key. It is safe for concurrent use.
type Proofer struct {
	key *josekey.Key
	// hdr is the base64url of the proof's header, the same for every proof: encoded once.
	hdr string
	now func() time.Time
}

// NewProofer returns a Proofer for key, which must sign ES256 or EdDSA. now nil means
// time.Now.
func NewProofer(key *josekey.Key, now func() time.Time) (*Proofer, error) {
	if key == nil {
		return nil, errors.New("dpop: a key is required")
	}
	if a := key.Alg(); a != josekey.ES256 && a != josekey.EdDSA {
		return nil, fmt.Errorf("dpop: the key signs %s; DPoP keys must be ES256 (P-256) or EdDSA (Ed25519)", a)
	}
	if now == nil {
		now = time.Now
	}
	h, err := json.Marshal(struct {
		Typ string            `json:"typ"`
		Alg string            `json:"alg"`
		JWK map[string]string `json:"jwk"`
	}{"dpop+jwt", key.Alg(), key.PublicJWK()})
	if err != nil {
		return nil, fmt.Errorf("dpop: header: %w", err)
	}
	return &Proofer{key: key, hdr: base64.RawURLEncoding.EncodeToString(h), now: now}, nil
}

// Thumbprint is the RFC 7638 thumbprint of the proof key: the cnf.jkt of bound tokens.
func (p *Proofer) Thumbprint() string { return p.key.Thumbprint() }

// Proof returns a fresh proof for a request of method to htu (see HTU: no query, no
// fragment). accessToken, when not empty, is bound by its hash (ath); nonce, when not
// empty, is the server's latest DPoP-Nonce.
func (p *Proofer) Proof(method, htu, accessToken, nonce string) (string, error) {
	var jti [16]byte
	_, _ = rand.Read(jti[:])
	enc := base64.RawURLEncoding

	// The payload is written by hand: encoding/json would cost more than the signature
	// on the proxy's path. Strings go through appendJSONString.
	pl := make([]byte, 0, 160+len(htu)+len(nonce))
	pl = append(pl, `{"jti":"`...)
	pl = enc.AppendEncode(pl, jti[:])
	pl = append(pl, `","htm":`...)
	pl = appendJSONString(pl, method)
	pl = append(pl, `,"htu":`...)
	pl = appendJSONString(pl, htu)
	pl = append(pl, `,"iat":`...)
	pl = strconv.AppendInt(pl, p.now().Unix(), 10)
	if accessToken != "" {
		sum := sha256.Sum256([]byte(accessToken))
		pl = append(pl, `,"ath":"`...)
		pl = enc.AppendEncode(pl, sum[:])
		pl = append(pl, '"')
	}
	if nonce != "" {
		pl = append(pl, `,"nonce":`...)
		pl = appendJSONString(pl, nonce)
	}
	pl = append(pl, '}')

	in := make([]byte, 0, len(p.hdr)+1+enc.EncodedLen(len(pl))+1+90)
	in = append(in, p.hdr...)
	in = append(in, '.')
	in = enc.AppendEncode(in, pl)
	sig, err := p.key.Sign(in)
	if err != nil {
		return "", fmt.Errorf("dpop: proof: %w", err)
	}
	in = append(in, '.')
	in = append(in, sig...)
	return string(in), nil
}

// appendJSONString appends s as a JSON string.
func appendJSONString(b []byte, s string) []byte {
	b = append(b, '"')
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == '"' || c == '\\':
			b = append(b, '\\', c)
		case c < 0x20:
			b = append(b, `\u00`...)
			b = append(b, "0123456789abcdef"[c>>4], "0123456789abcdef"[c&0xf])
		default:
			b = append(b, c) // UTF-8 passes as it is
		}
	}
	return append(b, '"')
}

// HTU is the htu of a request to u: scheme, host and path as sent, without query and
// fragment (RFC 9449 section 4.2).
func HTU(u *url.URL) string {
	c := url.URL{Scheme: u.Scheme, Host: u.Host, Path: u.Path, RawPath: u.RawPath}
	return c.String()
}

// Origin is the scheme://host[:port] nonces are kept under.
func Origin(u *url.URL) string { return strings.ToLower(u.Scheme) + "://" + strings.ToLower(u.Host) }

// Nonces keeps the latest DPoP-Nonce per origin. The zero value is ready; it is safe for
// concurrent use. It holds at most maxOrigins origins (configured upstreams and the
// provider are a handful; the bound only guards against a surprise).
type Nonces struct {
	mu sync.RWMutex
	m  map[string]string
}

const maxOrigins = 1024

// Get returns the latest nonce of origin, "" for none.
func (n *Nonces) Get(origin string) string {
	n.mu.RLock()
	defer n.mu.RUnlock()
	return n.m[origin]
}

// Set keeps nonce as origin's latest. An invalid nonce (see ValidNonce) is ignored.
func (n *Nonces) Set(origin, nonce string) {
	if !ValidNonce(nonce) {
		return
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.m == nil {
		n.m = make(map[string]string)
	}
	if _, ok := n.m[origin]; !ok && len(n.m) >= maxOrigins {
		return
	}
	n.m[origin] = nonce
}

// maxNonce bounds a nonce kept and put into proofs.
const maxNonce = 1024

// ValidNonce reports whether s is a DPoP-Nonce value: 1*NQCHAR (%x21 / %x23-5B /
// %x5D-7E), at most 1 KiB.
func ValidNonce(s string) bool {
	if s == "" || len(s) > maxNonce {
		return false
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x21 || c > 0x7e || c == '"' || c == '\\' {
			return false
		}
	}
	return true
}

// NonceChallenge reports the nonce a resource server asks for: its response carries a
// WWW-Authenticate DPoP challenge with error="use_dpop_nonce" and a valid DPoP-Nonce
// header. ok is false otherwise.
func NonceChallenge(wwwAuthenticate []string, dpopNonce string) (nonce string, ok bool) {
	if ChallengeError(wwwAuthenticate, "DPoP") != ErrUseNonce || !ValidNonce(dpopNonce) {
		return "", false
	}
	return dpopNonce, true
}

// ChallengeError returns the error parameter of the first challenge of scheme (compared
// ignoring case) in the WWW-Authenticate values vs (RFC 9110 section 11.6.1), "" when
// there is none. It is lenient: what it cannot parse is skipped, and it never panics.
func ChallengeError(vs []string, scheme string) string {
	for _, v := range vs {
		current := ""
		for i := 0; i < len(v); {
			for i < len(v) && (v[i] == ' ' || v[i] == '\t' || v[i] == ',') {
				i++
			}
			start := i
			for i < len(v) && isTokenChar(v[i]) {
				i++
			}
			tok := v[start:i]
			if tok == "" {
				i++ // a byte that starts nothing we know: skip it
				continue
			}
			j := i
			for j < len(v) && (v[j] == ' ' || v[j] == '\t') {
				j++
			}
			if j >= len(v) || v[j] != '=' {
				current = tok // a token not followed by "=" starts a new challenge
				continue
			}
			// token68 ("abc==") or auth-param: name = token / quoted-string
			i = j + 1
			for i < len(v) && v[i] == '=' {
				i++
			}
			for i < len(v) && (v[i] == ' ' || v[i] == '\t') {
				i++
			}
			var val string
			if i < len(v) && v[i] == '"' {
				var b strings.Builder
				for i++; i < len(v) && v[i] != '"'; i++ {
					if v[i] == '\\' && i+1 < len(v) {
						i++
					}
					b.WriteByte(v[i])
				}
				i++ // the closing quote
				val = b.String()
			} else {
				s := i
				for i < len(v) && isTokenChar(v[i]) {
					i++
				}
				val = v[s:i]
			}
			if strings.EqualFold(current, scheme) && strings.EqualFold(tok, "error") {
				return val
			}
		}
	}
	return ""
}

func isTokenChar(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || strings.IndexByte("!#$%&'*+-.^_`|~", c) >= 0
}
