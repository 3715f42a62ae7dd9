//go:build linux

package main

import (
	"context"
	"slices"
	"time"

	"github.com/tokenhandler/tokenhandler/session"
)

// startupResult is how long tokenhandler took to become ready (/readyz 200).
type startupResult struct {
	// Up: the provider was answering before tokenhandler started; the time runs from
	// starting the process. Late: the provider answered 503 for Down after the start;
	// the time runs from the moment it answered discovery.
	Case  string
	Down  time.Duration
	Times []time.Duration
	Err   string
}

func (r startupResult) median() time.Duration {
	if len(r.Times) == 0 {
		return 0
	}
	s := slices.Clone(r.Times)
	slices.Sort(s)
	return s[len(s)/2]
}

func (r startupResult) max() time.Duration {
	if len(r.Times) == 0 {
		return 0
	}
	return slices.Max(r.Times)
}

// runStartup measures time to ready, in cookie mode, against d: o.startupRuns starts
// with the provider already up, then starts with the provider "down" (its front
// answering 503) for a while, timed from the moment it answers again.
func runStartup(ctx context.Context, o *options, env *environment, d *dex) []startupResult {
	keys, err := session.GenerateKeyPair()
	if err != nil {
		return []startupResult{{Case: "up", Err: err.Error()}}
	}
	cfg := thConfig{name: "th-startup", issuer: d.Issuer, secret: d.ClientSecret, keys: keys, upstream: env.upstream}
	once := func(down time.Duration) (time.Duration, error) {
		if down > 0 {
			d.down.Store(true)
			defer d.down.Store(false)
		}
		t0 := time.Now()
		th, err := startTokenhandler(env.ps, env.thBin, env.tmp, cfg)
		if err != nil {
			return 0, err
		}
		defer th.proc.Stop(stopGrace)
		if down > 0 {
			select {
			case <-time.After(down):
			case <-ctx.Done():
				return 0, ctx.Err()
			}
			t0 = time.Now()
			d.down.Store(false)
		}
		t1, err := th.ready(ctx, 30*time.Second)
		if err != nil {
			return 0, err
		}
		return t1.Sub(t0), nil
	}
	var out []startupResult
	up := startupResult{Case: "up"}
	for range o.startupRuns {
		t, err := once(0)
		if err != nil {
			up.Err = err.Error()
			break
		}
		up.Times = append(up.Times, t)
	}
	out = append(out, up)
	for _, down := range []time.Duration{time.Second, 2500 * time.Millisecond, 4 * time.Second, 7 * time.Second, 10 * time.Second} {
		late := startupResult{Case: "late", Down: down}
		t, err := once(down)
		if err != nil {
			late.Err = err.Error()
		} else {
			late.Times = append(late.Times, t)
		}
		out = append(out, late)
	}
	return out
}
