package oauthagent

import (
	"context"
	"crypto"
	"encoding/base64"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"
	"golang.org/x/oauth2"

	"github.com/tokenhandler/tokenhandler/dpop"
	"github.com/tokenhandler/tokenhandler/josekey"
	"github.com/tokenhandler/tokenhandler/session"
)

// proofSeen is what the token endpoint saw of one derivation's DPoP proof.
type proofSeen struct {
	present      bool
	thumb, nonce string
	htm, htu     string
	ath          string
}

func readProof(t *testing.T, r *http.Request) proofSeen {
	t.Helper()
	raw := r.Header.Get("DPoP")
	if raw == "" {
		return proofSeen{}
	}
	jws, err := jose.ParseSigned(raw, []jose.SignatureAlgorithm{jose.ES256, jose.EdDSA})
	if err != nil {
		t.Errorf("proof does not parse: %v", err)
		return proofSeen{present: true}
	}
	h := jws.Signatures[0].Protected
	payload, err := jws.Verify(h.JSONWebKey.Key)
	if err != nil {
		t.Errorf("proof signature: %v", err)
	}
	tp, _ := h.JSONWebKey.Thumbprint(crypto.SHA256)
	var c struct{ HTM, HTU, Nonce, ATH string }
	_ = json.Unmarshal(payload, &c)
	return proofSeen{present: true, thumb: base64.RawURLEncoding.EncodeToString(tp), nonce: c.Nonce, htm: c.HTM, htu: c.HTU, ath: c.ATH}
}

// newDeriveAgent is an agent for the fake provider at issuer with opts' DPoP settings.
func newDeriveAgent(t *testing.T, issuer string, sessionDPoP, routeDPoP *dpop.Proofer) *Agent {
	t.Helper()
	kp, _ := session.GenerateKeyPair()
	opts := session.CookieOptions{Keys: []session.KeyPair{kp}, Lifetime: time.Hour}
	store, _ := session.NewCookieStore(opts)
	logins, _ := session.NewLoginJar(session.LoginOptions{Keys: opts.Keys})
	a, err := New(store, logins, session.NewCoordinator(session.CoordinatorOptions{}), Options{
		Issuer: issuer, ClientID: "spa", ClientSecret: "s3cret", RedirectURL: "https://app.test/auth/callback",
		DPoP: sessionDPoP, RouteDPoP: routeDPoP,
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := a.Discover(context.Background()); err != nil {
		t.Fatal(err)
	}
	return a
}

// A derivation's token call follows its policy's token.dpop, not oidc.dpop: bound, it
// carries a proof of the DPoP key (no ath: it presents no access token), answers a
// use_dpop_nonce with one retry, and the token the provider bound comes back as "DPoP";
// unbound, it carries no proof even when the session's tokens are bound.
func TestDerivationDPoP(t *testing.T) {
	key, _ := josekey.Generate(josekey.EdDSA)
	proofer, _ := dpop.NewProofer(key, nil)
	now := time.Now()
	newSession := func() *session.Session {
		return &session.Session{ID: session.NewID(), Subject: "alice", AccessToken: "at-" + random128(), AccessIssued: now,
			AccessExpiry: now.Add(time.Hour), RefreshToken: "rt-1", Expiry: now.Add(time.Hour)}
	}
	exchange := func(dpopOn bool) *session.TokenPolicy {
		return &session.TokenPolicy{Via: "exchange", Audience: []string{"orders"}, Format: "as_issued", DPoP: dpopOn}
	}
	tests := []struct {
		name                 string
		sessionDPoP, routeDP *dpop.Proofer
		policy               *session.TokenPolicy
		nonce                string // the provider asks for this nonce first; "": none
		answerType           string
		wantProof            bool
		wantHeader           string
		wantCalls            int
	}{
		{name: "bound, oidc.dpop off (route key)", routeDP: proofer, policy: exchange(true), answerType: "DPoP",
			wantProof: true, wantHeader: "DPoP ex-1", wantCalls: 1},
		{name: "bound, oidc.dpop on, nonce asked", sessionDPoP: proofer, routeDP: proofer, policy: exchange(true), nonce: "n-1", answerType: "DPoP",
			wantProof: true, wantHeader: "DPoP ex-2", wantCalls: 2},
		{name: "bound asked, bearer answered: used as Bearer", routeDP: proofer, policy: exchange(true), answerType: "Bearer",
			wantProof: true, wantHeader: "Bearer ex-1", wantCalls: 1},
		{name: "unbound with oidc.dpop on: no proof", sessionDPoP: proofer, routeDP: proofer, policy: exchange(false), nonce: "n-1", answerType: "Bearer",
			wantProof: false, wantHeader: "Bearer ex-1", wantCalls: 1},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			f := newFakeProvider(t)
			var mu sync.Mutex
			var seen []proofSeen
			f.answer = func(w http.ResponseWriter, r *http.Request) {
				p := readProof(t, r)
				mu.Lock()
				seen = append(seen, p)
				n := len(seen)
				mu.Unlock()
				if p.present && tc.nonce != "" && p.nonce != tc.nonce {
					w.Header().Set("DPoP-Nonce", tc.nonce)
					tokenJSON(w, http.StatusBadRequest, `{"error":"use_dpop_nonce"}`)
					return
				}
				tokenJSON(w, 200, `{"access_token":"ex-`+string(rune('0'+n))+`","token_type":"`+tc.answerType+`","expires_in":300,"issued_token_type":"urn:ietf:params:oauth:token-type:access_token"}`)
			}
			a := newDeriveAgent(t, f.srv.URL, tc.sessionDPoP, tc.routeDP)
			header, _, err := a.Refresher().RouteToken(context.Background(), newSession(), tc.policy, 30*time.Second, nil)
			if err != nil || header != tc.wantHeader {
				t.Fatalf("RouteToken = %q, %v; want %q", header, err, tc.wantHeader)
			}
			if len(seen) != tc.wantCalls {
				t.Fatalf("token calls = %d, want %d", len(seen), tc.wantCalls)
			}
			for i, p := range seen {
				if p.present != tc.wantProof {
					t.Errorf("call %d carries a proof: %v, want %v", i, p.present, tc.wantProof)
				}
				if p.present && (p.thumb != proofer.Thumbprint() || p.htm != http.MethodPost || p.htu != f.srv.URL+"/token" || p.ath != "") {
					t.Errorf("call %d proof = %+v, want the DPoP key's, POST to the token endpoint, no ath", i, p)
				}
			}
			if tc.nonce != "" && tc.wantProof && seen[len(seen)-1].nonce != tc.nonce {
				t.Errorf("the retry's nonce = %q, want %q", seen[len(seen)-1].nonce, tc.nonce)
			}
		})
	}
}

// A provider that keeps asking for a new nonce refuses our proof, not the grant: the
// derivation fails as an outage (502 idp_unavailable) and does not end the session, via
// refresh too. A bound policy without any DPoP key is our configuration's fault.
func TestDerivationDPoPRefused(t *testing.T) {
	key, _ := josekey.Generate(josekey.ES256)
	proofer, _ := dpop.NewProofer(key, nil)
	f := newFakeProvider(t)
	var calls int
	f.answer = func(w http.ResponseWriter, r *http.Request) {
		calls++
		w.Header().Set("DPoP-Nonce", "n-"+strings.Repeat("x", calls))
		tokenJSON(w, http.StatusBadRequest, `{"error":"use_dpop_nonce"}`)
	}
	a := newDeriveAgent(t, f.srv.URL, nil, proofer)
	now := time.Now()
	s := &session.Session{ID: session.NewID(), Subject: "alice", AccessToken: "at-x", AccessIssued: now,
		AccessExpiry: now.Add(time.Hour), RefreshToken: "rt-1", Expiry: now.Add(time.Hour)}
	p := &session.TokenPolicy{Via: "exchange", Audience: []string{"orders"}, Format: "as_issued", DPoP: true}
	if _, _, err := a.Refresher().RouteToken(context.Background(), s, p, 30*time.Second, nil); !errors.Is(err, session.ErrIdPUnavailable) || calls != 2 {
		t.Errorf("RouteToken against a nonce that never settles = %v after %d calls, want ErrIdPUnavailable after 2", err, calls)
	}
	err := classifyDeriveError(context.Background(), a, "refresh", &oauth2.RetrieveError{Response: &http.Response{StatusCode: http.StatusBadRequest, Status: "400 Bad Request"}, ErrorCode: "invalid_dpop_proof"})
	if !errors.Is(err, session.ErrIdPUnavailable) || errors.Is(err, session.ErrRefreshDenied) {
		t.Errorf("invalid_dpop_proof on a refresh derivation = %v, want ErrIdPUnavailable (the session stays)", err)
	}

	none := newDeriveAgent(t, f.srv.URL, nil, nil)
	calls = 0
	if _, _, err := none.Refresher().RouteToken(context.Background(), s, p, 30*time.Second, nil); !errors.Is(err, session.ErrTokenUnavailable) || calls != 0 {
		t.Errorf("a bound policy without a DPoP key = %v after %d calls, want ErrTokenUnavailable and no call", err, calls)
	}
}
