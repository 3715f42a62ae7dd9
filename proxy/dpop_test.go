package proxy

import (
	"bufio"
	"crypto"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"

	"github.com/tokenhandler/tokenhandler/dpop"
	"github.com/tokenhandler/tokenhandler/josekey"
	"github.com/tokenhandler/tokenhandler/session"
	"github.com/tokenhandler/tokenhandler/web"
)

type proofClaims struct {
	JTI, HTM, HTU, ATH, Nonce string
	IAT                       int64
}

// checkProof verifies a proof as an RFC 9449 resource server does for method and htu,
// bound to token and the key of thumbprint thumb, and returns its claims.
func checkProof(t *testing.T, h http.Header, method, htu, token, thumb string) proofClaims {
	t.Helper()
	if got := h.Values("Authorization"); len(got) != 1 || got[0] != "DPoP "+token {
		t.Fatalf("Authorization = %q, want [DPoP %s]", got, token)
	}
	proofs := h.Values("Dpop")
	if len(proofs) != 1 {
		t.Fatalf("DPoP headers = %q, want one proof", proofs)
	}
	jws, err := jose.ParseSigned(proofs[0], []jose.SignatureAlgorithm{jose.ES256, jose.EdDSA})
	if err != nil {
		t.Fatalf("proof: %v", err)
	}
	ph := jws.Signatures[0].Protected
	tp, _ := ph.JSONWebKey.Thumbprint(crypto.SHA256)
	payload, err := jws.Verify(ph.JSONWebKey.Key)
	if err != nil || ph.ExtraHeaders["typ"] != "dpop+jwt" || base64.RawURLEncoding.EncodeToString(tp) != thumb {
		t.Fatalf("proof header or signature: typ %v, err %v", ph.ExtraHeaders["typ"], err)
	}
	var c proofClaims
	_ = json.Unmarshal(payload, &c)
	sum := sha256.Sum256([]byte(token))
	if c.HTM != method || c.HTU != htu || c.ATH != base64.RawURLEncoding.EncodeToString(sum[:]) || c.JTI == "" {
		t.Fatalf("proof claims = %+v, want htm %s htu %s and the token's ath", c, method, htu)
	}
	return c
}

func newProofer(t testing.TB) *dpop.Proofer {
	k, _ := josekey.Generate(josekey.EdDSA)
	p, err := dpop.NewProofer(k, nil)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func bound(s *session.Session) { s.TokenType = "DPoP" }

func TestDPoPForwarding(t *testing.T) {
	p := newProofer(t)
	e := newEnv(t, nil, func(e *env, o *Options) {
		o.DPoP = p
		o.Routes = []Route{{Path: "/api/", Upstream: e.up.url(t, "/base/"), StripPrefix: true}}
	})
	e.setSession(bound)
	const n = 1000
	jtis := map[string]bool{}
	for i := range n {
		r := e.req(http.MethodGet, "/api/v1/orders%207/x?q=1", nil)
		r.Header.Set("Authorization", "Bearer forged")
		r.Header.Set("DPoP", "forged-proof")
		if w := e.do(r); w.Code != http.StatusOK {
			t.Fatalf("request %d = %d %s", i, w.Code, w.Body)
		}
	}
	reqs := e.up.requests()
	if len(reqs) != n {
		t.Fatalf("upstream saw %d requests, want %d", len(reqs), n)
	}
	for _, s := range reqs {
		if s.RequestURI != "/base/v1/orders%207/x?q=1" {
			t.Fatalf("upstream request-target %q", s.RequestURI)
		}
		c := checkProof(t, s.Header, "GET", e.up.URL+"/base/v1/orders%207/x", "at-1", p.Thumbprint())
		if jtis[c.JTI] {
			t.Fatalf("jti %s repeated", c.JTI)
		}
		jtis[c.JTI] = true
	}
	t.Logf("%d proofs, %d distinct jti", n, len(jtis))
}

func TestDPoPBoundSessionWithoutKey(t *testing.T) {
	e := newEnv(t, nil)
	e.setSession(bound)
	wantError(t, e.do(e.req(http.MethodGet, "/api/x", nil)), http.StatusUnauthorized, web.CodeUnauthenticated)
	if got := len(e.up.requests()); got != 0 {
		t.Fatalf("upstream saw %d requests: a bound token was forwarded without a proof", got)
	}
}

// nonceUpstream asks for nonce "n-<round>" whenever a proof lacks the current one.
type nonceUpstream struct {
	mu     sync.Mutex
	nonce  string
	always bool // ask every time, whatever the proof says
}

func (u *nonceUpstream) serve(w http.ResponseWriter, r *http.Request) {
	u.mu.Lock()
	defer u.mu.Unlock()
	jws, _ := jose.ParseSigned(r.Header.Get("DPoP"), []jose.SignatureAlgorithm{jose.EdDSA})
	var c proofClaims
	if jws != nil {
		_ = json.Unmarshal(jws.UnsafePayloadWithoutVerification(), &c)
	}
	if u.always || c.Nonce != u.nonce {
		w.Header().Set("DPoP-Nonce", u.nonce)
		w.Header().Set("WWW-Authenticate", `DPoP error="use_dpop_nonce", error_description="Resource server requires nonce in DPoP proof"`)
		w.WriteHeader(http.StatusUnauthorized)
		return
	}
	io.WriteString(w, "ok")
}

func TestDPoPUpstreamNonce(t *testing.T) {
	p := newProofer(t)
	nu := &nonceUpstream{nonce: "n-1"}
	e := newEnv(t, nu.serve, func(e *env, o *Options) { o.DPoP = p })
	e.setSession(bound)
	body := strings.Repeat("b", 64<<10)

	// The first request meets the nonce: exactly one retry, with it, and the same body.
	w := e.do(e.req(http.MethodPost, "/api/x", strings.NewReader(body)))
	reqs := e.up.requests()
	if w.Code != http.StatusOK || len(reqs) != 2 {
		t.Fatalf("first request = %d after %d upstream requests, want 200 after 2", w.Code, len(reqs))
	}
	c := checkProof(t, reqs[1].Header, "POST", e.up.URL+"/api/x", "at-1", p.Thumbprint())
	if c.Nonce != "n-1" || string(reqs[1].Body) != body || string(reqs[0].Body) != body {
		t.Fatalf("retry nonce %q, bodies equal %v", c.Nonce, string(reqs[1].Body) == body)
	}
	// The nonce is kept for the origin: the next request carries it at once.
	if w := e.do(e.req(http.MethodGet, "/api/y", nil)); w.Code != http.StatusOK || len(e.up.requests()) != 3 {
		t.Fatalf("second request = %d after %d upstream requests, want 200 after 3", w.Code, len(e.up.requests()))
	}
	// An upstream that asks again after the retry gets no third try, and no refresh.
	nu.mu.Lock()
	nu.always = true
	nu.mu.Unlock()
	if w := e.do(e.req(http.MethodGet, "/api/z", nil)); w.Code != http.StatusUnauthorized || len(e.up.requests()) != 5 {
		t.Fatalf("always-asking upstream = %d after %d upstream requests, want 401 after 5", w.Code, len(e.up.requests()))
	}
	if got := e.tokens.count(); got != 0 {
		t.Errorf("refreshes = %d, want 0: use_dpop_nonce is not cured by a new token", got)
	}
	// A streamed body is not replayable: the challenge is passed on, the nonce kept.
	nu.mu.Lock()
	nu.always, nu.nonce = false, "n-2"
	nu.mu.Unlock()
	r := e.req(http.MethodPost, "/api/s", io.MultiReader(strings.NewReader("x")))
	r.ContentLength = -1
	if w := e.do(r); w.Code != http.StatusUnauthorized || len(e.up.requests()) != 6 {
		t.Fatalf("streamed request = %d after %d upstream requests, want 401 after 6", w.Code, len(e.up.requests()))
	}
	if w := e.do(e.req(http.MethodGet, "/api/y", nil)); w.Code != http.StatusOK || len(e.up.requests()) != 7 {
		t.Fatalf("request after the new nonce = %d after %d upstream requests, want 200 after 7", w.Code, len(e.up.requests()))
	}
}

func TestDPoPRefreshKeepsBinding(t *testing.T) {
	p := newProofer(t)
	e := newEnv(t, nil, func(e *env, o *Options) { o.DPoP = p })
	e.setSession(func(s *session.Session) {
		bound(s)
		s.AccessExpiry = e.clock.Now().Add(10 * time.Second) // within the skew: proactive refresh
	})
	if w := e.do(e.req(http.MethodGet, "/api/x", nil)); w.Code != http.StatusOK {
		t.Fatalf("request = %d", w.Code)
	}
	if e.tokens.count() != 1 {
		t.Fatalf("refreshes = %d, want 1", e.tokens.count())
	}
	checkProof(t, e.up.requests()[0].Header, "GET", e.up.URL+"/api/x", "at-1-new", p.Thumbprint())
}

func TestDPoPWebSocket(t *testing.T) {
	p := newProofer(t)
	e := newEnv(t, wsUpstream, func(e *env, o *Options) { o.DPoP = p })
	e.setSession(bound)
	c, err := net.Dial("tcp", strings.TrimPrefix(e.server().URL, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	io.WriteString(c, wsHandshake(publicOrigin))
	res, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil || res.StatusCode != http.StatusSwitchingProtocols {
		t.Fatalf("handshake = %v, %v", res, err)
	}
	checkProof(t, e.up.requests()[0].Header, "GET", e.up.URL+"/api/ws", "at-1", p.Thumbprint())
}
