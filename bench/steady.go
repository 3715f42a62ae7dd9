//go:build linux

package main

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strings"
	"time"
)

// target is one setup under load for one token size: where to send, what to send, which
// process to measure.
type target struct {
	setup    string
	url      string
	headers  []string
	pid      int
	extraPid int // a helper process whose CPU is reported apart (redis-server); 0: none
}

// scenario is one steady load.
type scenario struct {
	Name      string // flag name
	Title     string
	Method    string
	BodySize  int
	TokenSize int // access token (JWT) bytes
}

var steadyScenarios = []scenario{
	{Name: "get-1.2k", Title: "GET, 1.2 KB RS256 access token", Method: "GET", TokenSize: 1200},
	{Name: "get-3k", Title: "GET, 3 KB RS256 access token", Method: "GET", TokenSize: 3000},
	{Name: "post-16k", Title: "POST 16 KiB JSON body, 1.2 KB access token", Method: "POST", BodySize: 16 << 10, TokenSize: 1200},
}

// roundResult is one wrk run of one setup in one round.
type roundResult struct {
	Round     int
	Setup     string
	W         wrkResult
	CPU       time.Duration // the setup process's CPU time during the run
	CPUPerReq float64       // µs
	// ExtraCPUPerReq is the helper process's CPU per request (redis-server), µs.
	ExtraCPUPerReq float64
}

// scenarioResult is every round of one scenario.
type scenarioResult struct {
	Scenario scenario
	Setups   []string
	Rounds   []roundResult
	RSS      map[string]int64  // VmHWM at the end of the scenario
	Notes    map[string]string // per setup: what it carried (cookie sizes)
}

// runSteady drives each target with wrk, round after round (A B C, B C A, ...), so that
// any drift of the machine hits every setup alike.
func runSteady(ctx context.Context, o *options, tmp string, sc scenario, targets []target, logf func(string, ...any)) (*scenarioResult, error) {
	res := &scenarioResult{Scenario: sc, RSS: map[string]int64{}, Notes: map[string]string{}}
	var body []byte
	if sc.BodySize > 0 {
		body = jsonBody(sc.BodySize)
	}
	// Check each target once: a setup that does not answer 200 is left out, with a note.
	var live []target
	for _, t := range targets {
		if err := probe(ctx, t, sc.Method, body); err != nil {
			logf("%s: %s left out: %v", sc.Name, t.setup, err)
			res.Notes[t.setup] = "left out: " + err.Error()
			continue
		}
		live = append(live, t)
		res.Setups = append(res.Setups, t.setup)
	}
	load := func(t target, d time.Duration) wrkLoad {
		return wrkLoad{url: t.url, headers: t.headers, method: sc.Method, body: body,
			conns: o.conns, threads: o.threads, duration: d}
	}
	if o.warmup > 0 {
		for _, t := range live {
			if _, err := runWrk(ctx, tmp, load(t, o.warmup)); err != nil {
				return nil, err
			}
		}
	}
	for round := 1; round <= o.rounds; round++ {
		for _, t := range roundOrder(live, round) {
			if err := ctx.Err(); err != nil {
				return nil, err
			}
			cpu0, err := cpuTime(t.pid)
			if err != nil {
				return nil, err
			}
			var extra0 time.Duration
			if t.extraPid != 0 {
				extra0, _ = cpuTime(t.extraPid)
			}
			w, err := runWrk(ctx, tmp, load(t, o.duration))
			if err != nil {
				return nil, err
			}
			cpu1, err := cpuTime(t.pid)
			if err != nil {
				return nil, err
			}
			r := roundResult{Round: round, Setup: t.setup, W: w, CPU: cpu1 - cpu0}
			if w.Requests > 0 {
				r.CPUPerReq = float64(r.CPU.Microseconds()) / float64(w.Requests)
				if t.extraPid != 0 {
					extra1, _ := cpuTime(t.extraPid)
					r.ExtraCPUPerReq = float64((extra1 - extra0).Microseconds()) / float64(w.Requests)
				}
			}
			res.Rounds = append(res.Rounds, r)
			logf("%s round %d %-12s %8.0f req/s  p99 %6.2f ms  cpu %6.1f µs/req  errors %d",
				sc.Name, round, t.setup, w.rps(), w.P99/1000, r.CPUPerReq, w.errors())
		}
	}
	for _, t := range live {
		if rss, err := peakRSS(t.pid); err == nil {
			res.RSS[t.setup] = rss
		}
	}
	return res, nil
}

// roundOrder is the order of the setups in round (1-based): rotated by one each round
// (A B C, B C A, C A B, ...), so that over as many rounds as setups each setup runs once
// in each position. In a fixed order the last setup of every round read a few µs of CPU
// per request more than the same binary run earlier in the round.
func roundOrder(live []target, round int) []target {
	if len(live) == 0 {
		return nil
	}
	k := (round - 1) % len(live)
	return append(slices.Clone(live[k:]), live[:k]...)
}

// probe sends one request as wrk will and requires a 200.
func probe(ctx context.Context, t target, method string, body []byte) error {
	var rd io.Reader
	if body != nil {
		rd = strings.NewReader(string(body))
	}
	req, err := http.NewRequestWithContext(ctx, method, t.url, rd)
	if err != nil {
		return err
	}
	for _, h := range t.headers {
		k, v, _ := strings.Cut(h, ":")
		req.Header.Set(strings.TrimSpace(k), strings.TrimSpace(v))
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	c := &http.Client{
		Timeout:   10 * time.Second,
		Transport: &http.Transport{Proxy: nil},
		// A redirect (to a login page) is a failure, not something to follow.
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
	res, err := c.Do(req)
	if err != nil {
		return err
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(res.Body, 512))
	if res.StatusCode != http.StatusOK || !strings.Contains(string(b), `"ok":true`) {
		return fmt.Errorf("probe answered %s: %.200s", res.Status, b)
	}
	return nil
}

// jsonBody is a JSON document of n bytes (ASCII, no "]]", so it fits a Lua long string).
func jsonBody(n int) []byte {
	var b strings.Builder
	b.WriteString(`{"items":[`)
	for i := 0; b.Len() < n-40; i++ {
		if i > 0 {
			b.WriteByte(',')
		}
		fmt.Fprintf(&b, `{"id":%d,"name":"item-%d","tags":["a","b"]}`, i, i)
	}
	b.WriteString(`],"pad":"`)
	for b.Len() < n-2 {
		b.WriteByte('x')
	}
	b.WriteString(`"}`)
	return []byte(b.String())
}
