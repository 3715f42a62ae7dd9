//go:build linux

// Command abuse is tokenhandler's abuse drill: hundreds of stalled and slow-body
// connections against a running tokenhandler while a real, signed-in session keeps
// calling, measuring what the attack costs and how soon it is over.
//
// From the root of a clone:
//
//	go run ./bench/abuse           # the full drill, about 2 minutes
//	go run ./bench/abuse -short    # the CI drill, about 30 s: exit 1 when a target is missed
//	go run ./bench/abuse -h        # every flag
//
// It builds ./cmd/tokenhandler, starts a provider (Dex by default, through
// e2e/idptest), an upstream, and one tokenhandler whose public listener serves TLS with
// a certificate made at run time (so HTTP/2 is offered too; -tls=false for plain
// HTTP/1.1); signs the demo user in through the provider's login form, and then runs
// the session's loop of proxied GETs through four phases:
//
//	baseline  the session alone;
//	attack    the session, plus: connections that send nothing, connections that send
//	          half a request header, signed-in HTTP/1.1 POSTs that declare a 1 MiB body
//	          and send one byte now and then, and as many such POSTs as streams of one
//	          HTTP/2 connection; a connection the server cuts is opened again;
//	release   every attacker goes silent (connections stay open, nothing more is sent):
//	          the time until tokenhandler has closed every attack connection and stream
//	          and its goroutines are back to the baseline;
//	after     the session alone again.
//
// It reports tokenhandler's RSS (/proc/PID/status), goroutines (go_goroutines of the
// admin /metrics) and the session's p50/p99 per phase, against the targets: RSS growth
// under 64 MiB, the session's p99 under 3x its baseline p99 and no failed request,
// everything released within the body timeout. The server.* and proxy.replay_memory
// settings are passed as TH_SERVER_BODY_TIMEOUT and so on (flags below); a tokenhandler
// that does not know them warns and runs with its own limits, and the drill shows what
// they are.
package main

import (
	"errors"
	"flag"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/tokenhandler/tokenhandler/bench/internal/harness"
)

type options struct {
	provider          string
	stalled           int // connections that send nothing
	halfHeader        int // connections that send half a request header
	slowH1            int // HTTP/1.1 slow-body POSTs, one connection each
	slowH2            int // slow-body POSTs as streams of one HTTP/2 connection (TLS only)
	bodyBytes         int64
	trickle           time.Duration // one body byte per trickle
	phase             time.Duration // length of the baseline and after phases
	attack            time.Duration
	bodyTimeout       time.Duration
	readHeaderTimeout time.Duration
	idleTimeout       time.Duration
	replayMemory      string
	thEnv             map[string]string // more of tokenhandler's environment (GOGC=100, ...)
	tls               bool
	short             bool
	keep              bool
	bin               string // a prebuilt tokenhandler; empty: build ./cmd/tokenhandler
	timeout           time.Duration
}

func main() {
	o, err := parseFlags(os.Args[1:])
	harness.ExitOnFlagError(err)
	ctx, cancel := harness.SignalContext(o.timeout)
	defer cancel()
	var res *result
	err = harness.Run(ctx, "abuse", os.Stderr, o.keep, func(t *harness.TB) { res = drill(t, o) })
	if res != nil { // also when a check failed along the way (t.Errorf): the numbers help
		fmt.Print(res.markdown(o))
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	if missed := res.missed(o); len(missed) > 0 {
		fmt.Fprintf(os.Stderr, "abuse: %d target(s) missed: %v\n", len(missed), missed)
		os.Exit(1)
	}
}

func parseFlags(args []string) (*options, error) {
	fs := flag.NewFlagSet("abuse", flag.ContinueOnError)
	o := &options{}
	fs.StringVar(&o.provider, "provider", "dex", "OpenID provider: dex or hydra")
	fs.IntVar(&o.stalled, "stalled", 300, "connections that send nothing")
	fs.IntVar(&o.halfHeader, "half-header", 100, "connections that send half a request header")
	fs.IntVar(&o.slowH1, "slow-h1", 200, "signed-in HTTP/1.1 POSTs with a slow body, one connection each")
	fs.IntVar(&o.slowH2, "slow-h2", 200, "signed-in slow-body POSTs as streams of one HTTP/2 connection (with -tls)")
	fs.Int64Var(&o.bodyBytes, "body-bytes", 1<<20, "Content-Length the slow bodies declare")
	fs.DurationVar(&o.trickle, "trickle", time.Second, "a slow body sends one byte per this interval")
	fs.DurationVar(&o.phase, "phase", 10*time.Second, "length of the baseline and the after phase")
	fs.DurationVar(&o.attack, "attack", 30*time.Second, "length of the attack phase")
	fs.DurationVar(&o.bodyTimeout, "body-timeout", 30*time.Second, "server.body_timeout given to tokenhandler (TH_SERVER_BODY_TIMEOUT); also the release target")
	fs.DurationVar(&o.readHeaderTimeout, "read-header-timeout", 10*time.Second, "server.read_header_timeout given to tokenhandler (TH_SERVER_READ_HEADER_TIMEOUT)")
	fs.DurationVar(&o.idleTimeout, "idle-timeout", 0, "server.idle_timeout given to tokenhandler (TH_SERVER_IDLE_TIMEOUT); 0: not set")
	fs.StringVar(&o.replayMemory, "replay-memory", "", "proxy.replay_memory given to tokenhandler (TH_PROXY_REPLAY_MEMORY); empty: not set")
	var thEnv string
	fs.StringVar(&thEnv, "th-env", "", "comma-separated KEY=VALUE pairs added to tokenhandler's environment, for experiments (e.g. GOGC=100)")
	fs.BoolVar(&o.tls, "tls", true, "serve the public listener over TLS (tls.cert_file, a certificate made at run time), which offers HTTP/2 too")
	fs.BoolVar(&o.short, "short", false, "the CI drill, about 30 s: 4 s phases, an 8 s attack, 5 s body and 3 s header timeouts, fewer connections (flags given explicitly win)")
	fs.StringVar(&o.bin, "tokenhandler", "", "a prebuilt tokenhandler binary to run instead of building ./cmd/tokenhandler (another version, to compare)")
	fs.BoolVar(&o.keep, "keep", false, "keep the temporary directories (configuration, every process's log)")
	fs.DurationVar(&o.timeout, "timeout", 10*time.Minute, "give up (and stop everything) after this long")
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(fs.Output(), "unexpected arguments: %v\n", fs.Args())
		return nil, errors.New("usage")
	}
	o.thEnv = map[string]string{}
	for _, kv := range strings.Split(thEnv, ",") {
		if k, v, ok := strings.Cut(strings.TrimSpace(kv), "="); ok && k != "" {
			o.thEnv[k] = v
		} else if kv != "" {
			fmt.Fprintf(fs.Output(), "-th-env: %q is not KEY=VALUE\n", kv)
			return nil, errors.New("usage")
		}
	}
	if o.short {
		set := map[string]bool{}
		fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
		short := func(name string, apply func()) {
			if !set[name] {
				apply()
			}
		}
		short("phase", func() { o.phase = 4 * time.Second })
		short("attack", func() { o.attack = 8 * time.Second })
		short("body-timeout", func() { o.bodyTimeout = 5 * time.Second })
		short("read-header-timeout", func() { o.readHeaderTimeout = 3 * time.Second })
		short("stalled", func() { o.stalled = 200 })
		short("half-header", func() { o.halfHeader = 50 })
		short("slow-h1", func() { o.slowH1 = 100 })
		short("slow-h2", func() { o.slowH2 = 100 })
	}
	if !o.tls {
		o.slowH2 = 0
	}
	if o.provider != "dex" && o.provider != "hydra" {
		fmt.Fprintln(fs.Output(), "-provider must be dex or hydra")
		return nil, errors.New("usage")
	}
	if o.stalled < 0 || o.halfHeader < 0 || o.slowH1 < 0 || o.slowH2 < 0 || o.slowH2 > 240 || o.bodyBytes < 2 ||
		o.trickle <= 0 || o.phase < time.Second || o.attack < time.Second || o.bodyTimeout <= 0 || o.readHeaderTimeout <= 0 {
		fmt.Fprintln(fs.Output(), "need counts >= 0, slow-h2 <= 240 (one connection's streams), body-bytes >= 2, positive durations, phases >= 1s")
		return nil, errors.New("usage")
	}
	return o, nil
}
