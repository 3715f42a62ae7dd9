//go:build linux

// Command bench measures tokenhandler's proxy path against a bare Go reverse proxy (the
// floor) and oauth2-proxy v7.8.1, on loopback only, and writes the tables and chart of
// BENCHMARKS.md.
//
// From the root of a clone:
//
//	go run ./bench            # the full run, about 10 minutes; prints the report
//	go run ./bench -update    # the same, and rewrites BENCHMARKS.md's results and docs/bench-results.svg
//	go run ./bench -h         # every flag (durations, rounds, connections, which scenarios and setups)
//
// It builds tokenhandler (./cmd/tokenhandler), Dex (scripts/idp-bin.sh, cached) and
// oauth2-proxy (the tool module bench/oauth2-proxy, cached), starts an upstream, a bare
// proxy, tokenhandler in cookie mode and, when redis-server is installed, in Redis mode
// against a redis-server of its own, and oauth2-proxy signed in through Dex; then drives
// each with wrk in interleaved rounds and reads each proxy's CPU time and peak RSS from
// /proc. It also runs a refresh storm against Dex, times start-up to ready, and runs the
// hot-path Go benchmarks of this package. Every child process is stopped at the end, and
// killed by the kernel if the harness dies first. Needs Linux, go, wrk, bash; a C
// toolchain is not needed.
package main

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"github.com/tokenhandler/tokenhandler/bench/internal/harness"
	"github.com/tokenhandler/tokenhandler/session"

	"github.com/tokenhandler/tokenhandler/internal/testbench"
)

type options struct {
	duration, warmup time.Duration
	rounds           int
	conns, threads   int
	scenarios        map[string]bool
	setups           map[string]bool
	stormSessions    int
	stormRequests    int
	stormTTL         time.Duration
	startupRuns      int
	goBench          time.Duration // -benchtime of the Go benchmarks; 0: skip them
	update           bool
	keep             bool
	timeout          time.Duration
	baseline         string   // another tokenhandler tree, run in cookie mode as setupBaseline
	thEnv            []string // extra environment of every tokenhandler process (GOGC=200, ...)
	bareEnv          []string // extra environment of the bare proxies
}

// Setup names, in the order of every round.
const (
	setupUpstream = "upstream"
	setupBare     = "bare-proxy"
	// setupBareDefault is the bare proxy at Go's default GC settings (GOGC=100), while
	// setupBare runs with tokenhandler's: the comparison of earlier runs, kept as a
	// second, labelled line (GET 1.2 KB only).
	setupBareDefault = "bare-proxy-gogc100"
	setupCookie      = "th-cookie"
	// setupQuiet is cookie mode with log.level warn: no log line per request, to show
	// what request logging costs.
	setupQuiet = "th-cookie-nolog"
	// setupBaseline is cookie mode built from the tree given with -baseline (an older
	// version, to measure a change in the same interleaved run).
	setupBaseline = "th-baseline"
	setupRedis    = "th-redis"
	// setupDPoP is cookie mode with oidc.dpop and a DPoP-bound session (EdDSA key): the
	// same rounds as th-cookie, so the difference is the proof's cost per request.
	setupDPoP = "th-dpop"
	setupO2P  = "oauth2-proxy"
)

var allSetups = []string{setupUpstream, setupBare, setupBareDefault, setupBaseline, setupCookie, setupDPoP, setupQuiet, setupRedis, setupO2P}

func main() {
	if len(os.Args) > 1 && strings.HasPrefix(os.Args[1], "_") {
		os.Exit(runRole(os.Args[1:]))
	}
	o, err := parseFlags(os.Args[1:])
	harness.ExitOnFlagError(err)
	ctx, cancel := harness.SignalContext(o.timeout)
	defer cancel()
	if err := run(ctx, o); err != nil {
		fmt.Fprintln(os.Stderr, err)
		cancel()
		os.Exit(1)
	}
}

func parseFlags(args []string) (*options, error) {
	fs := flag.NewFlagSet("bench", flag.ContinueOnError)
	o := &options{}
	var scenarios, setups string
	fs.DurationVar(&o.duration, "duration", 8*time.Second, "length of one wrk run (whole seconds)")
	fs.DurationVar(&o.warmup, "warmup", 2*time.Second, "wrk warm-up per setup and scenario, not measured; 0: none")
	fs.IntVar(&o.rounds, "rounds", 3, "interleaved rounds per scenario, the order rotated each round (A B C, B C A, C A B, ...)")
	fs.IntVar(&o.conns, "conns", 64, "wrk connections")
	fs.IntVar(&o.threads, "threads", 2, "wrk threads")
	fs.StringVar(&scenarios, "scenarios", "get-1.2k,get-3k,post-16k,storm,startup,gobench", "comma-separated scenarios to run")
	fs.StringVar(&setups, "setups", strings.Join(allSetups, ","), "comma-separated setups to load")
	fs.IntVar(&o.stormSessions, "storm-sessions", 50, "sessions in the refresh storm")
	fs.IntVar(&o.stormRequests, "storm-requests", 1000, "concurrent requests in the refresh storm")
	fs.DurationVar(&o.stormTTL, "storm-ttl", 5*time.Second, "access-token lifetime at the provider for the storm")
	fs.IntVar(&o.startupRuns, "startup-runs", 5, "start-ups timed with the provider already up")
	fs.DurationVar(&o.goBench, "gobench-time", time.Second, "-benchtime of the hot-path Go benchmarks")
	fs.BoolVar(&o.update, "update", false, "rewrite the results section of BENCHMARKS.md and docs/bench-results.svg")
	fs.BoolVar(&o.keep, "keep", false, "keep the temporary directory (configurations and every process's log)")
	fs.DurationVar(&o.timeout, "timeout", 30*time.Minute, "give up (and stop everything) after this long")
	var thEnv, bareEnv string
	fs.StringVar(&bareEnv, "bare-env", "", "comma-separated KEY=VALUE pairs added to the bare proxies' environment")
	fs.StringVar(&thEnv, "th-env", "", "comma-separated KEY=VALUE pairs added to the environment of the steady scenarios' tokenhandlers, for experiments (e.g. GOGC=200)")
	fs.StringVar(&o.baseline, "baseline", "", "root of another tokenhandler tree (e.g. a checkout of an older commit) to run in cookie mode as setup th-baseline, interleaved with the rest")
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(fs.Output(), "unexpected arguments: %v\n", fs.Args())
		return nil, errors.New("usage")
	}
	if o.rounds < 1 || o.conns < 1 || o.threads < 1 || o.threads > o.conns || o.duration < time.Second ||
		o.stormSessions < 1 || o.stormSessions+stormAlone > demoUsers || o.stormRequests < o.stormSessions || o.startupRuns < 0 {
		fmt.Fprintln(fs.Output(), "need rounds >= 1, 1 <= threads <= conns, duration >= 1s, storm-requests >= storm-sessions >= 1, storm-sessions <= 195")
		return nil, errors.New("usage")
	}
	o.thEnv = envList(thEnv)
	o.bareEnv = append(gcEnv(o.thEnv), envList(bareEnv)...)
	o.scenarios = set(scenarios)
	o.setups = set(setups)
	return o, nil
}

// tokenhandlerGOGC and tokenhandlerGOMEMLIMIT are what `tokenhandler serve` sets for
// itself when its environment has no GOGC (gcPercent and softMemoryLimit in
// cmd/tokenhandler/main.go; a test holds them equal). The memory limit is set only
// with the default GOGC, and only when the environment has no GOMEMLIMIT.
const (
	tokenhandlerGOGC       = "400"
	tokenhandlerGOMEMLIMIT = "96MiB"
)

// gcEnv is the garbage collector's settings the tokenhandlers under load run with, given
// their extra environment thEnv: its GOGC or else tokenhandler's own default, its
// GOMEMLIMIT or else (with the default GOGC) tokenhandler's own. The bare proxies get the
// same, so that the comparison is of the work each does per request, not of how often
// each collects; -bare-env still overrides.
func gcEnv(thEnv []string) []string {
	gogc, memLimit := "GOGC="+tokenhandlerGOGC, ""
	ownGOGC := false
	for _, kv := range thEnv {
		switch k, _, _ := strings.Cut(kv, "="); k {
		case "GOGC":
			gogc, ownGOGC = kv, true
		case "GOMEMLIMIT":
			memLimit = kv
		}
	}
	if memLimit == "" && !ownGOGC {
		memLimit = "GOMEMLIMIT=" + tokenhandlerGOMEMLIMIT
	}
	if memLimit == "" {
		return []string{gogc}
	}
	return []string{gogc, memLimit}
}

func envList(list string) []string {
	var out []string
	for _, kv := range strings.Split(list, ",") {
		if kv = strings.TrimSpace(kv); kv != "" {
			out = append(out, kv)
		}
	}
	return out
}

func set(list string) map[string]bool {
	m := map[string]bool{}
	for _, s := range strings.Split(list, ",") {
		if s = strings.TrimSpace(s); s != "" {
			m[s] = true
		}
	}
	return m
}

// environment is what every phase shares.
type environment struct {
	root, tmp string
	ps        *procs
	thBin     string
	dexBin    string
	self      string
	upstream  string // the upstream's URL
	redisURL  string // "" without Redis mode
}

func run(ctx context.Context, o *options) error {
	logf := func(format string, args ...any) {
		fmt.Fprintf(os.Stderr, "bench: "+format+"\n", args...)
	}
	root, err := repoRoot()
	if err != nil {
		return err
	}
	tmp, err := os.MkdirTemp("", "th-bench-")
	if err != nil {
		return err
	}
	if o.keep {
		logf("keeping %s", tmp)
	} else {
		defer os.RemoveAll(tmp)
	}
	ps := &procs{}
	defer ps.StopAll(stopGrace)
	rep := &report{Started: time.Now(), LoadBefore: harness.LoadAverage(), Options: o, Machine: machine()}
	env := &environment{root: root, tmp: tmp, ps: ps}

	logf("building tokenhandler")
	if env.thBin, err = buildTokenhandler(ctx, root, tmp); err != nil {
		return err
	}
	logf("building (or finding) Dex")
	if env.dexBin, err = idpBin(ctx, root, "dex"); err != nil {
		return err
	}
	if env.self, err = os.Executable(); err != nil {
		return err
	}
	var o2pBin string
	if o.setups[setupO2P] {
		if o2pBin, err = buildOAuth2Proxy(ctx, root, logf); err != nil {
			rep.note("oauth2-proxy could not be built, so it is left out: %v", err)
			o2pBin = ""
		}
	}

	// The upstream and the bare proxies.
	upPort, err := testbench.FreePort()
	if err != nil {
		return err
	}
	env.upstream = fmt.Sprintf("http://127.0.0.1:%d", upPort)
	up, err := ps.start("upstream", env.self, []string{"_upstream", fmt.Sprintf("127.0.0.1:%d", upPort)}, nil, filepath.Join(tmp, "upstream.log"))
	if err != nil {
		return err
	}
	if _, err := waitHTTP(ctx, up, env.upstream+"/", 401, 10*time.Second); err != nil {
		return err
	}

	// Ports first: Dex must know every callback.
	ports, err := testbench.FreePorts(3)
	if err != nil {
		return err
	}
	cookiePort, redisPort, o2pPort := ports[0], ports[1], ports[2]
	d, err := startDex(ctx, ps, env.dexBin, tmp, 12*time.Hour, []string{
		fmt.Sprintf("http://127.0.0.1:%d/auth/callback", cookiePort),
		fmt.Sprintf("http://127.0.0.1:%d/auth/callback", redisPort),
		fmt.Sprintf("http://127.0.0.1:%d%s", o2pPort, o2pCallback),
	})
	if err != nil {
		return err
	}
	defer d.stop()

	// Tokens: RS256 JWTs of the scenario sizes, and an ID token of 1.2 KB.
	signer, err := newJWTSigner(d.Issuer)
	if err != nil {
		return err
	}
	exp := time.Now().Add(6 * time.Hour)
	tokens := map[int]string{}
	for _, n := range []int{1200, 3000} {
		if tokens[n], err = signer.token(n, demoUser, exp); err != nil {
			return err
		}
	}
	idToken, err := signer.token(1200, demoUser, exp)
	if err != nil {
		return err
	}

	// The bare proxies, one per token size, with tokenhandler's GC settings; and for the
	// 1.2 KB GET also one at Go's defaults (the comparison of earlier runs).
	bare := map[int]*testbench.Process{}
	bareURL := map[int]string{}
	var bareDefault *testbench.Process
	var bareDefaultURL string
	startBare := func(name, tokenPath string, extra []string) (*testbench.Process, string, error) {
		port, err := testbench.FreePort()
		if err != nil {
			return nil, "", err
		}
		p, err := ps.start(name, env.self, []string{"_bare", fmt.Sprintf("127.0.0.1:%d", port), env.upstream, tokenPath}, extra, filepath.Join(tmp, name+".log"))
		if err != nil {
			return nil, "", err
		}
		url := fmt.Sprintf("http://127.0.0.1:%d", port)
		if _, err := waitHTTP(ctx, p, url+"/", 200, 10*time.Second); err != nil {
			return nil, "", err
		}
		return p, url, nil
	}
	for n, tok := range tokens {
		path := filepath.Join(tmp, fmt.Sprintf("token-%d", n))
		if err := os.WriteFile(path, []byte(tok), 0o600); err != nil {
			return err
		}
		if bare[n], bareURL[n], err = startBare(fmt.Sprintf("bare-%d", n), path, o.bareEnv); err != nil {
			return err
		}
		if n == 1200 && o.setups[setupBareDefault] {
			if bareDefault, bareDefaultURL, err = startBare("bare-1200-gogc100", path, []string{"GOGC=100"}); err != nil {
				return err
			}
		}
	}

	// tokenhandler, cookie mode.
	keys, err := session.GenerateKeyPair()
	if err != nil {
		return err
	}
	thCookie, err := startTokenhandler(ps, env.thBin, tmp, thConfig{
		name: setupCookie, issuer: d.Issuer, secret: d.ClientSecret, keys: keys, upstream: env.upstream, port: cookiePort, env: o.thEnv,
	})
	if err != nil {
		return err
	}
	if _, err := thCookie.ready(ctx, 30*time.Second); err != nil {
		return err
	}
	cookieStore, err := newCookieStore(keys)
	if err != nil {
		return err
	}
	// tokenhandler, cookie mode with DPoP: its sessions' tokens are bound to its key.
	var thDPoP *thInstance
	if o.setups[setupDPoP] {
		dpopKey, err := writeDPoPKey(tmp)
		if err != nil {
			return err
		}
		thDPoP, err = startTokenhandler(ps, env.thBin, tmp, thConfig{
			name: setupDPoP, issuer: d.Issuer, secret: d.ClientSecret, keys: keys, upstream: env.upstream, dpopKeyFile: dpopKey, env: o.thEnv,
		})
		if err != nil {
			return err
		}
		if _, err := thDPoP.ready(ctx, 30*time.Second); err != nil {
			return err
		}
	}
	var thBase *thInstance
	if o.baseline != "" && o.setups[setupBaseline] {
		logf("building the baseline tokenhandler from %s", o.baseline)
		dir := filepath.Join(tmp, "baseline")
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return err
		}
		bin, err := buildTokenhandler(ctx, o.baseline, dir)
		if err != nil {
			return err
		}
		thBase, err = startTokenhandler(ps, bin, tmp, thConfig{
			name: setupBaseline, issuer: d.Issuer, secret: d.ClientSecret, keys: keys, upstream: env.upstream, env: o.thEnv,
		})
		if err != nil {
			return err
		}
		if _, err := thBase.ready(ctx, 30*time.Second); err != nil {
			return err
		}
	}
	var thQuiet *thInstance
	if o.setups[setupQuiet] {
		thQuiet, err = startTokenhandler(ps, env.thBin, tmp, thConfig{
			name: setupQuiet, issuer: d.Issuer, secret: d.ClientSecret, keys: keys, upstream: env.upstream, logLevel: "warn", env: o.thEnv,
		})
		if err != nil {
			return err
		}
		if _, err := thQuiet.ready(ctx, 30*time.Second); err != nil {
			return err
		}
	}

	// tokenhandler, Redis mode, when redis-server is installed and tokenhandler has the
	// Redis store.
	var thRedis *thInstance
	var redisMint minter
	var redisProc *testbench.Process
	if o.setups[setupRedis] || o.scenarios["storm"] {
		env.redisURL, redisProc, err = startRedis(ctx, ps, tmp)
		if err != nil {
			rep.note("Redis mode left out: %v", err)
		}
	}
	if env.redisURL != "" && o.setups[setupRedis] {
		thRedis, err = startTokenhandler(ps, env.thBin, tmp, thConfig{
			name: setupRedis, issuer: d.Issuer, secret: d.ClientSecret, keys: keys, upstream: env.upstream,
			redisURL: env.redisURL, port: redisPort, env: o.thEnv,
		})
		if err == nil {
			_, err = thRedis.ready(ctx, 15*time.Second)
		}
		if err == nil {
			redisMint, err = redisMinter(ctx, env.redisURL, keys)
		}
		if err != nil {
			rep.note("Redis mode left out: %v", firstLine(err.Error()))
			if thRedis != nil {
				thRedis.proc.Stop(stopGrace)
			}
			thRedis = nil
		}
	}

	// oauth2-proxy, signed in through Dex.
	var o2p *o2pInstance
	var o2pCookie string
	if o2pBin != "" {
		o2p, err = startOAuth2Proxy(ctx, ps, o2pBin, tmp, o2pPort, d, env.upstream)
		if err == nil {
			o2pCookie, err = o2p.session(ctx)
		}
		if err != nil {
			rep.note("oauth2-proxy left out: %v", firstLine(err.Error()))
			if o2p != nil {
				o2p.proc.Stop(stopGrace)
			}
			o2p = nil
		} else {
			rep.O2PCookieBytes = len(o2pCookie)
		}
	}

	// Steady scenarios.
	for _, sc := range steadyScenarios {
		if !o.scenarios[sc.Name] {
			continue
		}
		tok := tokens[sc.TokenSize]
		csrf := "X-CSRF: 1"
		var targets []target
		add := func(setup, url string, pid int, headers ...string) {
			if o.setups[setup] {
				targets = append(targets, target{setup: setup, url: url + "/api/items?page=2", pid: pid, headers: headers})
			}
		}
		cookieHdr, err := storeCookies(ctx, cookieStore, sessionFor(tok, idToken))
		if err != nil {
			return err
		}
		if sc.Method == "GET" && sc.TokenSize == 1200 {
			add(setupUpstream, env.upstream, up.Pid(), "Authorization: Bearer "+tok)
		}
		add(setupBare, bareURL[sc.TokenSize], bare[sc.TokenSize].Pid(), "Cookie: "+cookieHdr, csrf)
		if bareDefault != nil && sc.Name == "get-1.2k" {
			add(setupBareDefault, bareDefaultURL, bareDefault.Pid(), "Cookie: "+cookieHdr, csrf)
		}
		if thBase != nil {
			add(setupBaseline, thBase.URL, thBase.proc.Pid(), "Cookie: "+cookieHdr, csrf)
		}
		add(setupCookie, thCookie.URL, thCookie.proc.Pid(), "Cookie: "+cookieHdr, csrf)
		var dpopHdr string
		if thDPoP != nil {
			bound := sessionFor(tok, idToken)
			bound.TokenType = "DPoP"
			if dpopHdr, err = storeCookies(ctx, cookieStore, bound); err != nil {
				return err
			}
			add(setupDPoP, thDPoP.URL, thDPoP.proc.Pid(), "Cookie: "+dpopHdr, csrf)
		}
		if thQuiet != nil && sc.Name == "get-1.2k" {
			add(setupQuiet, thQuiet.URL, thQuiet.proc.Pid(), "Cookie: "+cookieHdr, csrf)
		}
		var redisHdr string
		if thRedis != nil {
			if redisHdr, err = redisMint(ctx, sessionFor(tok, idToken)); err != nil {
				return err
			}
			add(setupRedis, thRedis.URL, thRedis.proc.Pid(), "Cookie: "+redisHdr, csrf)
			if n := len(targets); n > 0 && targets[n-1].setup == setupRedis {
				targets[n-1].extraPid = redisProc.Pid() // redis-server's share, reported apart
			}
		}
		// oauth2-proxy carries the tokens Dex issued: only where that compares (1.2 KB).
		if o2p != nil && sc.TokenSize == 1200 {
			add(setupO2P, o2p.URL, o2p.proc.Pid(), "Cookie: "+o2pCookie, csrf)
		}
		logf("scenario %s: %d setups x %d rounds x %s", sc.Name, len(targets), o.rounds, o.duration)
		res, err := runSteady(ctx, o, tmp, sc, targets, logf)
		if err != nil {
			return err
		}
		res.Notes[setupCookie] = fmt.Sprintf("Cookie header %d B", len(cookieHdr))
		if dpopHdr != "" {
			res.Notes[setupDPoP] = fmt.Sprintf("Cookie header %d B; DPoP-bound token, EdDSA proof per request", len(dpopHdr))
		}
		res.Notes[setupQuiet] = fmt.Sprintf("Cookie header %d B; log.level warn", len(cookieHdr))
		res.Notes[setupBaseline] = fmt.Sprintf("Cookie header %d B; built from -baseline", len(cookieHdr))
		res.Notes[setupBare] = fmt.Sprintf("Cookie header %d B (dropped), fixed Bearer set; %s as tokenhandler", len(cookieHdr), strings.Join(gcEnv(o.thEnv), " "))
		res.Notes[setupBareDefault] = fmt.Sprintf("Cookie header %d B (dropped), fixed Bearer set; GOGC=100, Go's default", len(cookieHdr))
		if redisHdr != "" {
			res.Notes[setupRedis] = fmt.Sprintf("Cookie header %d B", len(redisHdr))
		}
		if o2pCookie != "" {
			res.Notes[setupO2P] = fmt.Sprintf("Cookie header %d B (Dex's tokens)", len(o2pCookie))
		}
		rep.Steady = append(rep.Steady, res)
	}

	if o.scenarios["storm"] {
		logf("refresh storm, cookie mode: %d sessions, %d requests", o.stormSessions, o.stormRequests)
		rep.Storms = append(rep.Storms, runStorm(ctx, o, env, setupCookie, ""))
		if env.redisURL != "" && thRedis != nil {
			logf("refresh storm, Redis mode")
			rep.Storms = append(rep.Storms, runStorm(ctx, o, env, setupRedis, env.redisURL))
		}
	}
	if o.scenarios["startup"] {
		logf("start-up to ready")
		rep.Startup = runStartup(ctx, o, env, d)
	}
	if o.scenarios["gobench"] && o.goBench > 0 {
		logf("Go benchmarks (go test -bench ./bench)")
		rep.GoBench, err = runGoBench(ctx, root, o.goBench, env.redisURL)
		if err != nil {
			rep.note("Go benchmarks failed: %v", firstLine(err.Error()))
		}
	}
	rep.Finished = time.Now()
	rep.LoadAfter = harness.LoadAverage()

	md := rep.markdown()
	svg := rep.svg()
	fmt.Print(md)
	if o.update {
		if err := updateBenchmarksMD(filepath.Join(root, "BENCHMARKS.md"), md); err != nil {
			return err
		}
		if err := os.WriteFile(filepath.Join(root, "docs", "bench-results.svg"), []byte(svg), 0o644); err != nil {
			return err
		}
		logf("updated BENCHMARKS.md and docs/bench-results.svg")
	} else {
		path := filepath.Join(os.TempDir(), "bench-results.svg")
		if err := os.WriteFile(path, []byte(svg), 0o644); err == nil {
			logf("chart written to %s (use -update to write docs/bench-results.svg)", path)
		}
	}
	return nil
}

// repoRoot is the root of the clone: the directory of the main module's go.mod.
func repoRoot() (string, error) {
	out, err := exec.Command("go", "env", "GOMOD").Output()
	if err != nil {
		return "", fmt.Errorf("bench: go env GOMOD: %w", err)
	}
	mod := strings.TrimSpace(string(out))
	if mod == "" || mod == os.DevNull {
		return "", errors.New("bench: run from inside the tokenhandler clone")
	}
	b, err := os.ReadFile(mod)
	if err != nil || !bytes.Contains(b, []byte("module github.com/tokenhandler/tokenhandler")) {
		return "", errors.New("bench: run from inside the tokenhandler clone (go.mod of github.com/tokenhandler/tokenhandler)")
	}
	return filepath.Dir(mod), nil
}

// idpBin builds (or finds in the cache) a provider with scripts/idp-bin.sh.
func idpBin(ctx context.Context, root, name string) (string, error) {
	cmd := exec.CommandContext(ctx, "bash", filepath.Join(root, "scripts", "idp-bin.sh"), name)
	cmd.Stderr = os.Stderr
	out, err := cmd.Output()
	if err != nil {
		return "", fmt.Errorf("bench: scripts/idp-bin.sh %s: %w", name, err)
	}
	return strings.TrimSpace(string(out)), nil
}

func firstLine(s string) string {
	line, _, _ := strings.Cut(s, "\n")
	return line
}
