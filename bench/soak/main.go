//go:build linux

// Command soak runs tokenhandler the way a small production does, for minutes, and
// counts what went wrong: R replicas on one Redis, K browsers of M tabs each (the tabs
// of a browser share its cookie jar), access tokens that expire every few seconds, and
// Ory Hydra with strict refresh-token rotation (grace period 0: a refresh token used
// twice revokes the whole family, so one replay signs the browser out).
//
// From the root of a clone:
//
//	go run ./bench/soak                  # 3 replicas, 5 browsers x 20 tabs, 10 s tokens, 10 minutes
//	go run ./bench/soak -duration 60s    # the CI soak
//	go run ./bench/soak -h               # every flag
//
// It builds ./cmd/tokenhandler, starts a redis-server of its own, Hydra (through
// e2e/idptest, behind the front proxy that counts token-endpoint calls), an upstream
// and the replicas; signs each browser in through Hydra's login page, and then every tab
// sends proxied GETs one after another, each to the next replica in turn. It reports
// requests, non-200 answers by status and error code, sign-outs (401 session_expired),
// refresh calls at the provider against the rotations the token lifetime asks for,
// and refresh tokens the provider refused (each one a replay: Hydra refuses a spent
// token, and only a spent token, with a 4xx). It exits 1 on any sign-out, refused
// refresh or non-200 answer.
package main

import (
	"errors"
	"flag"
	"fmt"
	"os"
	"time"

	"github.com/tokenhandler/tokenhandler/bench/internal/harness"
)

type options struct {
	replicas, browsers, tabs int
	tokenTTL                 time.Duration
	skew                     time.Duration // session.refresh_skew
	duration                 time.Duration
	think                    time.Duration // pause of a tab between two requests
	store                    string
	stagger                  bool // sign the browsers in spread over one refresh interval
	keep                     bool
	bin                      string // a prebuilt tokenhandler; empty: build ./cmd/tokenhandler
	timeout                  time.Duration
}

func main() {
	o, err := parseFlags(os.Args[1:])
	harness.ExitOnFlagError(err)
	ctx, cancel := harness.SignalContext(o.duration + o.timeout)
	defer cancel()
	var res *result
	err = harness.Run(ctx, "soak", os.Stderr, o.keep, func(t *harness.TB) { res = soak(t, o) })
	if res != nil { // also when a check failed along the way (t.Errorf): the numbers help
		fmt.Print(res.markdown(o))
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	if problems := res.problems(); len(problems) > 0 {
		fmt.Fprintf(os.Stderr, "soak: failed: %v\n", problems)
		os.Exit(1)
	}
}

func parseFlags(args []string) (*options, error) {
	fs := flag.NewFlagSet("soak", flag.ContinueOnError)
	o := &options{}
	fs.IntVar(&o.replicas, "replicas", 3, "tokenhandler replicas, all on one Redis")
	fs.IntVar(&o.browsers, "browsers", 5, "browsers, each signed in once, each with its own cookie jar")
	fs.IntVar(&o.tabs, "tabs", 20, "concurrent tabs per browser, sharing the browser's cookies")
	fs.DurationVar(&o.tokenTTL, "token-ttl", 10*time.Second, "access-token lifetime at the provider (whole seconds)")
	fs.DurationVar(&o.skew, "refresh-skew", 2*time.Second, "session.refresh_skew: a token this close to expiry is refreshed before use (tokenhandler's default, 30s, is longer than the token)")
	fs.DurationVar(&o.duration, "duration", 10*time.Minute, "how long the tabs send requests")
	fs.DurationVar(&o.think, "think", 100*time.Millisecond, "pause of a tab between its requests")
	fs.StringVar(&o.store, "store", "cookie", "session.store: cookie (the session in the browser's cookies, Redis for refresh coordination) or redis")
	fs.StringVar(&o.bin, "tokenhandler", "", "a prebuilt tokenhandler binary to run instead of building ./cmd/tokenhandler (another version, to compare)")
	fs.BoolVar(&o.stagger, "stagger", true, "sign the browsers in spread over one refresh interval, so that their refreshes do not all fall together (Hydra's in-memory store fails some simultaneous refreshes of one user's grants with a 500)")
	fs.BoolVar(&o.keep, "keep", false, "keep the temporary directories (configuration, every process's log)")
	fs.DurationVar(&o.timeout, "timeout", 10*time.Minute, "time allowed for everything but the soak itself (builds, start-up, sign-ins)")
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(fs.Output(), "unexpected arguments: %v\n", fs.Args())
		return nil, errors.New("usage")
	}
	if o.replicas < 1 || o.browsers < 1 || o.tabs < 1 || o.tokenTTL < 2*time.Second || o.tokenTTL%time.Second != 0 ||
		o.skew < 0 || o.skew >= o.tokenTTL || o.duration < 5*time.Second || o.think < 0 || (o.store != "cookie" && o.store != "redis") {
		fmt.Fprintln(fs.Output(), "need replicas, browsers, tabs >= 1; token-ttl >= 2s in whole seconds; 0 <= refresh-skew < token-ttl; duration >= 5s; store cookie or redis")
		return nil, errors.New("usage")
	}
	return o, nil
}
