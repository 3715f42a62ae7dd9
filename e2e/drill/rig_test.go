package drill

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tokenhandler/tokenhandler/e2e/idptest"
	"github.com/tokenhandler/tokenhandler/session"
)

// The drill's shape. Access tokens live accessTTL at Hydra and are refreshed refreshSkew
// before they expire, so each session rotates its refresh token about every 2 s: a
// replica's restart always falls between rotations of every session.
const (
	replicaCount   = 3
	browserCount   = 4
	tabsPerBrowser = 2 // concurrent callers sharing one cookie jar, as an SPA's parallel fetches
	accessTTL      = 3 * time.Second
	refreshSkew    = "1s"
	pace           = 40 * time.Millisecond // between one tab's calls
	rotateTimeout  = 60 * time.Second
)

// rounds is how many rolling restarts (and failovers) to run: TOKENHANDLER_DRILL_ROUNDS,
// 1 by default (CI), more for a longer drill on a workstation.
func rounds(t testing.TB) int {
	v := os.Getenv("TOKENHANDLER_DRILL_ROUNDS")
	if v == "" {
		return 1
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < 1 {
		t.Fatalf("TOKENHANDLER_DRILL_ROUNDS=%q: want a positive integer", v)
	}
	return n
}

// rig is one drill's world: the provider, the API, the replicas, the front and the
// signed-in browsers.
type rig struct {
	t        *testing.T
	idp      *idptest.Provider
	api      *httptest.Server
	replicas []*replica
	front    *front
	browsers []*browser
	stats    *stats
	// tokenLane is between the replicas and the provider's token endpoint.
	tokenLane *tokenLane
	// slowStarted receives when the API has a /api/slow call.
	slowStarted chan struct{}

	refreshBase int64 // the provider's refresh calls when the load started
	tokensBase  int   // access tokens seen at the API when the load started
	stopLoad    context.CancelFunc
	loadDone    sync.WaitGroup
}

// newRig starts the provider, the API, replicaCount replicas with session store store
// on redisURL, and the front, then signs browserCount browsers in.
func newRig(t *testing.T, store, redisURL string) *rig {
	t.Helper()
	bin := tokenhandlerBinary(t)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	base := "http://" + ln.Addr().String()
	idp := idptest.Start(t, idptest.KindHydra, idptest.Options{RedirectURL: base + "/auth/callback", AccessTokenTTL: accessTTL})
	key, err := session.GenerateKeyPair()
	if err != nil {
		t.Fatal(err)
	}
	r := &rig{t: t, idp: idp, stats: newStats()}
	r.slowStarted = make(chan struct{}, 1)
	r.api = httptest.NewServer(http.HandlerFunc(r.serveAPI))
	t.Cleanup(r.api.Close)
	r.tokenLane = newTokenLane(t, idp.Issuer)
	env := []string{
		"TH_PUBLIC_URL=" + base,
		"TH_OIDC_ISSUER=" + idp.Issuer,
		"TH_OIDC_CLIENT_ID=" + idp.ClientID,
		"TH_OIDC_CLIENT_SECRET=" + idp.ClientSecret,
		"TH_OIDC_BACKCHANNEL_BASE_URL=" + r.tokenLane.srv.URL,
		"TH_COOKIES_KEYS=" + key.Reveal(),
		"TH_ROUTES=" + `[{"path":"/api/","upstream":"` + r.api.URL + `","timeout":"10s"}]`,
		"TH_SESSION_STORE=" + store,
		"TH_REDIS_URL=" + redisURL,
		"TH_REDIS_KEY_PREFIX=drill-" + randomHex(4) + ":",
		"TH_SESSION_REFRESH_SKEW=" + refreshSkew,
	}
	for i := range replicaCount {
		r.replicas = append(r.replicas, newReplica(t, fmt.Sprintf("replica-%d", i), bin, env))
	}
	var wg sync.WaitGroup
	errs := make([]error, len(r.replicas))
	for i, rep := range r.replicas {
		wg.Go(func() { errs[i] = rep.startFirst(t.Context()) })
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			t.Fatalf("drill: %v", err)
		}
	}
	r.front = newFront(ln, r.replicas)
	t.Cleanup(r.front.close)
	r.waitFrontSees("every replica ready", func(b *backend) bool { return b.ready.Load() })
	for i := range browserCount {
		r.browsers = append(r.browsers, r.signIn(i))
	}
	return r
}

// serveAPI is the upstream: it answers 200 with a short hash of the access token it was
// given, so a browser can tell which token served each call without the drill ever
// holding one.
func (r *rig) serveAPI(w http.ResponseWriter, req *http.Request) {
	tok, ok := strings.CutPrefix(req.Header.Get("Authorization"), "Bearer ")
	if !ok || tok == "" {
		http.Error(w, "no bearer token", http.StatusUnauthorized)
		return
	}
	if req.URL.Path == "/api/slow" {
		// A call still in flight when its replica gets SIGTERM: the drill waits for
		// slowStarted, stops the replica, and the answer must still arrive.
		select {
		case r.slowStarted <- struct{}{}:
		default:
		}
		time.Sleep(slowCall) // the upstream's own processing time
	}
	for _, c := range req.Cookies() {
		if strings.Contains(c.Name, "th-") {
			http.Error(w, "tokenhandler cookie reached the upstream", http.StatusBadRequest)
			return
		}
	}
	sum := sha256.Sum256([]byte(tok))
	io.WriteString(w, hex.EncodeToString(sum[:8]))
}

// slowCall is how long the API takes to answer /api/slow.
const slowCall = 500 * time.Millisecond

// browser is one signed-in user agent: a cookie jar shared by its tabs, and the access
// tokens (hashes) its calls were served with.
type browser struct {
	id     int
	c      *http.Client
	mu     sync.Mutex
	tokens map[string]bool
}

func (b *browser) seen() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return len(b.tokens)
}

// signIn signs browser i in through the front (login and callback may well land on
// different replicas) and makes its first API call.
func (r *rig) signIn(i int) *browser {
	t := r.t
	t.Helper()
	b := &browser{id: i, c: idptest.NewClient(t), tokens: map[string]bool{}}
	resp := r.idp.SignIn(t, b.c, r.front.URL()+"/auth/login?return_to=/")
	drain(resp.Body)
	if !r.authenticated(b) {
		t.Fatalf("drill: browser %d is not signed in after the sign-in (ended at %s: %s)", i, resp.Request.URL.Redacted(), resp.Status)
	}
	if code, msg := r.call(b); code != http.StatusOK {
		t.Fatalf("drill: browser %d: first API call: %d %s", i, code, msg)
	}
	return b
}

// call makes one API call as b and records the token that served it. It returns the
// status and, for an error, tokenhandler's error code or the body.
func (r *rig) call(b *browser) (int, string) {
	req, err := http.NewRequestWithContext(r.t.Context(), http.MethodGet, r.front.URL()+"/api/drill", nil)
	if err != nil {
		return 0, err.Error()
	}
	req.Header.Set("X-CSRF", "1")
	resp, err := b.c.Do(req)
	if err != nil {
		return 0, err.Error()
	}
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		var e struct {
			Error string `json:"error"`
		}
		if json.Unmarshal(body, &e) == nil && e.Error != "" {
			return resp.StatusCode, e.Error
		}
		return resp.StatusCode, strings.TrimSpace(string(body))
	}
	b.mu.Lock()
	b.tokens[string(body)] = true
	b.mu.Unlock()
	return resp.StatusCode, ""
}

// authenticated asks /auth/session whether b is signed in.
func (r *rig) authenticated(b *browser) bool {
	r.t.Helper()
	resp, err := b.c.Get(r.front.URL() + "/auth/session")
	if err != nil {
		r.t.Fatalf("drill: GET /auth/session: %v", err)
	}
	defer resp.Body.Close()
	var s struct {
		Authenticated bool `json:"authenticated"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&s); err != nil || resp.StatusCode != http.StatusOK {
		r.t.Fatalf("drill: GET /auth/session: %s, %v", resp.Status, err)
	}
	return s.Authenticated
}

// startLoad starts every browser's tabs calling the API until stopLoad.
func (r *rig) startLoad() {
	r.refreshBase = r.idp.RefreshCalls()
	r.tokensBase = r.tokensSeen()
	ctx, cancel := context.WithCancel(r.t.Context())
	r.stopLoad = cancel
	// A drill that fails half-way stops its tabs before anything else is torn down.
	r.t.Cleanup(r.endLoad)
	for _, b := range r.browsers {
		for range tabsPerBrowser {
			r.loadDone.Go(func() {
				for ctx.Err() == nil {
					code, msg := r.call(b)
					if ctx.Err() != nil && code == 0 {
						return // the drill ended mid-call
					}
					r.stats.record(code, msg)
					select {
					case <-ctx.Done():
					case <-time.After(pace):
					}
				}
			})
		}
	}
}

// endLoad stops the tabs and waits for their last calls.
func (r *rig) endLoad() {
	r.stopLoad()
	r.loadDone.Wait()
}

func (r *rig) tokensSeen() int {
	n := 0
	for _, b := range r.browsers {
		n += b.seen()
	}
	return n
}

// rotateAll waits until every browser has been served with a new access token, that is
// until every session has gone through one more rotation of its refresh token.
func (r *rig) rotateAll(what string) {
	r.t.Helper()
	before := make([]int, len(r.browsers))
	for i, b := range r.browsers {
		before[i] = b.seen()
	}
	deadline := time.After(rotateTimeout)
	for i, b := range r.browsers {
		for b.seen() <= before[i] {
			select {
			case <-deadline:
				r.t.Fatalf("drill: %s: browser %d saw no new access token in %v (calls so far: %s)", what, i, rotateTimeout, r.stats)
			case <-time.After(20 * time.Millisecond):
			}
		}
	}
}

// waitFrontSees waits until cond holds for every backend of the front.
func (r *rig) waitFrontSees(what string, cond func(*backend) bool) {
	r.t.Helper()
	deadline := time.After(30 * time.Second)
	for _, b := range r.front.backends {
		for !cond(b) {
			select {
			case <-deadline:
				r.t.Fatalf("drill: the front did not see %s in 30 s", what)
			case <-time.After(10 * time.Millisecond):
			}
		}
	}
}

// finalChecks proves nothing was lost: each browser is still signed in, its newest
// refresh token still works at Hydra (which revokes a whole family on a replay, so a
// replay anywhere in the drill would make this fail), and every refresh call the
// provider saw during the load is accounted for by a new access token at the API,
// unless unaccounted allows some (refreshes whose result a Redis outage lost).
func (r *rig) finalChecks(strict bool) (refreshes int64, tokens int) {
	t := r.t
	t.Helper()
	refreshes = r.idp.RefreshCalls() - r.refreshBase
	tokens = r.tokensSeen() - r.tokensBase
	if strict && refreshes != int64(tokens) {
		t.Errorf("drill: the provider saw %d refresh calls during the load, the API %d new access tokens: "+
			"%d refresh calls are unaccounted for (a replayed or wasted refresh token)", refreshes, tokens, refreshes-int64(tokens))
	}
	for _, b := range r.browsers {
		if !r.authenticated(b) {
			t.Errorf("drill: browser %d is signed out at the end", b.id)
			continue
		}
		req, _ := http.NewRequestWithContext(t.Context(), http.MethodPost, r.front.URL()+"/auth/refresh", nil)
		req.Header.Set("X-CSRF", "1")
		resp, err := b.c.Do(req)
		if err != nil {
			t.Errorf("drill: browser %d: POST /auth/refresh: %v", b.id, err)
			continue
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusNoContent {
			t.Errorf("drill: browser %d: POST /auth/refresh = %s %s, want 204: its refresh-token family is gone (a replay?)", b.id, resp.Status, body)
			continue
		}
		if code, msg := r.call(b); code != http.StatusOK {
			t.Errorf("drill: browser %d: API call after the final refresh: %d %s", b.id, code, msg)
		}
	}
	return refreshes, tokens
}

// stats counts the outcomes of the browsers' calls.
type stats struct {
	ok atomic.Int64

	mu       sync.Mutex
	byStatus map[string]int // "503 session_store_unavailable" -> calls
	first    time.Time      // first and last non-200 answer
	last     time.Time
	samples  []string
	// failures before the current window
	windowCount int
}

func newStats() *stats { return &stats{byStatus: map[string]int{}} }

func (s *stats) record(code int, msg string) {
	if code == http.StatusOK {
		s.ok.Add(1)
		return
	}
	key := fmt.Sprintf("%d %s", code, msg)
	if code == 0 {
		key = "error"
	}
	now := time.Now()
	s.mu.Lock()
	defer s.mu.Unlock()
	s.byStatus[key]++
	if s.first.IsZero() {
		s.first = now
	}
	s.last = now
	if len(s.samples) < 10 {
		s.samples = append(s.samples, now.Format("15:04:05.000")+" "+key)
	}
}

// failures returns the non-200 answers, by kind.
func (s *stats) failures() map[string]int {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := map[string]int{}
	for k, v := range s.byStatus {
		out[k] = v
	}
	return out
}

func (s *stats) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	var parts []string
	for k, v := range s.byStatus {
		parts = append(parts, fmt.Sprintf("%d x %s", v, k))
	}
	slices.Sort(parts)
	return fmt.Sprintf("%d ok, failed: [%s]", s.ok.Load(), strings.Join(parts, ", "))
}

func randomHex(n int) string {
	b := make([]byte, n)
	rand.Read(b)
	return hex.EncodeToString(b)
}

// resetWindow forgets the first and last failure times, for a new failover.
func (s *stats) resetWindow() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.first, s.last = time.Time{}, time.Time{}
	s.windowCount = s.total()
}

// window returns the first and last failure since resetWindow and how many there were.
func (s *stats) window() (first, last time.Time, count int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.first, s.last, s.total() - s.windowCount
}

func (s *stats) total() int {
	n := 0
	for _, v := range s.byStatus {
		n += v
	}
	return n
}

// tokenLane is a reverse proxy to the provider for tokenhandler's back-channel calls
// (oidc.backchannel_base_url) that lets one token request through at a time.
//
// Hydra's in-memory SQLite store answers 500 "Unable to serialize access due to a
// concurrent update in another session" when two refreshes, even of different
// sessions, commit at the same moment (the first drills saw it); tokenhandler then
// rightly answers 502 idp_unavailable and keeps the session. A production Hydra on
// PostgreSQL retries such transactions. The drill is about tokenhandler, so it queues
// token requests here rather than count the provider's store conflicts as failures;
// serverErrors still counts any 5xx the provider gives, and the drill reports it.
type tokenLane struct {
	srv          *httptest.Server
	mu           sync.Mutex
	serverErrors atomic.Int64

	// hold, when set, receives the next refresh's answer before it goes back to the
	// replica, and the answer waits until the channel in it is closed.
	holdMu sync.Mutex
	hold   chan chan struct{}
}

// holdNextRefresh makes the next refresh answer wait, once the provider has given it,
// until release is called: the provider has rotated the token, the replica does not
// know it yet. It returns a channel that yields once such an answer is held.
func (l *tokenLane) holdNextRefresh() (held <-chan chan struct{}) {
	c := make(chan chan struct{}, 1)
	l.holdMu.Lock()
	l.hold = c
	l.holdMu.Unlock()
	return c
}

func newTokenLane(t testing.TB, issuer string) *tokenLane {
	target, err := url.Parse(issuer)
	if err != nil {
		t.Fatal(err)
	}
	l := &tokenLane{}
	rp := &httputil.ReverseProxy{
		Rewrite: func(pr *httputil.ProxyRequest) {
			pr.SetURL(&url.URL{Scheme: target.Scheme, Host: target.Host})
			pr.Out.Host = target.Host
		},
		ModifyResponse: func(resp *http.Response) error {
			if resp.StatusCode >= 500 {
				l.serverErrors.Add(1)
			}
			if resp.StatusCode == http.StatusOK && strings.HasSuffix(resp.Request.URL.Path, "/token") {
				l.holdMu.Lock()
				c := l.hold
				l.hold = nil
				l.holdMu.Unlock()
				if c != nil {
					release := make(chan struct{})
					c <- release
					<-release
				}
			}
			return nil
		},
	}
	l.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodPost && strings.HasSuffix(r.URL.Path, "/token") {
			l.mu.Lock()
			defer l.mu.Unlock()
		}
		rp.ServeHTTP(w, r)
	}))
	t.Cleanup(l.srv.Close)
	return l
}

// slowCallTo sends one /api/slow call as the first browser straight to rep and returns
// once the API has it (the replica has accepted it); the channel yields its outcome.
func (r *rig) slowCallTo(rep *replica) <-chan error {
	done := make(chan error, 1)
	go func() {
		req, err := http.NewRequestWithContext(r.t.Context(), http.MethodGet, "http://"+rep.addr+"/api/slow", nil)
		if err != nil {
			done <- err
			return
		}
		req.Header.Set("X-CSRF", "1")
		resp, err := r.browsers[0].c.Do(req)
		if err != nil {
			done <- err
			return
		}
		body, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			done <- fmt.Errorf("%s %s", resp.Status, body)
			return
		}
		b := r.browsers[0] // a refresh it made counts like any other
		b.mu.Lock()
		b.tokens[string(body)] = true
		b.mu.Unlock()
		done <- nil
	}()
	select {
	case <-r.slowStarted:
	case err := <-done:
		done <- err
	case <-time.After(30 * time.Second):
		r.t.Fatalf("drill: the slow call to %s never reached the API", rep.name)
	}
	return done
}
