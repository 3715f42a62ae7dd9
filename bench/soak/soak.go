//go:build linux

package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/tokenhandler/tokenhandler/bench/internal/harness"
	"github.com/tokenhandler/tokenhandler/e2e/idptest"
	"github.com/tokenhandler/tokenhandler/session"
)

const (
	apiPath          = "/api/ping"
	progressInterval = 30 * time.Second
)

// result is what one soak counted.
type result struct {
	elapsed      time.Duration
	requests     int64
	answers      map[string]int64 // "status code" -> answers other than 200
	failures     map[string]int64 // transport errors, by text
	signOuts     []string         // "browser N at T"
	refreshCalls int64            // at the provider's front, during the soak
	tokenAnswers map[string]int64 // refresh answers by status, summed over the replicas' metrics
	refreshes    map[string]int64 // refreshes_total by outcome, summed over the replicas
	load         [2]string
}

// soak sets everything up, runs the tabs for o.duration and counts.
func soak(t *harness.TB, o *options) *result {
	res := &result{answers: map[string]int64{}, failures: map[string]int64{}, load: [2]string{harness.LoadAverage(), ""}}
	bin := harness.Prepare(t, idptest.KindHydra, o.bin)
	redisURL := harness.StartRedis(t)
	pubs, admins := make([]net.Listener, o.replicas), make([]net.Listener, o.replicas)
	for i := range pubs {
		pubs[i], admins[i] = harness.Listener(t), harness.Listener(t)
	}
	base := "http://" + pubs[0].Addr().String()
	idp := idptest.Start(t, idptest.KindHydra, idptest.Options{RedirectURL: base + "/auth/callback", AccessTokenTTL: o.tokenTTL})
	up := harness.Upstream(t)
	key, err := session.GenerateKeyPair()
	if err != nil {
		t.Fatalf("%v", err)
	}
	replicas := make([]*harness.Tokenhandler, o.replicas)
	for i := range replicas {
		// Every replica has the same public_url, as behind one load balancer: the
		// browsers' cookies are the same on every port of 127.0.0.1.
		replicas[i] = harness.StartTokenhandler(t, fmt.Sprintf("tokenhandler-%d", i), bin, pubs[i], admins[i], map[string]string{
			"TH_PUBLIC_URL":           base,
			"TH_OIDC_ISSUER":          idp.Issuer,
			"TH_OIDC_CLIENT_ID":       idp.ClientID,
			"TH_OIDC_CLIENT_SECRET":   idp.ClientSecret,
			"TH_COOKIES_KEYS":         key.Reveal(),
			"TH_ROUTES":               `[{"path":"/api/","upstream":"` + up.URL + `"}]`,
			"TH_SESSION_STORE":        o.store,
			"TH_REDIS_URL":            redisURL,
			"TH_SESSION_REFRESH_SKEW": o.skew.String(),
			"TH_LOG_LEVEL":            "warn",
		})
		replicas[i].URL = "http://" + pubs[i].Addr().String()
	}

	// The browsers sign in spread over one refresh interval, so that their refreshes
	// do not all fall together: Hydra with its in-memory store answers 500 ("Unable to
	// serialize access due to a concurrent update") to some refreshes of different
	// grants of one user made at the same moment, and that is the provider, not the
	// concurrency under test (the tabs of one browser, the replicas).
	browsers := make([]*http.Client, o.browsers)
	signInStart := time.Now()
	for i := range browsers {
		if o.stagger {
			t.Wait(time.Until(signInStart.Add(time.Duration(i) * (o.tokenTTL - o.skew) / time.Duration(o.browsers))))
		}
		browsers[i] = idptest.NewClient(t)
		resp := idp.SignIn(t, browsers[i], base+"/auth/login?return_to=/")
		resp.Body.Close()
		if got := resp.Request.URL.String(); got != base+"/" {
			t.Fatalf("browser %d: after sign-in at %s, want %s/", i, got, base)
		}
	}
	t.Logf("%d replicas, %d browsers signed in; %d tabs each for %v", o.replicas, o.browsers, o.tabs, o.duration)

	before, err := tokenCounts(t.Context(), replicas)
	if err != nil {
		t.Fatalf("%v", err)
	}
	refreshBefore := idp.RefreshCalls()
	ctx, cancel := context.WithTimeout(t.Context(), o.duration)
	defer cancel()
	c := &counter{answers: map[string]int64{}, failures: map[string]int64{}}
	var rr atomic.Uint64
	var wg sync.WaitGroup
	began := time.Now()
	for b, browser := range browsers {
		var out atomic.Bool // signed out: its tabs stop
		for range o.tabs {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for ctx.Err() == nil && !out.Load() {
					r := replicas[rr.Add(1)%uint64(len(replicas))]
					answer := call(ctx, browser, r.URL+apiPath)
					if ctx.Err() != nil {
						return
					}
					c.count(answer)
					if answer == "401 session_expired" && out.CompareAndSwap(false, true) {
						c.signOut(fmt.Sprintf("browser %d at %.1f s (replica %s)", b, time.Since(began).Seconds(), r.URL))
					}
					select {
					case <-ctx.Done():
					case <-time.After(o.think):
					}
				}
			}()
		}
	}
	go progress(ctx, t, c, idp, refreshBefore, began)
	wg.Wait()
	res.elapsed = time.Since(began)
	res.refreshCalls = idp.RefreshCalls() - refreshBefore
	after, err := tokenCounts(t.Context(), replicas)
	if err != nil {
		t.Fatalf("%v", err)
	}
	res.tokenAnswers, res.refreshes = diff(after.answers, before.answers), diff(after.outcomes, before.outcomes)
	res.requests, res.answers, res.failures, res.signOuts = c.requests.Load(), c.answers, c.failures, c.signOuts
	res.load[1] = harness.LoadAverage()
	return res
}

// call sends one proxied GET and returns "200", "STATUS CODE" (the JSON error code of
// tokenhandler's answer) or "error: ..." when no answer came.
func call(ctx context.Context, c *http.Client, u string) string {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return "error: " + err.Error()
	}
	req.Header.Set("X-CSRF", "1")
	resp, err := c.Do(req)
	if err != nil {
		return "error: " + err.Error()
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	if resp.StatusCode == http.StatusOK {
		return "200"
	}
	var e struct {
		Error string `json:"error"`
	}
	_ = json.Unmarshal(body, &e)
	return strings.TrimSpace(fmt.Sprintf("%d %s", resp.StatusCode, e.Error))
}

// counter tallies the tabs' answers.
type counter struct {
	requests atomic.Int64
	mu       sync.Mutex
	answers  map[string]int64
	failures map[string]int64
	signOuts []string
}

func (c *counter) count(answer string) {
	c.requests.Add(1)
	if answer == "200" {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if strings.HasPrefix(answer, "error: ") {
		c.failures[answer]++
	} else {
		c.answers[answer]++
	}
}

func (c *counter) signOut(s string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.signOuts = append(c.signOuts, s)
}

func (c *counter) snapshot() (nonOK int64, signOuts int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, n := range c.answers {
		nonOK += n
	}
	for _, n := range c.failures {
		nonOK += n
	}
	return nonOK, len(c.signOuts)
}

// progress prints a line now and then, so a long soak shows it is alive.
func progress(ctx context.Context, t *harness.TB, c *counter, idp *idptest.Provider, refreshBefore int64, began time.Time) {
	tick := time.NewTicker(progressInterval)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
			nonOK, outs := c.snapshot()
			t.Logf("%4.0f s: %d requests, %d not 200, %d sign-outs, %d refresh calls at the provider",
				time.Since(began).Seconds(), c.requests.Load(), nonOK, outs, idp.RefreshCalls()-refreshBefore)
		}
	}
}

// counts are the replicas' token-endpoint metrics, summed.
type counts struct {
	answers  map[string]int64 // refresh_token grant answers by status
	outcomes map[string]int64 // refreshes_total by outcome
}

func tokenCounts(ctx context.Context, replicas []*harness.Tokenhandler) (counts, error) {
	c := counts{answers: map[string]int64{}, outcomes: map[string]int64{}}
	for _, r := range replicas {
		m, err := harness.Metrics(ctx, r.Admin)
		if err != nil {
			return c, err
		}
		for series, v := range m {
			name, labels, _ := strings.Cut(series, "{")
			switch name {
			case "tokenhandler_token_endpoint_requests_total":
				if strings.Contains(labels, `grant_type="refresh_token"`) {
					c.answers[label(labels, "status")] += int64(v)
				}
			case "tokenhandler_refreshes_total":
				c.outcomes[label(labels, "outcome")] += int64(v)
			}
		}
	}
	return c, nil
}

// label returns the value of label name in `a="x",b="y"}`.
func label(labels, name string) string {
	_, rest, ok := strings.Cut(labels, name+`="`)
	if !ok {
		return ""
	}
	v, _, _ := strings.Cut(rest, `"`)
	return v
}

func diff(after, before map[string]int64) map[string]int64 {
	out := map[string]int64{}
	for k, v := range after {
		if d := v - before[k]; d != 0 {
			out[k] = d
		}
	}
	return out
}

// expectedRotations is how many refreshes the token lifetime asks for: each browser's
// token is refreshed once per (lifetime - skew), about.
func expectedRotations(o *options, elapsed time.Duration) float64 {
	return float64(o.browsers) * elapsed.Seconds() / (o.tokenTTL - o.skew).Seconds()
}

// replays are the refresh calls the provider refused with a 4xx: with strict rotation
// Hydra refuses a refresh token only when it was spent before (or its family was revoked
// by such a replay).
func (r *result) replays() int64 { return r.tokenStatus(4) }

// providerErrors are the refresh calls the provider failed with a 5xx (Hydra's "Unable
// to serialize access due to a concurrent update" under concurrent refreshes): no
// replay, the refresh token stays valid, but the requests waiting for that refresh fail.
func (r *result) providerErrors() int64 { return r.tokenStatus(5) }

// tokenStatus sums the refresh answers whose status is class xx.
func (r *result) tokenStatus(class int) int64 {
	var n int64
	for status, v := range r.tokenAnswers {
		if len(status) == 3 && int(status[0]-'0') == class {
			n += v
		}
	}
	return n
}

func (r *result) problems() []string {
	var p []string
	if len(r.signOuts) > 0 {
		p = append(p, fmt.Sprintf("%d sign-outs", len(r.signOuts)))
	}
	if n := r.replays(); n > 0 {
		p = append(p, fmt.Sprintf("%d refused refresh tokens (replays)", n))
	}
	if n := r.providerErrors(); n > 0 {
		p = append(p, fmt.Sprintf("%d refresh calls failed at the provider (5xx)", n))
	}
	var nonOK int64
	for _, n := range r.answers {
		nonOK += n
	}
	for _, n := range r.failures {
		nonOK += n
	}
	if nonOK > 0 {
		p = append(p, fmt.Sprintf("%d requests without a 200", nonOK))
	}
	if r.requests == 0 {
		p = append(p, "no requests")
	}
	return p
}

func (r *result) markdown(o *options) string {
	var b strings.Builder
	fmt.Fprintf(&b, "### Soak\n\n")
	fmt.Fprintf(&b, "- %d replicas (session.store %s) on one redis-server, Ory Hydra v2.3.0 with strict rotation (grace 0)\n", o.replicas, o.store)
	stagger := "signed in one after another"
	if o.stagger {
		stagger = fmt.Sprintf("signed in spread over %v", o.tokenTTL-o.skew)
	}
	fmt.Fprintf(&b, "- %d browsers (%s) x %d tabs, each tab: GET %s, next replica in turn, %v pause; access tokens %v, refresh_skew %v\n",
		o.browsers, stagger, o.tabs, apiPath, o.think, o.tokenTTL, o.skew)
	fmt.Fprintf(&b, "- ran %.0f s; load average (1, 5, 15 min) at start %s, at end %s\n\n", r.elapsed.Seconds(), r.load[0], r.load[1])
	exp := expectedRotations(o, r.elapsed)
	nonOK := int64(0)
	for _, n := range r.answers {
		nonOK += n
	}
	for _, n := range r.failures {
		nonOK += n
	}
	b.WriteString("| measure | value |\n|---|---:|\n")
	fmt.Fprintf(&b, "| requests | %d (%.0f/s) |\n", r.requests, float64(r.requests)/r.elapsed.Seconds())
	fmt.Fprintf(&b, "| answers other than 200 | %d |\n", nonOK)
	fmt.Fprintf(&b, "| sign-outs (401 session_expired) | %d |\n", len(r.signOuts))
	fmt.Fprintf(&b, "| refresh calls at the provider (its front) | %d |\n", r.refreshCalls)
	fmt.Fprintf(&b, "| rotations the token lifetime asks for (browsers x %.0f s / (%v - %v)) | %.0f |\n", r.elapsed.Seconds(), o.tokenTTL, o.skew, exp)
	fmt.Fprintf(&b, "| refresh calls / rotations asked for | %.2f |\n", float64(r.refreshCalls)/exp)
	fmt.Fprintf(&b, "| refresh tokens the provider refused, 4xx (replays) | %d |\n", r.replays())
	fmt.Fprintf(&b, "| refresh calls the provider failed, 5xx (no replay) | %d |\n", r.providerErrors())
	b.WriteString("\n")
	for _, line := range sorted(r.answers) {
		if len(r.answers) > 0 {
			fmt.Fprintf(&b, "- answer %s\n", line)
		}
	}
	for _, line := range sorted(r.failures) {
		if len(r.failures) > 0 {
			fmt.Fprintf(&b, "- no answer: %s\n", line)
		}
	}
	for _, s := range r.signOuts {
		fmt.Fprintf(&b, "- signed out: %s\n", s)
	}
	fmt.Fprintf(&b, "- refresh answers the replicas got from the provider, by status: %s\n", strings.Join(sorted(r.tokenAnswers), ", "))
	fmt.Fprintf(&b, "- refreshes_total by outcome, all replicas: %s\n", strings.Join(sorted(r.refreshes), ", "))
	return b.String()
}

func sorted(m map[string]int64) []string {
	var out []string
	for k, v := range m {
		out = append(out, fmt.Sprintf("%s: %d", k, v))
	}
	sort.Strings(out)
	if len(out) == 0 {
		out = []string{"none"}
	}
	return out
}
