//go:build linux

package main

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/tokenhandler/tokenhandler/session"

	"github.com/tokenhandler/tokenhandler/internal/testbench"
)

// stormResult is one refresh storm: many concurrent requests from sessions whose access
// tokens all expired, against the real provider.
type stormResult struct {
	Setup        string
	Sessions     int
	Requests     int
	TokenTTL     time.Duration
	RefreshCalls int64 // grant_type=refresh_token calls at the provider during the storm
	TokenCalls   int64 // every token-endpoint call during the storm
	Failures     int   // requests not answered 200
	Statuses     map[int]int
	P50, P99     time.Duration
	Max          time.Duration
	Wall         time.Duration // first request sent to last answer
	// ProviderRefresh is the median time of a refresh call at the provider (its front
	// proxy) when it is the only one: stormAlone sessions, one request each, one after
	// the other, before the storm. SingleRefresh is the median time of those requests
	// through tokenhandler, the refresh included.
	ProviderRefresh time.Duration
	SingleRefresh   time.Duration
	// BurstP99 is the p99 of the same burst sent again right after the storm with the
	// refreshed cookies: the same load without a refresh (BurstCalls token calls, 0
	// expected), which is what the storm's p99 is made of on this machine.
	BurstP99   time.Duration
	BurstCalls int64
	Err        string
}

// stormAlone is how many extra sessions are signed in to time a refresh alone.
const stormAlone = 5

// runStorm signs sessions in through Dex (access tokens valid for ttl), waits until every
// access token has expired, then sends requests requests at once, spread evenly over
// the sessions, and counts the provider's token-endpoint calls. Every step is bounded.
func runStorm(ctx context.Context, o *options, env *environment, setup, redisURL string) stormResult {
	res := stormResult{Setup: setup, Sessions: o.stormSessions, Requests: o.stormRequests, TokenTTL: o.stormTTL, Statuses: map[int]int{}}
	fail := func(err error) stormResult {
		res.Err = err.Error()
		return res
	}
	ctx, cancel := context.WithTimeout(ctx, 3*time.Minute)
	defer cancel()

	port, err := testbench.FreePort()
	if err != nil {
		return fail(err)
	}
	callback := fmt.Sprintf("http://127.0.0.1:%d/auth/callback", port)
	d, err := startDex(ctx, env.ps, env.dexBin, env.tmp, o.stormTTL, []string{callback})
	if err != nil {
		return fail(err)
	}
	defer d.stop()
	keys, err := session.GenerateKeyPair()
	if err != nil {
		return fail(err)
	}
	th, err := startTokenhandler(env.ps, env.thBin, env.tmp, thConfig{
		name: setup + "-storm", issuer: d.Issuer, secret: d.ClientSecret, keys: keys,
		upstream: env.upstream, redisURL: redisURL, port: port,
	})
	if err != nil {
		return fail(err)
	}
	defer th.proc.Stop(stopGrace)
	if _, err := th.ready(ctx, 30*time.Second); err != nil {
		return fail(err)
	}

	// Sign in, four browsers at a time: the storm's sessions, then stormAlone more.
	cookies := make([]string, o.stormSessions+stormAlone)
	browsers := make([]*http.Client, len(cookies))
	var mu sync.Mutex
	var firstErr error
	var wg sync.WaitGroup
	next := make(chan int)
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range next {
				c := newBrowser()
				browsers[i] = c
				_, err := signIn(ctx, c, th.URL+"/auth/login?return_to=%2F", i)
				h := cookieHeader(c, th.URL+"/api/items")
				// Cookie mode sets the access cookie (…-at), Redis mode the session cookie.
				if err == nil && !strings.Contains(h, "th-at=") && !strings.Contains(h, "th-session=") {
					err = fmt.Errorf("bench: storm: no session cookie after sign-in\n%s", th.proc.Tail(30))
				}
				mu.Lock()
				if err != nil && firstErr == nil {
					firstErr = err
				}
				cookies[i] = h
				mu.Unlock()
			}
		}()
	}
	for i := range len(cookies) {
		next <- i
	}
	close(next)
	wg.Wait()
	if firstErr != nil {
		return fail(firstErr)
	}
	// Wait until the last session's access token has expired: every session then needs a
	// refresh, and they all need it at once.
	select {
	case <-time.After(o.stormTTL + time.Second):
	case <-ctx.Done():
		return fail(ctx.Err())
	}

	tr := &http.Transport{Proxy: nil, MaxIdleConnsPerHost: o.stormRequests, MaxIdleConns: o.stormRequests}
	defer tr.CloseIdleConnections()
	client := &http.Client{Transport: tr, Timeout: 60 * time.Second}

	// A refresh alone: one request of each extra session, one after the other; the
	// provider's time for the refresh call it causes, and the request's own.
	var provider, single []time.Duration
	for i := o.stormSessions; i < len(cookies); i++ {
		n := len(d.refreshLatencies())
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, th.URL+"/api/items", nil)
		req.Header.Set("Cookie", cookies[i])
		req.Header.Set("X-CSRF", "1")
		t0 := time.Now()
		r, err := client.Do(req)
		if err != nil {
			return fail(fmt.Errorf("bench: storm: a refresh alone: %w", err))
		}
		_, _ = io.Copy(io.Discard, r.Body)
		r.Body.Close()
		lat := time.Since(t0)
		calls := d.refreshLatencies()
		if r.StatusCode != http.StatusOK || len(calls) != n+1 {
			return fail(fmt.Errorf("bench: storm: a refresh alone: status %d, %d refresh calls", r.StatusCode, len(calls)-n))
		}
		provider = append(provider, calls[n])
		single = append(single, lat)
	}
	slices.Sort(provider)
	slices.Sort(single)
	res.ProviderRefresh, res.SingleRefresh = provider[len(provider)/2], single[len(single)/2]
	refresh0, token0 := d.refreshCalls.Load(), d.tokenCalls.Load()
	apiURL, _ := url.Parse(th.URL + "/api/items")
	seen := make([]bool, o.stormSessions) // nil once the storm is over
	burst := func(cookieOf func(i int) string) ([]time.Duration, []int, time.Duration) {
		lat := make([]time.Duration, o.stormRequests)
		status := make([]int, o.stormRequests)
		start := make(chan struct{})
		var sent sync.WaitGroup
		for i := range o.stormRequests {
			sent.Add(1)
			go func() {
				defer sent.Done()
				req, _ := http.NewRequestWithContext(ctx, http.MethodGet, apiURL.String(), nil)
				req.Header.Set("Cookie", cookieOf(i%o.stormSessions))
				req.Header.Set("X-CSRF", "1")
				<-start
				t0 := time.Now()
				r, err := client.Do(req)
				if err == nil {
					_, _ = io.Copy(io.Discard, r.Body)
					r.Body.Close()
					status[i] = r.StatusCode
					// The session's refreshed cookies, for the burst after the storm.
					if cs := r.Cookies(); len(cs) > 0 && seen != nil {
						mu.Lock()
						if !seen[i%o.stormSessions] {
							seen[i%o.stormSessions] = true
							browsers[i%o.stormSessions].Jar.SetCookies(apiURL, cs)
						}
						mu.Unlock()
					}
				}
				lat[i] = time.Since(t0)
			}()
		}
		t0 := time.Now()
		close(start)
		sent.Wait()
		return lat, status, time.Since(t0)
	}
	lat, status, wall := burst(func(i int) string { return cookies[i] })
	res.Wall = wall
	res.RefreshCalls = d.refreshCalls.Load() - refresh0
	res.TokenCalls = d.tokenCalls.Load() - token0
	for _, s := range status {
		res.Statuses[s]++ // 0: no answer (connection error or timeout)
		if s != http.StatusOK {
			res.Failures++
		}
	}
	slices.Sort(lat)
	res.P50 = lat[len(lat)/2]
	res.P99 = lat[min(len(lat)-1, len(lat)*99/100)]
	res.Max = lat[len(lat)-1]

	// The same burst again with the refreshed cookies: no refresh is due.
	if seen != nil && !slices.Contains(seen, false) {
		again := make([]string, o.stormSessions)
		for i := range again {
			again[i] = cookieHeader(browsers[i], apiURL.String())
		}
		seen = nil
		token1 := d.tokenCalls.Load()
		lat2, _, _ := burst(func(i int) string { return again[i] })
		res.BurstCalls = d.tokenCalls.Load() - token1
		slices.Sort(lat2)
		res.BurstP99 = lat2[min(len(lat2)-1, len(lat2)*99/100)]
	}
	return res
}
